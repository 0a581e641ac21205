/**
 * The metrics the deployed functions emit (CloudWatch EMF), each with a DatabaseId
 * dimension, and what watches them:
 * - BackupRecorded (catalog-record, per catalogued backup): the 26-hour staleness alarm;
 * - VerificationOk, VerifyRestoreSeconds (verification-record, per verification): the
 *   outcome and the measured restore time (RTO) of each verification;
 * - NewestBackupAgeHours, VerifiedAgeHours, Ready (readiness, hourly): the deployed
 *   `strongroom status`; the "not verified recently" alarm watches VerifiedAgeHours.
 */
export const METRICS_NAMESPACE = "Strongroom";
export const BACKUP_RECORDED = "BackupRecorded";
export const VERIFICATION_OK = "VerificationOk";
export const VERIFY_RESTORE_SECONDS = "VerifyRestoreSeconds";
export const NEWEST_BACKUP_AGE_HOURS = "NewestBackupAgeHours";
export const VERIFIED_AGE_HOURS = "VerifiedAgeHours";
export const READY = "Ready";
