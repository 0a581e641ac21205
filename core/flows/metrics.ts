/**
 * The metric catalog-record emits (CloudWatch EMF) for each committed, catalogued backup,
 * with a DatabaseId dimension. The staleness alarm of each database watches it.
 */
export const METRICS_NAMESPACE = "Strongroom";
export const BACKUP_RECORDED = "BackupRecorded";
