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
import { type BasePrunePlan, type BasePruneResult, executeBasePrune, planBasePrune } from "./pitr/base-prune.ts";
import { baseRowsIn } from "./pitr/bases.ts";
import { listAll, type ObjectStore } from "./store/object-store.ts";

/** Every payload object a backup may have, the legacy `globals` included. */
const PAYLOAD_ROLES = (Object.keys(OBJECT_NAMES) as ObjectRole[]).filter((r) => r !== "manifest");

/**
 * GFS pruning of one database's backups in a store. Planning reads the ledger;
 * executing writes one `retain.delete` audit row per expired backup and then deletes
 * the backup's manifest first (so it stops being a backup at once), then its payload.
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

/** A `retain.delete` row before it is chained: the backup, and what deleting it frees. */
export interface RetirementRow {
  backupId: string;
  details: { storedBytes: number; objects: number };
}

/**
 * The `retain.delete` row of each backup the plan expires, oldest first. Prune writes
 * the row before it deletes anything: from then on the ledger no longer counts the
 * backup, and any later prune finishes its delete (`removeRetired`). So an interrupted
 * prune leaves a backup retired but present, never a deletion the audit log misses.
 */
export function retirementRows(plan: PrunePlan): RetirementRow[] {
  // Oldest first: an interrupted prune leaves the newest of the expired, never a gap.
  return [...plan.expire].reverse().flatMap((point) => {
    const manifest = plan.manifests.get(point.backupId);
    if (!manifest) return [];
    const storedBytes = manifest.objects.reduce((n, o) => n + o.storedBytes, 0);
    return [{ backupId: point.backupId, details: { storedBytes, objects: manifest.objects.length } }];
  });
}

/** Deletes one backup's objects: its manifest first (so it stops being a backup at once), then its payload and verifications. */
async function deleteBackup(store: ObjectStore, databaseId: string, backupId: string): Promise<void> {
  // Keys are derived from the ids, never taken from inside the manifest: a manifest is
  // plaintext that anyone with write access to the store can edit.
  await store.delete(objectKey(databaseId, backupId, "manifest"));
  for (const role of PAYLOAD_ROLES) await store.delete(objectKey(databaseId, backupId, role));
  for await (const v of listAll(store, `${verificationPrefix(databaseId)}${backupId}/`)) await store.delete(v.key);
}

/** Per expired backup, oldest first: its `retain.delete` row, then its objects. */
export async function executePrune(
  store: ObjectStore,
  plan: PrunePlan,
  audit: AuditLog,
  actor: string,
  now: () => Date,
): Promise<PruneResult> {
  const deleted: PruneResult["deleted"] = [];
  for (const row of retirementRows(plan)) {
    await appendAudit(audit, {
      at: now().toISOString(),
      event: "retain.delete",
      actor,
      databaseId: plan.databaseId,
      backupId: row.backupId,
      details: row.details,
    });
    await deleteBackup(store, plan.databaseId, row.backupId);
    deleted.push({ backupId: row.backupId, objects: row.details.objects + 1, storedBytes: row.details.storedBytes });
  }
  return { deleted };
}

/**
 * Finishes every retirement the audit log records and the store still holds (the
 * ledger's `retired`): the deployed prune's second step, after the flow has appended
 * the rows through audit-append (the only writer of the audit table), and the CLI's
 * recovery from an interrupted prune. Only a trusted row for exactly the committed
 * manifest retires a backup, so nothing a store writer plants is deleted this way.
 */
export async function removeRetired(
  store: ObjectStore,
  databaseId: string,
  audit: AuditLog,
  now: Date,
): Promise<PruneResult> {
  const ledger = await readLedger(store, databaseId, { audit, now });
  const deleted: PruneResult["deleted"] = [];
  for (const backup of ledger.retired) {
    await deleteBackup(store, databaseId, backup.backupId);
    const storedBytes = backup.manifest.objects.reduce((n, o) => n + o.storedBytes, 0);
    deleted.push({ backupId: backup.backupId, objects: backup.manifest.objects.length + 1, storedBytes });
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
  /**
   * Prune the database's physical base backups and WAL too, after its logical backups,
   * with the same policy, reading only the bases these signers signed.
   * @default undefined: base backups and WAL are not touched
   */
  bases?: { signers: ReadonlySet<string> };
}

/** What prune did with the base backups and WAL: a plan, or the halt that stopped it. */
export type BasePruneOutcome =
  | { plan: BasePrunePlan; deleted: BasePruneResult | undefined; halted?: undefined }
  | { plan?: undefined; deleted?: undefined; halted: PruneHaltedError };

export interface PruneOutcome {
  dryRun: boolean;
  policy: RetentionPolicy;
  plan: PrunePlan;
  deleted: PruneResult["deleted"];
  /** The database's garbage (failed backups' payloads, partial uploads), collected after the prune. */
  garbage: GcPlan;
  /** Present when `bases` was asked for. */
  bases?: BasePruneOutcome;
}

/**
 * Prune one database, the one code path behind `strongroom prune` and the
 * retention-prune Lambda: validate the policy, plan, delete what expired (unless a dry
 * run), then the base backups and WAL when asked, then collect the database's garbage
 * with the default grace period.
 *
 * An untrusted base manifest halts only the base and WAL pruning: it is returned as
 * `bases.halted` (the caller reports it and fails), and the logical series, which it
 * cannot steer, is pruned as usual.
 */
export async function pruneDatabase(options: PruneDatabaseOptions): Promise<PruneOutcome> {
  const { store, databaseId, audit, actor } = options;
  const now = options.now ?? (() => new Date());
  const dryRun = options.dryRun === true;
  const policy: RetentionPolicy = { ...DEFAULT_POLICY, ...options.policy };
  validatePolicy(policy);
  const chain = audit(`db#${databaseId}`);
  const plan = await planPrune(store, databaseId, policy, now(), chain);
  let deleted: PruneResult["deleted"] = [];
  if (!dryRun) {
    deleted = (await executePrune(store, plan, chain, actor, now)).deleted;
    // What an interrupted prune retired but did not delete.
    deleted.push(...(await removeRetired(store, databaseId, chain, now())).deleted);
  }
  const bases = options.bases
    ? await pruneBases(options, options.bases.signers, policy, chain, now, dryRun)
    : undefined;
  const garbage = await collectGarbage(store, { databaseId, now, audit, actor, dryRun });
  return { dryRun, policy, plan, deleted, garbage, ...(bases ? { bases } : {}) };
}

async function pruneBases(
  options: PruneDatabaseOptions,
  signers: ReadonlySet<string>,
  policy: RetentionPolicy,
  chain: AuditLog,
  now: () => Date,
  dryRun: boolean,
): Promise<BasePruneOutcome> {
  let plan: BasePrunePlan;
  try {
    // The chain prune writes to is the one that commits bases taken without the host's key.
    const rows = await baseRowsIn(chain, options.databaseId);
    plan = await planBasePrune(options.store, options.databaseId, signers, policy, now(), rows);
  } catch (err) {
    if (err instanceof PruneHaltedError) return { halted: err };
    throw err;
  }
  const deleted = dryRun ? undefined : await executeBasePrune(options.store, plan, chain, options.actor, now);
  return { plan, deleted };
}
