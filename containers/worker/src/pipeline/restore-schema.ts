import type pg from "pg";
import type { BackupStats } from "#core/backup-stats.ts";
import { TargetNotEmptyError } from "#core/errors.ts";

/**
 * The one-schema restore (a tenant; `export-schema --target`, and export-schema's scratch
 * restore): what differs from a full restore, which `restore.ts` runs around it. The
 * schema itself, everything in it, its data, comments and grants are chosen from the
 * archive's TOC as it streams past (`schemaEntries`, through restore-list.ts;
 * pg_restore's own -n restores the objects but not the schema), into a target that must
 * not have the schema yet.
 */

/** A target that already has the schema is refused: a restore never merges into one. */
export async function assertSchemaAbsent(client: pg.Client, schema: string, database: string): Promise<void> {
  const has = await client.query("select 1 from pg_namespace where nspname = $1", [schema]);
  if ((has.rowCount ?? 0) > 0) {
    throw new TargetNotEmptyError(`schema ${JSON.stringify(schema)} already exists in ${database}`, {
      hint: "restore the schema into a database that lacks it, or drop it there first",
    });
  }
}

/** The backup's tables in the schema: what the restored counts are compared with. */
export function schemaStats(stats: BackupStats, schema: string): BackupStats {
  return { ...stats, tables: stats.tables.filter((t) => t.schema === schema) };
}
