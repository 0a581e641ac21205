/**
 * The metrics the deployed functions emit (CloudWatch EMF), each with the dimensions
 * `DatabaseId` and `service` (Powertools adds its serviceName to every metric), and what
 * watches them:
 * - BackupRecorded, BackupStoredBytes, BackupDurationSeconds (catalog-record, per
 *   catalogued backup): the 26-hour staleness alarm; the dashboard's size, duration and
 *   14-day record; BaseBackupRecorded per committed base backup (kind "base"), with its
 *   own staleness alarm;
 * - VerificationOk, VerifyRestoreSeconds (verification-record, per verification): the
 *   outcome and the measured restore time (RTO) of each verification that verified or
 *   failed; VerifiedExclusions for one that verified, the extensions its restore left out
 *   (0 for none); VerificationInconclusive for one the verifier could not decide (a missing
 *   extension or locale), per database and, without DatabaseId, for the deployment's
 *   VerificationInconclusive alarm;
 * - NewestBackupAgeHours, VerifiedAgeHours, Ready (readiness, hourly): the deployed
 *   `strongroom status`; the "not verified recently" alarm watches VerifiedAgeHours.
 * - for a database with `walArchiving` (readiness, hourly, from the WAL and base backups
 *   its host signed): WalArchiveAgeMinutes (the newest archived WAL's age, by its signed
 *   pushedAt: the RPO now), WalGaps (gaps that stop a recovery from the newest base),
 *   WalUntrustedObjects (objects under wal/ no trusted signer signed), NewestBaseAgeHours,
 *   PitrVerifiedAgeHours and PitrReady; the WalArchiveAge, WalGap and WalUntrusted alarms.
 * The alarms and the dashboard (infra/constructs/) import these names, so a metric renamed
 * here is renamed where it is watched.
 */
export const METRICS_NAMESPACE = "Strongroom";
/** Powertools' serviceName, which it adds to every metric as the `service` dimension. */
export const METRICS_SERVICE = "strongroom";
export const SERVICE_DIMENSION = "service";
export const DATABASE_DIMENSION = "DatabaseId";

export const BACKUP_RECORDED = "BackupRecorded";
/** Per committed base backup (BackupFlow with kind "base"): its own staleness alarm, so neither kind hides the other. */
export const BASE_RECORDED = "BaseBackupRecorded";
export const BACKUP_STORED_BYTES = "BackupStoredBytes";
export const BACKUP_DURATION_SECONDS = "BackupDurationSeconds";
export const VERIFICATION_OK = "VerificationOk";
export const VERIFY_RESTORE_SECONDS = "VerifyRestoreSeconds";
export const VERIFICATION_INCONCLUSIVE = "VerificationInconclusive";
/**
 * A backup just catalogued is too large for any verify task's storage
 * (core/flows/verify-storage.ts): catalog-record emits it without DatabaseId, for the
 * deployment's VerifyStorageExceeded alarm, the day of the backup, before VerifyFlow's
 * planner refuses to verify it.
 */
export const VERIFY_STORAGE_EXCEEDED = "VerifyStorageExceeded";
/** Per verified verification: how many extensions its restore left out (verified with exclusions; 0 for none). */
export const VERIFIED_EXCLUSIONS = "VerifiedExclusions";
export const NEWEST_BACKUP_AGE_HOURS = "NewestBackupAgeHours";
export const VERIFIED_AGE_HOURS = "VerifiedAgeHours";
export const READY = "Ready";
export const WAL_ARCHIVE_AGE_MINUTES = "WalArchiveAgeMinutes";
export const WAL_GAPS = "WalGaps";
export const WAL_UNTRUSTED_OBJECTS = "WalUntrustedObjects";
export const NEWEST_BASE_AGE_HOURS = "NewestBaseAgeHours";
export const PITR_VERIFIED_AGE_HOURS = "PitrVerifiedAgeHours";
export const PITR_READY = "PitrReady";

/** The dimensions of one database's metrics, exactly as the functions emit them. */
export function databaseDimensions(databaseId: string): Record<string, string> {
  return { [DATABASE_DIMENSION]: databaseId, [SERVICE_DIMENSION]: METRICS_SERVICE };
}

/**
 * What a committed backup's manifest says about its cost: the bytes it stores (every
 * object, as billed) and how long the task took from start to commit, in seconds.
 */
export function backupFacts(backup: { storedBytes: number; startedAt: string; finishedAt: string }): {
  storedBytes: number;
  durationSeconds: number;
} {
  const ms = Date.parse(backup.finishedAt) - Date.parse(backup.startedAt);
  // A clock that went backwards (or an unparsable time) gives no duration, never a negative one.
  return { storedBytes: backup.storedBytes, durationSeconds: Number.isFinite(ms) && ms > 0 ? ms / 1000 : 0 };
}
