import { type AuditLog, appendAudit } from "./audit/audit-log.ts";
import { UsageError } from "./errors.ts";
import { backupIdTime, isBackupId } from "./keys.ts";
import { hasPartials, listAll, type ObjectInfo, type ObjectStore, type PartialUpload } from "./store/object-store.ts";

/**
 * Garbage: what failed or interrupted writes leave behind, which is never a backup.
 * - Partial uploads: partial files after a crash, multipart uploads never finished.
 * - Payloads without a manifest: a backup that failed after uploading its dump. A
 *   backup exists if and only if its manifest does, so these are never listed, restored
 *   or pruned, and would otherwise stay forever.
 * - Uncommitted base backups: a `<db>/base/<id>/base.tar.zst.age` with no manifest, left
 *   by a basebackup killed (or refused: its WAL never archived) after its upload. The
 *   same rule: a base exists only once its manifest does.
 * Only what is older than the grace period is touched: a running backup's objects are
 * younger, and its manifest follows its payload within seconds.
 */
export const MIN_GRACE_MS = 3600_000;

export interface GcPlan {
  cutoff: Date;
  partials: PartialUpload[];
  orphans: Array<{ databaseId: string; backupId: string; kind: OrphanKind; objects: ObjectInfo[] }>;
}

/** Where an orphan lies: a logical backup's folder (`<db>/backups/`) or a base backup's (`<db>/base/`). */
export type OrphanKind = "backup" | "base";
const FOLDERS: Record<OrphanKind, string> = { backup: "backups", base: "base" };

export async function planGc(
  store: ObjectStore,
  options: {
    now: Date;
    graceMs: number;
    databaseId?: string;
    /** Look for partial uploads too. @default true */
    partials?: boolean;
  },
): Promise<GcPlan> {
  if (!(options.graceMs >= MIN_GRACE_MS)) {
    throw new UsageError("the grace period must be at least 1h", {
      hint: "a backup still being written has objects without a manifest; keep --older-than at 1h or more",
    });
  }
  const cutoff = new Date(options.now.getTime() - options.graceMs);
  const partials =
    options.partials !== false && hasPartials(store)
      ? (await store.listPartials()).filter((p) => p.startedAt < cutoff)
      : [];
  const groups = new Map<
    string,
    { databaseId: string; backupId: string; kind: OrphanKind; objects: ObjectInfo[]; manifest: boolean }
  >();
  // One database: its two folders only, never its WAL (thousands of objects, none garbage here).
  const prefixes = options.databaseId
    ? [`${options.databaseId}/${FOLDERS.backup}/`, `${options.databaseId}/${FOLDERS.base}/`]
    : [""];
  for (const prefix of prefixes) {
    for await (const o of listAll(store, prefix)) {
      // A base's verify --pitr results lie one level deeper, and go with the base when it has no manifest.
      const m = /^([^/]+)\/(backups|base)\/([^/]+)\/([^/]+|verifications\/[^/]+)$/.exec(o.key);
      if (!m?.[1] || !m[3] || !isBackupId(m[3])) continue;
      const kind: OrphanKind = m[2] === FOLDERS.base ? "base" : "backup";
      const id = `${m[1]}/${m[2]}/${m[3]}`;
      const group = groups.get(id) ?? { databaseId: m[1], backupId: m[3], kind, objects: [], manifest: false };
      if (m[4] === "manifest.json") group.manifest = true;
      group.objects.push(o);
      groups.set(id, group);
    }
  }
  const orphans = [...groups.values()]
    .filter((g) => !g.manifest && backupIdTime(g.backupId) < cutoff && g.objects.every((o) => o.lastModified < cutoff))
    .map(({ databaseId, backupId, kind, objects }) => ({ databaseId, backupId, kind, objects }));
  return { cutoff, partials, orphans };
}

export interface GcResult {
  partials: number;
  orphans: Array<{ databaseId: string; backupId: string; objects: number; bytes: number }>;
}

/** Deletes what the plan found, with one `gc.delete` audit row per orphaned backup and one for the partials. */
export async function executeGc(
  store: ObjectStore,
  plan: GcPlan,
  audit: (scope: string) => AuditLog | undefined,
  actor: string,
  now: () => Date,
): Promise<GcResult> {
  const result: GcResult = { partials: 0, orphans: [] };
  if (plan.partials.length > 0 && hasPartials(store)) {
    for (const p of plan.partials) await store.deletePartial(p);
    result.partials = plan.partials.length;
    const log = audit("org");
    if (log) {
      await appendAudit(log, {
        at: now().toISOString(),
        event: "gc.delete",
        actor,
        details: { partials: plan.partials.length, bytes: plan.partials.reduce((n, p) => n + p.bytes, 0) },
      });
    }
  }
  for (const o of plan.orphans) {
    for (const object of o.objects) await store.delete(object.key);
    const row = orphanRow(o);
    const log = audit(`db#${o.databaseId}`);
    if (log) {
      await appendAudit(log, {
        at: now().toISOString(),
        event: "gc.delete",
        actor,
        databaseId: o.databaseId,
        ...row,
      });
    }
    result.orphans.push({
      databaseId: o.databaseId,
      backupId: o.backupId,
      objects: row.details.objects,
      bytes: row.details.bytes,
    });
  }
  return result;
}

/** The folder an orphan lies in, as the CLI names it: `<db>/backups/<id>/` or `<db>/base/<id>/`. */
export function orphanFolder(o: { databaseId: string; backupId: string; kind: OrphanKind }): string {
  return `${o.databaseId}/${FOLDERS[o.kind]}/${o.backupId}/`;
}

/** The `gc.delete` row (before it is chained) of one orphaned backup's payload or uncommitted base backup. */
export function orphanRow(o: GcPlan["orphans"][number]): {
  backupId: string;
  details: { objects: number; bytes: number; reason: string };
} {
  const bytes = o.objects.reduce((n, x) => n + x.bytes, 0);
  const reason = o.kind === "base" ? "uncommitted base backup" : "no manifest";
  return { backupId: o.backupId, details: { objects: o.objects.length, bytes, reason } };
}

/** A GC plan as reported by the CLI (`--json`) and the Lambdas. */
export function summarizeGc(plan: GcPlan, dryRun: boolean) {
  return {
    dryRun,
    olderThan: plan.cutoff.toISOString(),
    partials: plan.partials.length,
    orphans: plan.orphans.map((g) => ({
      databaseId: g.databaseId,
      backupId: g.backupId,
      kind: g.kind,
      objects: g.objects.length,
      bytes: g.objects.reduce((n, x) => n + x.bytes, 0),
    })),
  };
}

/** `90s`, `30m`, `24h`, `7d` to milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(text.trim());
  if (!m) throw new UsageError(`${flag} must be a duration like 24h, 90m or 7d, got ${JSON.stringify(text)}`);
  const unit = { s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 }[m[2] as "s" | "m" | "h" | "d"];
  return Number(m[1]) * unit;
}

export const DEFAULT_GRACE_MS = 24 * 3600_000;

/** What prune runs after deleting: one database's garbage, with the default grace period. */
export async function collectGarbage(
  store: ObjectStore,
  options: {
    databaseId: string;
    now: () => Date;
    /** Where each `gc.delete` row goes; undefined writes none (the caller records them). */
    audit: (scope: string) => AuditLog | undefined;
    actor: string;
    dryRun: boolean;
    /** Collect partial uploads too. @default true */
    partials?: boolean;
  },
): Promise<GcPlan> {
  const plan = await planGc(store, {
    now: options.now(),
    graceMs: DEFAULT_GRACE_MS,
    databaseId: options.databaseId,
    ...(options.partials === false ? { partials: false } : {}),
  });
  if (!options.dryRun) await executeGc(store, plan, options.audit, options.actor, options.now);
  return plan;
}
