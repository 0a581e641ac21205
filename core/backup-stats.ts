import { ManifestError } from "./errors.ts";

/**
 * The stats object (docs/formats.md): what a backup knows about its schema and rows,
 * sealed like the dump because table names and counts are schema data. Restore checks
 * row counts against it; verify checks the schema fingerprint.
 */
export const STATS_FORMAT = "strongroom.stats/1";

export interface TableStats {
  schema: string;
  table: string;
  rows: number;
}

export interface BackupStats {
  format: typeof STATS_FORMAT;
  /** archive: read from the dump as it streamed; count: counted on the snapshot (fallback). */
  source: "archive" | "count";
  /** SHA-256 over the archive's TOC; empty when counted on the snapshot. */
  schemaFingerprint: string;
  tables: TableStats[];
  largeObjects: number;
  /** Roles that own objects in the dump (for the restore's role check). */
  owners: string[];
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** Parses a decrypted stats object; anything else is a ManifestError naming the object. */
export function parseStats(text: string, key: string): BackupStats {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    doc = undefined;
  }
  const d = doc as Partial<BackupStats> | undefined;
  const ok =
    d !== null &&
    typeof d === "object" &&
    d.format === STATS_FORMAT &&
    (d.source === "archive" || d.source === "count") &&
    typeof d.schemaFingerprint === "string" &&
    isCount(d.largeObjects) &&
    Array.isArray(d.owners) &&
    d.owners.every((o) => typeof o === "string") &&
    Array.isArray(d.tables) &&
    d.tables.every(
      (t: Partial<TableStats> | null) =>
        t !== null &&
        typeof t === "object" &&
        typeof t.schema === "string" &&
        typeof t.table === "string" &&
        isCount(t.rows),
    );
  if (!ok) {
    throw new ManifestError(`${key} is not a ${STATS_FORMAT} document`, {
      hint: "the backup is damaged or was written by an unknown tool; restore another backup",
    });
  }
  return d as BackupStats;
}
