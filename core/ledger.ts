import { type AuditRow, rowHash, verifyChain } from "./audit/audit-chain.ts";
import { type AuditLog, readAll } from "./audit/audit-log.ts";
import { type BackupRef, listBackupRefs, type ManifestRecord, readManifestRecord } from "./backup-index.ts";
import { compareBackups } from "./backup-order.ts";
import { count } from "./count.ts";
import { BackupNotFoundError, NotFoundError, StrongroomError, UncommittedBackupError, UsageError } from "./errors.ts";
import { backupIdTime, isBackupId } from "./keys.ts";
import { nearestName } from "./nearest-name.ts";
import type { ObjectStore } from "./store/object-store.ts";
import type { VerificationOutcome } from "./verification.ts";

/**
 * Which backups count. A manifest is plaintext that anyone who can write the store can
 * put there, copy or edit, so its presence proves nothing. A backup counts only when the
 * database's audit chain (out of a store writer's reach: DynamoDB under PutItem-only IAM
 * in a deployment) holds a `backup.ok` row recording the SHA-256 of exactly its manifest
 * bytes; and a verification counts only when a `verify.ok` row names that same SHA-256.
 * Everything that says "latest", "newest", "verified" or "the backups" reads this ledger:
 * list, restore, verify, recover-table, export-schema, status, prune and the flows.
 *
 * Disaster recovery (the audit log is lost, only the store is left) is `trustStore`: every
 * well-formed manifest counts, and the caller says so loudly. No flow ever sets it.
 */
export interface LedgerOptions {
  /** The database's audit chain (`db#<databaseId>`); required unless `trustStore`. */
  audit?: AuditLog;
  /** Count every well-formed manifest, anchored or not (disaster recovery only). */
  trustStore?: boolean;
  now: Date;
  /** How far in the future a backup id may be dated before it is ignored. @default 10 minutes */
  maxClockSkewMs?: number;
}

/** A verification by restore or integrity that the audit log records for one manifest. */
export interface AuditedVerification {
  backupId: string;
  kind: "restore" | "integrity";
  ok: boolean;
  /** verified (verify.ok), failed (verify.fail) or inconclusive (verify.inconclusive). */
  outcome: VerificationOutcome;
  /** Inconclusive: what the scratch lacked, as the row says (`extension postgis 3.3.2`). */
  missing?: string[];
  /** Verified with exclusions: the extensions the restore left out (`--skip-extension`). */
  excluded?: string[];
  /** When it was recorded (the audit row's time). */
  at: string;
  seq: string;
  restoreSeconds?: number;
  failedChecks: string[];
}

export interface CommittedBackup extends ManifestRecord {
  databaseId: string;
  backupId: string;
  /** Verifications recorded for exactly this manifest, oldest first. */
  verifications: AuditedVerification[];
}

export type LedgerProblemKind = "unanchored" | "replaced" | "malformed" | "future" | "chain";

export interface LedgerProblem {
  kind: LedgerProblemKind;
  databaseId: string;
  backupId?: string;
  message: string;
}

export interface Ledger {
  databaseId: string;
  /** Oldest first (core/backup-order.ts). */
  backups: CommittedBackup[];
  /** Manifests that do not count, and why; a chain that does not verify. */
  problems: LedgerProblem[];
  /**
   * Backups retention has retired: a trusted `retain.delete` row names them, and their
   * committed manifest is still in the store. Prune writes the row before it deletes, so
   * these are its deletes still to do (this run's, or an interrupted run's). Never counted.
   */
  retired: Array<ManifestRecord & BackupRef>;
  trustStore: boolean;
}

const DEFAULT_SKEW_MS = 10 * 60_000;

const sha256Of = (row: AuditRow): string | undefined => {
  const sha = row.details?.manifestSha256;
  return typeof sha === "string" && /^[0-9a-f]{64}$/.test(sha) ? sha : undefined;
};

/**
 * The rows that can be believed: the whole chain, or those before its first bad row. Where
 * rows are signed, a trusted row is authentic on its own, so signed rows after the break
 * are believed too: one bad row planted at the head must not stop every later backup from
 * counting.
 */
function believedRows(databaseId: string, rows: AuditRow[], problems: LedgerProblem[], audit?: AuditLog): AuditRow[] {
  const report = verifyChain(rows);
  if (report.ok || !report.firstBad) return rows;
  const bad = report.firstBad;
  const signed = audit?.rowsSigned === true;
  problems.push({
    kind: "chain",
    databaseId,
    message: `the audit chain of ${databaseId} is broken at row ${bad.seq} (${bad.problem}: ${bad.detail}); ${signed ? "only rows signed by a trusted signer are believed from there on" : "rows from there on are not believed"}`,
  });
  const at = rows.findIndex((r) => r.seq === bad.seq);
  const after = signed ? rows.slice(at).filter((r) => rowHash(r) === r.hash && audit?.trusts?.(r) === true) : [];
  return [...rows.slice(0, at), ...after];
}

/**
 * The row that commits each backup: its first `backup.ok` with a manifest SHA-256 among
 * `rows` (rows the caller already found trustworthy). A later one cannot re-commit
 * another manifest. The ledger and `audit verify` both decide by this.
 */
export function committingRows(rows: readonly AuditRow[]): Map<string, AuditRow> {
  const out = new Map<string, AuditRow>();
  for (const row of rows) {
    // A base backup's row (kind "base") commits a physical base (core/pitr/bases.ts), never a dump.
    if (row.details?.kind === "base") continue;
    if (row.event === "backup.ok" && row.backupId !== undefined && sha256Of(row) && !out.has(row.backupId)) {
      out.set(row.backupId, row);
    }
  }
  return out;
}

const OUTCOME_OF_EVENT: Partial<Record<string, VerificationOutcome>> = {
  "verify.ok": "verified",
  "verify.fail": "failed",
  "verify.inconclusive": "inconclusive",
};

function verificationsOf(rows: AuditRow[], backupId: string, sha256: string): AuditedVerification[] {
  const out: AuditedVerification[] = [];
  for (const row of rows) {
    const outcome = OUTCOME_OF_EVENT[row.event];
    if (row.backupId !== backupId || outcome === undefined) continue;
    if (sha256Of(row) !== sha256) continue;
    const d = row.details ?? {};
    // A point-in-time recovery's verification counts for its base backup (core/pitr/pitr-status.ts), never for a dump.
    if (d.kind === "pitr") continue;
    const failed = Array.isArray(d.failedChecks) ? d.failedChecks.filter((c) => typeof c === "string") : [];
    const missing = Array.isArray(d.missing) ? d.missing.filter((c) => typeof c === "string") : undefined;
    const excluded = Array.isArray(d.excluded) ? d.excluded.filter((c) => typeof c === "string") : [];
    out.push({
      backupId,
      kind: d.kind === "integrity" ? "integrity" : "restore",
      ok: outcome === "verified",
      outcome,
      ...(missing ? { missing: missing as string[] } : {}),
      ...(excluded.length > 0 ? { excluded: excluded as string[] } : {}),
      at: row.at,
      seq: row.seq,
      // rtoSeconds from the CLI's verify, restoreSeconds from VerifyFlow's row.
      ...(typeof d.rtoSeconds === "number" ? { restoreSeconds: d.rtoSeconds } : {}),
      ...(typeof d.restoreSeconds === "number" ? { restoreSeconds: d.restoreSeconds } : {}),
      failedChecks: failed as string[],
    });
  }
  return out;
}

/**
 * One database's ledger: every manifest in the store, each either committed by its audit
 * chain or reported as a problem. A manifest that cannot be read is reported for that one
 * backup and never fails the rest.
 */
export async function readLedger(store: ObjectStore, databaseId: string, options: LedgerOptions): Promise<Ledger> {
  const problems: LedgerProblem[] = [];
  const trustStore = options.trustStore === true;
  if (!options.audit && !trustStore) {
    throw new UsageError(`nothing says which backups of ${databaseId} are committed: there is no audit log`, {
      hint: "give the audit log (--audit store, or --audit-table), or the committed manifest's digest (--manifest-sha256); after losing the audit log, --trust-store counts every manifest in the store",
    });
  }
  const [refs, rows] = await Promise.all([
    listBackupRefs(store, databaseId),
    options.audit
      ? readAll(options.audit).then((r) => believedRows(databaseId, r, problems, options.audit))
      : Promise.resolve([]),
  ]);
  // Only rows of this database that the log trusts decide (signed by a trusted signer,
  // where the log is in a store). The first backup.ok row of a backup commits it: a later
  // one cannot re-commit another manifest.
  const trusted = rows.filter(
    (row) => row.databaseId === databaseId && (options.audit?.trusts ? options.audit.trusts(row) : true),
  );
  const trustedSet = new Set(trusted);
  const unsigned = new Set(
    rows.filter((r) => r.event === "backup.ok" && !trustedSet.has(r)).map((r) => r.backupId ?? ""),
  );
  const committedBy = committingRows(trusted);
  // Only a dump's retain.delete (no kind) retires a dump: never a base's or the WAL's.
  const deleted = new Set(
    trusted.filter((r) => r.event === "retain.delete" && r.details?.kind === undefined).map((r) => r.backupId),
  );
  const latestAllowed = options.now.getTime() + (options.maxClockSkewMs ?? DEFAULT_SKEW_MS);
  const backups: CommittedBackup[] = [];
  const retired: Ledger["retired"] = [];
  const records = await Promise.all(refs.map((ref) => readOne(store, ref)));
  for (const [i, ref] of refs.entries()) {
    const record = records[i];
    const problem = (kind: LedgerProblemKind, message: string) =>
      problems.push({ kind, databaseId, backupId: ref.backupId, message });
    if (backupIdTime(ref.backupId).getTime() > latestAllowed) {
      problem("future", `backup ${ref.backupId} is dated in the future; ignored`);
      continue;
    }
    if (record === undefined) continue; // deleted while we listed
    if (record instanceof StrongroomError) {
      problem("malformed", `backup ${ref.backupId}: ${record.message}`);
      continue;
    }
    if (trustStore) {
      backups.push({ ...record, ...ref, verifications: verificationsOf(trusted, ref.backupId, record.sha256) });
      continue;
    }
    const ok = committedBy.get(ref.backupId);
    const recorded = ok ? sha256Of(ok) : undefined;
    if (deleted.has(ref.backupId) && recorded === record.sha256) {
      retired.push({ ...record, ...ref });
      continue;
    }
    if (!ok || deleted.has(ref.backupId)) {
      problem(
        "unanchored",
        deleted.has(ref.backupId)
          ? `backup ${ref.backupId} was deleted by retention (audit) but its manifest is in the store again; not counted`
          : unsigned.has(ref.backupId)
            ? `backup ${ref.backupId} has a backup.ok audit row, but not one signed by a trusted signer; not counted (planted by someone who can write the store, or signed by a key not given with --signer)`
            : `backup ${ref.backupId} has a manifest but no backup.ok audit row commits it; not counted (planted, or made with --audit none)`,
      );
      continue;
    }
    if (recorded !== record.sha256) {
      problem(
        "replaced",
        `backup ${ref.backupId}: its manifest is not the one committed at audit row ${ok.seq} (sha256 ${record.sha256.slice(0, 12)}…, recorded ${recorded?.slice(0, 12)}…); not counted`,
      );
      continue;
    }
    backups.push({
      ...record,
      ...ref,
      verifications: verificationsOf(trusted, ref.backupId, record.sha256),
    });
  }
  backups.sort(compareBackups);
  retired.sort(compareBackups);
  return { databaseId, backups, problems, retired, trustStore };
}

async function readOne(store: ObjectStore, ref: BackupRef): Promise<ManifestRecord | StrongroomError | undefined> {
  try {
    return await readManifestRecord(store, ref);
  } catch (err) {
    if (err instanceof BackupNotFoundError || err instanceof NotFoundError) return undefined;
    if (err instanceof StrongroomError && (err.name === "ManifestError" || err.name === "IntegrityError")) return err;
    throw err;
  }
}

/**
 * `--backup ID|latest` within one database's ledger. An id that is in the store but not
 * committed is refused with the reason, never read.
 */
export function pickBackup(ledger: Ledger, backup: string): CommittedBackup {
  if (backup !== "latest" && !isBackupId(backup)) {
    throw new UsageError(`invalid backup id ${JSON.stringify(backup)}`, {
      hint: "use an id from `strongroom list` (like 20260421T020000Z-abc234) or latest",
    });
  }
  const found = backup === "latest" ? ledger.backups.at(-1) : ledger.backups.find((b) => b.backupId === backup);
  if (found) return found;
  if (ledger.retired.some((b) => b.backupId === backup)) {
    throw new UncommittedBackupError(
      `backup ${backup} was deleted by retention (audit); its objects are being removed`,
      {
        hint: "`strongroom audit show --database-id …` has its retain.delete row; `strongroom list` shows the backups kept",
      },
    );
  }
  const problem = ledger.problems.find((p) => p.backupId === backup);
  if (problem) {
    throw new UncommittedBackupError(problem.message, {
      hint: "only backups whose backup.ok audit row records their manifest's SHA-256 are restored or verified; `strongroom audit verify` shows the store's problems",
    });
  }
  const what = backup === "latest" ? "no committed backups" : `no backup ${backup}`;
  if (backup === "latest" && ledger.problems.some((p) => p.kind !== "future")) {
    throw new UncommittedBackupError(
      `${what} for database ${ledger.databaseId}: the store holds ${count(ledger.problems.length, "manifest")} that do not count`,
      {
        hint: "`strongroom list` names them and says why; after losing the audit log, --trust-store counts every manifest in the store (disaster recovery only)",
      },
    );
  }
  throw new BackupNotFoundError(`${what} for database ${ledger.databaseId} in this store`, {
    hint:
      ledger.problems.length > 0
        ? `the store holds ${count(ledger.problems.length, "manifest")} that do not count; \`strongroom list\` names them`
        : "`strongroom list --store …` shows the backups there",
  });
}

/** The database ids with backups in the store (manifest keys; nothing read). */
export async function databaseIdsIn(store: ObjectStore): Promise<string[]> {
  return [...new Set((await listBackupRefs(store)).map((r) => r.databaseId))].sort();
}

/**
 * The one database a command means: the one given, or the only one in the store. With
 * a backup id and no database id, the database holding that id. A given id must have
 * backups in the store: a mistyped one is refused here, naming the ids there are,
 * before a command reads or writes anything under it (its audit chain included).
 * restore, verify, recover-table, export-schema and prune all choose through this.
 */
export async function chooseDatabase(
  store: ObjectStore,
  backup: string,
  databaseId: string | undefined,
): Promise<string> {
  if (databaseId !== undefined) {
    // Its own prefix first: a task's role may list nothing else.
    if ((await listBackupRefs(store, databaseId)).length > 0) return databaseId;
    throw await unknownDatabase(store, databaseId);
  }
  const refs = await listBackupRefs(store);
  if (backup !== "latest") {
    const hit = [...new Set(refs.filter((r) => r.backupId === backup).map((r) => r.databaseId))];
    if (hit.length === 1) return hit[0] as string;
  }
  const ids = [...new Set(refs.map((r) => r.databaseId))];
  if (ids.length > 1) {
    throw new UsageError(`the store holds backups of several databases (${ids.join(", ")})`, {
      hint: "pick one with --database-id",
    });
  }
  const only = ids[0];
  if (only === undefined) {
    throw new BackupNotFoundError(`${backup === "latest" ? "no backups" : `no backup ${backup}`} in this store`, {
      hint: "`strongroom list --store …` shows the backups there",
    });
  }
  return only;
}

/** A database id with no backups in the store, and the ones it was likely meant to be. */
async function unknownDatabase(store: ObjectStore, databaseId: string): Promise<BackupNotFoundError> {
  // Naming the others is a courtesy: a store this role cannot list whole goes without it.
  const known = await databaseIdsIn(store).catch(() => undefined);
  const nearest = known && nearestName(databaseId, known);
  const hint =
    known === undefined
      ? "check --database-id; `strongroom list --store …` shows the databases there"
      : known.length === 0
        ? "the store holds no backups yet; back one up first"
        : `${nearest ? `did you mean ${nearest}? ` : ""}the store holds backups of ${known.join(", ")}`;
  return new BackupNotFoundError(`no backups of database ${databaseId} in this store`, { hint });
}

/** Every database's ledger (or the one asked for), by database id. */
export async function readLedgers(
  store: ObjectStore,
  options: Omit<LedgerOptions, "audit"> & { audit?: (databaseId: string) => AuditLog; databaseId?: string },
): Promise<Ledger[]> {
  const ids = options.databaseId !== undefined ? [options.databaseId] : await databaseIdsIn(store);
  const { audit, databaseId: _one, ...rest } = options;
  return Promise.all(
    ids.map((id) => {
      const log = audit?.(id);
      return readLedger(store, id, { ...rest, ...(log ? { audit: log } : {}) });
    }),
  );
}
