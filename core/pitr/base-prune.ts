import { type AuditLog, appendAudit } from "../audit/audit-log.ts";
import type { RetentionPolicy } from "../gfs.ts";
import { walPrefix } from "../keys.ts";
import { listAll, type ObjectStore } from "../store/object-store.ts";
import { type BaseManifest, baseKeys, basePrefix } from "./base-manifest.ts";
import { readBases } from "./bases.ts";
import { type BaseRetentionPlan, planBaseRetention } from "./retention.ts";

/**
 * Pruning of one database's physical base backups and WAL (docs/pitr.md, Retention):
 * the store read, the pure plan (core/pitr/retention.ts), and the deletes, each audited.
 */
export type BasePrunePlan = BaseRetentionPlan<BaseManifest>;

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
  /** Base id → manifest SHA-256 the audit log committed (bases taken without the host's key). */
  committed?: ReadonlyMap<string, string>,
): Promise<BasePrunePlan> {
  const { trusted, untrusted } = await readBases(store, databaseId, signers, committed);
  const prefix = walPrefix(databaseId);
  const walNames: string[] = [];
  for await (const object of listAll(store, prefix)) walNames.push(object.key.slice(prefix.length));
  return planBaseRetention({ databaseId, trusted, untrusted, walNames, policy, now });
}

export interface BasePruneResult {
  bases: Array<{ baseId: string; storedBytes: number }>;
  wal: { deleted: number; first?: string; last?: string };
}

/**
 * Per expired base, oldest first: its `retain.delete` row, then its manifest (so it stops
 * being a base at once), then its object. Then, if any, one `retain.delete` row for the
 * WAL below the kept floor, and those objects, oldest first. Rows go before deletes, as
 * for logical backups: an interrupted prune leaves an audited deletion unfinished (the
 * next prune plans it again, and gc takes a base object left without its manifest),
 * never a deletion the log misses. Keys are derived from the ids and names, never read
 * from a manifest.
 */
export async function executeBasePrune(
  store: ObjectStore,
  plan: BasePrunePlan,
  audit: AuditLog,
  actor: string,
  now: () => Date,
): Promise<BasePruneResult> {
  const result: BasePruneResult = { bases: [], wal: { deleted: 0 } };
  for (const base of plan.expire) {
    const keys = baseKeys(plan.databaseId, base.baseId);
    await appendAudit(audit, {
      at: now().toISOString(),
      event: "retain.delete",
      actor,
      databaseId: plan.databaseId,
      backupId: base.baseId,
      details: { kind: "base", objects: 2, storedBytes: base.object.storedBytes, stoppedAt: base.stoppedAt },
    });
    await store.delete(keys.manifest);
    await store.delete(keys.object);
    // Its verify --pitr results go with it (the plaintext summaries would pile up for ever).
    for await (const v of listAll(store, `${plan.databaseId}/base/${base.baseId}/verifications/`)) {
      await store.delete(v.key);
    }
    result.bases.push({ baseId: base.baseId, storedBytes: base.object.storedBytes });
  }
  const doomed = plan.wal.delete;
  const first = doomed[0]?.name;
  const last = doomed.at(-1)?.name;
  if (first !== undefined && last !== undefined) {
    await appendAudit(audit, {
      at: now().toISOString(),
      event: "retain.delete",
      actor,
      databaseId: plan.databaseId,
      details: { kind: "wal", objects: doomed.length, first, last, keptFrom: plan.wal.keptFrom },
    });
    const prefix = walPrefix(plan.databaseId);
    for (const file of doomed) await store.delete(prefix + file.name);
    result.wal = { deleted: doomed.length, first, last };
  }
  return result;
}
