import type { AuditLog } from "#core/audit/audit-log.ts";
import type { Manifest } from "#core/manifest.ts";
import type { ObjectStore } from "#core/store/object-store.ts";
import { backup } from "./backup.ts";
import type { BackupJobOptions } from "./backup-job.ts";
import { restore } from "./restore.ts";
import { openScratch } from "./scratch.ts";

export interface ExportSchemaOptions extends BackupJobOptions {
  schema: string;
  /** Where the exported schema is committed, as a backup of its own. */
  out: ObjectStore;
  recipients: string[];
  /** @default `<databaseId>.<schema>`, made a valid database id */
  outDatabaseId?: string;
  /** The out store's audit log for the new backup's rows. */
  outAudit?: (databaseId: string) => AuditLog;
  scratchDir?: string;
}

export interface ExportSchemaResult {
  schema: string;
  from: { databaseId: string; backupId: string };
  /** The new backup, holding only the schema. */
  manifest: Manifest;
}

/**
 * A schema (a tenant) of a backup as a backup of its own: restored into a throwaway
 * cluster of the backup's major (the schema only, counts checked), then backed up from
 * there into `out`, encrypted to `recipients`. So `strongroom restore` reads the export,
 * and so does `age -d | zstd -d | pg_restore`, as any backup. Nothing plain touches
 * disk but the scratch cluster's own files, which are removed with it.
 */
export async function exportSchema(options: ExportSchemaOptions): Promise<ExportSchemaResult> {
  const { manifest } = options.backup;
  const scratch = await openScratch(manifest, {
    scratch: "auto",
    purpose: "export",
    ...(options.scratchDir ? { scratchDir: options.scratchDir } : {}),
    ...(options.env ? { env: options.env } : {}),
    log: options.log,
  });
  try {
    await restore({
      ...options,
      target: scratch.target,
      create: true,
    });
    const outDatabaseId =
      options.outDatabaseId ??
      `${manifest.databaseId}.${options.schema}`.replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 128);
    const exported = await backup({
      conn: scratch.target,
      store: options.out,
      recipients: options.recipients,
      databaseId: outDatabaseId,
      // Each export comes from a new scratch cluster: the series' source always differs.
      allowSourceChange: true,
      log: options.log,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.env ? { env: options.env } : {}),
      ...(options.outAudit ? { audit: options.outAudit } : {}),
      actor: options.actor ?? "cli",
    });
    return {
      schema: options.schema,
      from: { databaseId: manifest.databaseId, backupId: manifest.backupId },
      manifest: exported,
    };
  } finally {
    await scratch
      .dispose()
      .catch((err: unknown) => options.log.warn("could not remove the scratch cluster", { error: String(err) }));
  }
}
