import type { AuditRow } from "../audit/audit-chain.ts";
import { type AuditLog, appendAudit, readAll } from "../audit/audit-log.ts";
import { PruneHaltedError } from "../errors.ts";
import type { RetentionPolicy } from "../gfs.ts";
import { walPrefix } from "../keys.ts";
import { listAll, type ObjectStore } from "../store/object-store.ts";
import { type BaseManifest, baseKeys, basePrefix } from "./base-manifest.ts";
import { type BaseReading, committedBases, readBases, retiredBases } from "./bases.ts";
import { type BaseRetentionPlan, compareWalNames, planBaseRetention } from "./retention.ts";

/**
 * Pruning of one database's physical base backups and WAL (docs/pitr.md, Retention):
 * the store read, the pure plan (core/pitr/retention.ts), the `retain.delete` rows, and
 * the deletes. Two callers: `strongroom prune` appends each row and deletes at once
 * (`executeBasePrune`); the deployed retention-prune Lambda returns the rows for the
 * flow's audit-append and deletes in a later step what the log then retired
 * (`removeRetiredBases`).
 */
export interface BasePrunePlan extends BaseRetentionPlan<BaseManifest> {
  /** Bases a `retain.delete` row already retired whose manifests are still here (an interrupted prune). */
  retired: string[];
  /** Each trusted base's manifest SHA-256 as read: its `retain.delete` row names it. */
  sha256: ReadonlyMap<string, string>;
}

/** What the audit log says of a database's bases (core/pitr/bases.ts): which count unsigned, which are retired. */
export interface BaseRows {
  committed: ReadonlyMap<string, string>;
  retired: ReadonlyMap<string, string | undefined>;
}

/** The WAL a plan deletes, as its `retain.delete` row of kind "wal" names it. */
export interface AuditedWal {
  first: string;
  last: string;
  keptFrom: string;
}

/** A `retain.delete` row before it is chained (the logical rows' shape, core/prune.ts). */
export interface BaseRetirementRow {
  backupId?: string;
  details: Record<string, unknown>;
}

/**
 * Whether the database has a base backup manifest, trusted or not: then prune must read
 * it, and needs the signers to (an uncommitted base alone is gc's, and needs none).
 */
export async function hasBaseManifests(store: ObjectStore, databaseId: string): Promise<boolean> {
  for await (const object of listAll(store, basePrefix(databaseId))) {
    if (object.key.endsWith("/manifest.json")) return true;
  }
  return false;
}

/**
 * Reads the bases (trusted or not) and the WAL names, and plans. Throws PruneHaltedError
 * when a manifest under `<db>/base/` does not count.
 */
export async function planBasePrune(
  store: ObjectStore,
  databaseId: string,
  signers: ReadonlySet<string>,
  policy: RetentionPolicy,
  now: Date,
  rows?: BaseRows,
): Promise<BasePrunePlan> {
  const reading = await readBases(store, databaseId, signers, rows?.committed, rows?.retired);
  return planFromReading(store, databaseId, reading, policy, now);
}

/** The plan over bases already read (`readBases`): lists the WAL, then plans. Throws PruneHaltedError as planBasePrune. */
async function planFromReading(
  store: ObjectStore,
  databaseId: string,
  { trusted, untrusted, sha256, retired }: BaseReading,
  policy: RetentionPolicy,
  now: Date,
): Promise<BasePrunePlan> {
  const prefix = walPrefix(databaseId);
  const walNames: string[] = [];
  const walArchivedAt = new Map<string, Date>();
  for await (const object of listAll(store, prefix)) {
    const name = object.key.slice(prefix.length);
    walNames.push(name);
    walArchivedAt.set(name, object.lastModified);
  }
  const plan = planBaseRetention({ databaseId, trusted, untrusted, walNames, walArchivedAt, policy, now });
  return { ...plan, retired: retired.map((r) => r.baseId), sha256 };
}

/** The WAL a plan deletes as a range, or undefined when it deletes none. */
export function auditedWal(plan: BasePrunePlan): AuditedWal | undefined {
  const first = plan.wal.delete[0]?.name;
  const last = plan.wal.delete.at(-1)?.name;
  const keptFrom = plan.wal.keptFrom;
  return first !== undefined && last !== undefined && keptFrom !== undefined ? { first, last, keptFrom } : undefined;
}

/**
 * The plan's `retain.delete` rows: one per expired base, oldest first, naming the
 * manifest bytes it retires; then, if any WAL goes, one for the WAL below the kept floor.
 */
export function baseRetirementRows(plan: BasePrunePlan): BaseRetirementRow[] {
  const rows: BaseRetirementRow[] = plan.expire.map((base) => ({
    backupId: base.baseId,
    details: {
      kind: "base",
      objects: 2,
      storedBytes: base.object.storedBytes,
      stoppedAt: base.stoppedAt,
      ...(plan.sha256.has(base.baseId) ? { manifestSha256: plan.sha256.get(base.baseId) } : {}),
    },
  }));
  const wal = auditedWal(plan);
  if (wal) rows.push({ details: { kind: "wal", objects: plan.wal.delete.length, ...wal } });
  return rows;
}

/**
 * Deletes one base: its manifest first (so it stops being a base at once), then its
 * object, then its verify --pitr results (plaintext summaries that would pile up for
 * ever). Keys are derived from the id, never read from a manifest.
 */
async function deleteBase(store: ObjectStore, databaseId: string, baseId: string): Promise<void> {
  const keys = baseKeys(databaseId, baseId);
  await store.delete(keys.manifest);
  await store.delete(keys.object);
  for await (const v of listAll(store, `${databaseId}/base/${baseId}/verifications/`)) await store.delete(v.key);
}

/** WAL deletes in flight at once: a first prune of a months-old archive deletes tens of thousands of files. */
const WAL_DELETES_AT_ONCE = 16;

/**
 * Deletes WAL files, oldest first, a few at a time. An interruption leaves holes only
 * among files below every kept base's first segment, which no recovery reads.
 */
async function deleteWal(
  store: ObjectStore,
  databaseId: string,
  names: readonly string[],
  atOnce = WAL_DELETES_AT_ONCE,
): Promise<void> {
  const prefix = walPrefix(databaseId);
  for (let i = 0; i < names.length; i += atOnce) {
    await Promise.all(names.slice(i, i + atOnce).map((name) => store.delete(prefix + name)));
  }
}

export interface BasePruneResult {
  bases: Array<{ baseId: string; storedBytes?: number }>;
  wal: { deleted: number; first?: string | undefined; last?: string | undefined };
}

/**
 * `strongroom prune`'s: first the bases an interrupted prune retired, then per expired
 * base, oldest first, its `retain.delete` row and its deletion; then, if any, one row for
 * the WAL below the kept floor and those objects, oldest first. Rows go before deletes,
 * as for logical backups: an interrupted prune leaves an audited deletion unfinished (the
 * next prune finishes it, and gc takes a base object left without its manifest), never a
 * deletion the log misses.
 */
export async function executeBasePrune(
  store: ObjectStore,
  plan: BasePrunePlan,
  audit: AuditLog,
  actor: string,
  now: () => Date,
): Promise<BasePruneResult> {
  const result: BasePruneResult = { bases: [], wal: { deleted: 0 } };
  for (const baseId of plan.retired) {
    await deleteBase(store, plan.databaseId, baseId);
    result.bases.push({ baseId });
  }
  for (const row of baseRetirementRows(plan)) {
    await appendAudit(audit, {
      at: now().toISOString(),
      event: "retain.delete",
      actor,
      databaseId: plan.databaseId,
      ...row,
    });
    if (row.backupId !== undefined) {
      await deleteBase(store, plan.databaseId, row.backupId);
      result.bases.push({ baseId: row.backupId, storedBytes: row.details.storedBytes as number });
    } else {
      const names = plan.wal.delete.map((f) => f.name);
      await deleteWal(store, plan.databaseId, names);
      result.wal = { deleted: names.length, first: names[0], last: names.at(-1) };
    }
  }
  return result;
}

/** Whether a trusted `retain.delete` row of kind "wal" names exactly this range. */
function walRangeAudited(rows: readonly AuditRow[], databaseId: string, wal: AuditedWal, audit: AuditLog): boolean {
  return rows.some(
    (row) =>
      row.event === "retain.delete" &&
      row.databaseId === databaseId &&
      row.details?.kind === "wal" &&
      row.details.first === wal.first &&
      row.details.last === wal.last &&
      row.details.keptFrom === wal.keptFrom &&
      (audit.trusts ? audit.trusts(row) : true),
  );
}

/**
 * The deployed prune's second step, after the flow's audit-append has appended the rows
 * `baseRetirementRows` gave: deletes every base the log retired that the store still
 * holds, then the WAL the plan named, but only what is both inside the audited range and
 * still below the floor of a fresh plan. So nothing unaudited is deleted, and nothing a
 * base needs even if one came in since (a base on a new timeline, whose segment numbers
 * start lower). A fresh plan that halts (a manifest that does not count) deletes no WAL
 * and is returned as `halted`, for the caller to fail once the rest is done.
 */
export async function removeRetiredBases(options: {
  store: ObjectStore;
  databaseId: string;
  signers: ReadonlySet<string>;
  policy: RetentionPolicy;
  audit: AuditLog;
  now: Date;
  /** The WAL range the plan's row named (absent: none was planned). */
  wal?: AuditedWal | undefined;
  /** WAL deletes in flight at once (npm run bench:wal-prune compares 1). @default 16 */
  walDeletesAtOnce?: number;
}): Promise<BasePruneResult & { halted?: PruneHaltedError }> {
  const { store, databaseId, audit } = options;
  const rows = await readAll(audit);
  const trusts = audit.trusts?.bind(audit);
  const baseRows: BaseRows = {
    committed: committedBases(rows, databaseId, trusts),
    retired: retiredBases(rows, databaseId, trusts),
  };
  const reading = await readBases(store, databaseId, options.signers, baseRows.committed, baseRows.retired);
  const result: BasePruneResult = { bases: [], wal: { deleted: 0 } };
  for (const { baseId } of reading.retired) {
    await deleteBase(store, databaseId, baseId);
    result.bases.push({ baseId });
  }
  let plan: BasePrunePlan;
  try {
    // The reading above serves the plan too: the retired bases just deleted were never in it as bases.
    plan = await planFromReading(store, databaseId, reading, options.policy, options.now);
  } catch (err) {
    if (err instanceof PruneHaltedError) return { ...result, halted: err };
    throw err;
  }
  const wal = options.wal;
  if (!wal || !walRangeAudited(rows, databaseId, wal, audit)) return result;
  const names = plan.wal.delete
    .map((f) => f.name)
    .filter((name) => compareWalNames(name, wal.first) >= 0 && compareWalNames(name, wal.last) <= 0);
  await deleteWal(store, databaseId, names, options.walDeletesAtOnce);
  result.wal = { deleted: names.length, ...(names.length > 0 ? { first: names[0], last: names.at(-1) } : {}) };
  return result;
}
