import { NotFoundError } from "#core/errors.ts";
import type { TocEntry } from "../stages/archive-stats.ts";

/**
 * Choosing entries from a pg_dump archive's table of contents (restore's --schema,
 * recover-table). An entry is chosen by its type, schema and name as pg_dump recorded
 * them, and by the dependencies pg_dump recorded between entries, never by reading or
 * editing the SQL it holds: that SQL is only ever run as pg_dump wrote it, by pg_restore.
 */

/**
 * The entries of one schema, in TOC order: the schema, every object in it (with its
 * data, comments and grants), and the comments, labels and grants on the schema itself.
 * A schema that is not in the backup is refused, naming those that are.
 */
export function schemaEntries(entries: TocEntry[], schema: string): TocEntry[] {
  if (!entries.some((e) => e.desc === "SCHEMA" && e.tag === schema)) {
    const schemas = entries.filter((e) => e.desc === "SCHEMA").map((e) => e.tag);
    throw new NotFoundError(`schema ${JSON.stringify(schema)} is not in this backup`, {
      hint: `schemas in the backup: ${schemas.join(", ") || "none but public"}`,
    });
  }
  const onSchema = new Set([`SCHEMA ${schema}`, `SCHEMA "${schema.replaceAll('"', '""')}"`]);
  return entries.filter(
    (e) =>
      (e.desc === "SCHEMA" && e.tag === schema) ||
      e.namespace === schema ||
      (e.namespace === "" && onSchema.has(e.tag)),
  );
}
