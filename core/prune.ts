import { type AuditLog, appendAudit } from "./audit/audit-log.ts";
import { PruneHaltedError } from "./errors.ts";
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
import { readLedger } from "./ledger.ts";
import type { Manifest } from "./manifest.ts";
import { listAll, type ObjectStore } from "./store/object-store.ts";

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

/**
 * GFS runs over the database's ledger (core/ledger.ts) only: committed backups, and
 * verifications the audit log records for exactly their manifests. A manifest in the
 * series that does not count (planted, replaced, unreadable) or a broken chain stops
 * the series' pruning, naming it: a store writer must not be able to move "newest" or
 * "newest verified" and so steer the deletes. A backup dated in the future is ignored.
 */
export async function planPrune(
  store: ObjectStore,
  databaseId: string,
  policy: RetentionPolicy,
  now: Date,
  audit: AuditLog,
): Promise<PrunePlan> {
  const ledger = await readLedger(store, databaseId, { audit, now });
  const halting = ledger.problems.filter((p) => p.kind !== "future");
  if (halting.length > 0) {
    throw new PruneHaltedError(
      `prune of ${databaseId} stopped, nothing deleted: ${halting.map((p) => p.message).join("; ")}`,
      {
        hint: "someone with write access to the store put or changed these objects; inspect them (`strongroom audit verify`), delete what is not yours by hand, then prune again",
      },
    );
  }
  const points: BackupPoint[] = ledger.backups.map((b) => ({
    backupId: b.backupId,
    at: backupIdTime(b.backupId),
    verified: b.verifications.some((v) => v.ok && v.kind === "restore"),
  }));
  return {
    ...selectExpired(points, policy, now),
    databaseId,
    manifests: new Map(ledger.backups.map((b) => [b.backupId, b.manifest])),
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
  const chain = audit(`db#${databaseId}`);
  const plan = await planPrune(store, databaseId, policy, now(), chain);
  const { deleted } = dryRun ? { deleted: [] } : await executePrune(store, plan, chain, actor, now);
  const garbage = await collectGarbage(store, { databaseId, now, audit, actor, dryRun });
  return { dryRun, policy, plan, deleted, garbage };
}
