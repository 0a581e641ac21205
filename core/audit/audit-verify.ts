import { listBackupRefs, type ManifestRecord, readManifestRecord } from "../backup-index.ts";
import { count } from "../count.ts";
import { StrongroomError } from "../errors.ts";
import { committingRows } from "../ledger.ts";
import type { ObjectStore } from "../store/object-store.ts";
import { type AuditRow, type ChainReport, verifyChain } from "./audit-chain.ts";
import { type AuditLog, readAll } from "./audit-log.ts";

/**
 * `audit verify`: every chain walks (audit-chain.ts), and each database's chain agrees
 * with the backups in the store. The hash chain alone cannot see its newest rows
 * deleted, so the store anchors it:
 * - each manifest names its `backup.start` row (seq and hash), which must still be there;
 * - each anchored manifest has its `backup.ok` row, whose manifest SHA-256 must match;
 * - each `backup.ok` has its manifest, or a `retain.delete` row saying where it went.
 */
export interface ChainVerdict {
  scope: string;
  ok: boolean;
  rows: number;
  headSeq?: string;
  headHash?: string;
  /** Manifests in the store that no backup.ok row commits (planted, or made with --audit none). */
  unanchored?: number;
  problems: string[];
}

/** The pure part: a chain's rows against the manifests of its database. */
export function reconcile(
  rows: readonly AuditRow[],
  manifests: readonly ManifestRecord[],
  /** Which rows may commit a backup (AuditLog.trusts); absent: every row. */
  trusts: (row: AuditRow) => boolean = () => true,
): string[] {
  const problems: string[] = [];
  const head = rows.at(-1);
  const bySeq = new Map(rows.map((r) => [r.seq, r]));
  const events = (backupId: string, event: string) => rows.filter((r) => r.backupId === backupId && r.event === event);
  const committing = committingRows(rows.filter(trusts));
  const present = new Set(manifests.map((m) => m.manifest.backupId));
  if (rows.length === 0 && manifests.length > 0) {
    problems.push(`the store holds ${count(manifests.length, "backup")} but the chain is empty`);
    return problems;
  }
  for (const { manifest, sha256 } of manifests) {
    const id = manifest.backupId;
    // The first backup.ok commits the backup (core/ledger.ts); a later one changes nothing.
    const ok = committing.get(id);
    const recorded = ok?.details?.manifestSha256;
    if (typeof recorded === "string" && recorded !== sha256) {
      problems.push(
        `backup ${id}: its manifest changed since it was committed (sha256 ${sha256.slice(0, 12)}…, recorded ${recorded.slice(0, 12)}…)`,
      );
    }
    if (!ok) {
      problems.push(
        `backup ${id}: no backup.ok row records its manifest's SHA-256, so it does not count (planted by someone who can write the store, made with --audit none, its row deleted from the end of the chain, or not signed by a trusted --signer)`,
      );
    }
    const anchor = manifest.audit;
    if (!anchor) continue;
    const row = bySeq.get(anchor.seq);
    if (!row) {
      problems.push(
        head && anchor.seq > head.seq
          ? `backup ${id}: its backup.start row ${anchor.seq} is beyond the chain's head ${head.seq} (rows were deleted from the end)`
          : `backup ${id}: its backup.start row ${anchor.seq} is missing`,
      );
      continue;
    }
    if (row.hash !== anchor.hash || row.event !== "backup.start" || row.backupId !== id) {
      problems.push(`backup ${id}: audit row ${anchor.seq} is not the backup.start its manifest recorded`);
    }
  }
  for (const row of rows) {
    if (row.event !== "backup.ok" || row.backupId === undefined || present.has(row.backupId)) continue;
    // A base backup's commit (kind "base") names a manifest under <db>/base/, not a logical one.
    if (row.details?.kind === "base") continue;
    // Only a logical retain.delete explains a logical manifest's absence, never a base's or the WAL's.
    const retired = events(row.backupId, "retain.delete").filter((r) => r.details?.kind === undefined);
    if (retired.length === 0) {
      problems.push(
        `backup ${row.backupId}: committed at row ${row.seq}, but its manifest is gone and no retain.delete row says why`,
      );
    }
  }
  return problems;
}

function chainProblem(report: ChainReport): string[] {
  const bad = report.firstBad;
  return bad ? [`broken at row ${bad.seq}: ${bad.problem} (${bad.detail})`] : [];
}

/** Verifies one chain; with a store, a `db#<id>` chain is also reconciled with that database's backups. */
export async function verifyScope(log: AuditLog, scope: string, store?: ObjectStore): Promise<ChainVerdict> {
  let rows: AuditRow[];
  try {
    rows = await readAll(log);
  } catch (err) {
    if (!(err instanceof StrongroomError)) throw err;
    return { scope, ok: false, rows: 0, problems: [err.message] };
  }
  const report = verifyChain(rows);
  const problems = chainProblem(report);
  let unanchored: number | undefined;
  if (store && scope.startsWith("db#") && report.ok) {
    const databaseId = scope.slice(3);
    // One unreadable manifest is a problem of its own backup, never of the whole chain.
    const manifests: ManifestRecord[] = [];
    for (const ref of await listBackupRefs(store, databaseId)) {
      try {
        manifests.push(await readManifestRecord(store, ref));
      } catch (err) {
        if (!(err instanceof StrongroomError)) throw err;
        // Deleted while we listed (a prune): nothing to reconcile.
        if (err.name !== "BackupNotFoundError") problems.push(`backup ${ref.backupId}: ${err.message}`);
      }
    }
    const trusts = (row: AuditRow) => log.trusts?.(row) ?? true;
    const committed = committingRows(rows.filter(trusts));
    unanchored = manifests.filter((m) => !committed.has(m.manifest.backupId)).length;
    problems.push(...reconcile(rows, manifests, trusts));
  }
  return {
    scope,
    ok: problems.length === 0,
    rows: rows.length,
    ...(report.headSeq ? { headSeq: report.headSeq, headHash: report.headHash as string } : {}),
    ...(unanchored ? { unanchored } : {}),
    problems,
  };
}

/** Every chain to verify: those with rows, plus one per database that has backups in the store. */
export async function scopesToVerify(logScopes: readonly string[], store?: ObjectStore): Promise<string[]> {
  const scopes = new Set(logScopes);
  if (store) for (const ref of await listBackupRefs(store)) scopes.add(`db#${ref.databaseId}`);
  return [...scopes].sort();
}
