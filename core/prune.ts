import { type AuditLog, appendAudit } from "./audit/audit-log.ts";
import { listManifests } from "./backup-index.ts";
import { collectGarbage, type GcPlan } from "./gc.ts";
import {
  type BackupPoint,
  DEFAULT_POLICY,
  type RetentionPlan,
  type RetentionPolicy,
  selectExpired,
  validatePolicy,
} from "./gfs.ts";
import { backupIdTime, OBJECT_NAMES, type ObjectRole, objectKey, verificationPrefix } from "./keys.ts";
import type { Manifest } from "./manifest.ts";
import { listAll, type ObjectStore } from "./store/object-store.ts";
import { isVerifiedRestore, listVerifications } from "./verification.ts";

/** Every payload object a backup may have, the legacy `globals` included. */
const PAYLOAD_ROLES = (Object.keys(OBJECT_NAMES) as ObjectRole[]).filter((r) => r !== "manifest");

/**
 * GFS pruning of one database's backups in a store. Planning reads manifests and
 * verification records; executing deletes each expired backup's manifest first (so it
 * stops being a backup at once), then its payload objects, and writes one
 * `retain.delete` audit row per backup.
 */
export interface PrunePlan extends RetentionPlan {
  databaseId: string;
  manifests: Map<string, Manifest>;
}

/** Backup ids with at least one successful verification by restore; a failed one or an integrity pass never counts. */
async function verifiedIds(store: ObjectStore, databaseId: string): Promise<Set<string>> {
  return new Set((await listVerifications(store, databaseId)).filter(isVerifiedRestore).map((v) => v.backupId));
}

export async function planPrune(
  store: ObjectStore,
  databaseId: string,
  policy: RetentionPolicy,
  now: Date,
): Promise<PrunePlan> {
  const [manifests, verified] = await Promise.all([listManifests(store, databaseId), verifiedIds(store, databaseId)]);
  const points: BackupPoint[] = manifests.map((m) => ({
    backupId: m.backupId,
    at: backupIdTime(m.backupId),
    verified: verified.has(m.backupId),
  }));
  return {
    ...selectExpired(points, policy, now),
    databaseId,
    manifests: new Map(manifests.map((m) => [m.backupId, m])),
  };
}

export interface PruneResult {
  deleted: Array<{ backupId: string; objects: number; storedBytes: number }>;
}

export async function executePrune(
  store: ObjectStore,
  plan: PrunePlan,
  audit: AuditLog,
  actor: string,
  now: () => Date,
): Promise<PruneResult> {
  const deleted: PruneResult["deleted"] = [];
  // Oldest first: an interrupted prune leaves the newest of the expired, never a gap.
  for (const point of [...plan.expire].reverse()) {
    const manifest = plan.manifests.get(point.backupId);
    if (!manifest) continue;
    // Keys are derived from the ids, never taken from inside the manifest: a manifest is
    // plaintext that anyone with write access to the store can edit.
    await store.delete(objectKey(plan.databaseId, point.backupId, "manifest"));
    for (const role of PAYLOAD_ROLES) await store.delete(objectKey(plan.databaseId, point.backupId, role));
    for await (const v of listAll(store, `${verificationPrefix(plan.databaseId)}${point.backupId}/`))
      await store.delete(v.key);
    const storedBytes = manifest.objects.reduce((n, o) => n + o.storedBytes, 0);
    await appendAudit(audit, {
      at: now().toISOString(),
      event: "retain.delete",
      actor,
      databaseId: plan.databaseId,
      backupId: point.backupId,
      details: { storedBytes, objects: manifest.objects.length },
    });
    deleted.push({ backupId: point.backupId, objects: manifest.objects.length + 1, storedBytes });
  }
  return { deleted };
}

export interface PruneDatabaseOptions {
  store: ObjectStore;
  databaseId: string;
  /** Merged over DEFAULT_POLICY, then validated: InvalidPolicyError when it cannot apply. */
  policy?: Partial<RetentionPolicy>;
  /** The audit chain for a scope (`db#<id>` for deletions, `org` for partial uploads). */
  audit: (scope: string) => AuditLog;
  actor: string;
  /** Plan only: delete nothing, write no audit rows. @default false */
  dryRun?: boolean;
  now?: () => Date;
}

export interface PruneOutcome {
  dryRun: boolean;
  policy: RetentionPolicy;
  plan: PrunePlan;
  deleted: PruneResult["deleted"];
  /** The database's garbage (failed backups' payloads, partial uploads), collected after the prune. */
  garbage: GcPlan;
}

/**
 * Prune one database, the one code path behind `strongroom prune` and the
 * retention-prune Lambda: validate the policy, plan, delete what expired (unless a dry
 * run), then collect the database's garbage with the default grace period.
 */
export async function pruneDatabase(options: PruneDatabaseOptions): Promise<PruneOutcome> {
  const { store, databaseId, audit, actor } = options;
  const now = options.now ?? (() => new Date());
  const dryRun = options.dryRun === true;
  const policy: RetentionPolicy = { ...DEFAULT_POLICY, ...options.policy };
  validatePolicy(policy);
  const plan = await planPrune(store, databaseId, policy, now());
  const { deleted } = dryRun ? { deleted: [] } : await executePrune(store, plan, audit(`db#${databaseId}`), actor, now);
  const garbage = await collectGarbage(store, { databaseId, now, audit, actor, dryRun });
  return { dryRun, policy, plan, deleted, garbage };
}
