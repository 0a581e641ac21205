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
  /** What a restore of this backup needs of the server (absent in backups before it was recorded). */
  requirements?: RestoreRequirements;
}

export type LocaleProvider = "libc" | "icu" | "builtin";

/**
 * What the server that restores a backup must offer, read on the backup's snapshot:
 * verify compares it with the scratch server before restoring (a missing extension or
 * locale makes the verification inconclusive, never failed).
 */
export interface RestoreRequirements {
  server: { version: string; versionNum: number; encoding: string };
  /** pg_database_size at the backup: what the scratch's storage is sized from. */
  databaseBytes: number;
  /** The database's own encoding and default locale. */
  database: { encoding: string; provider: LocaleProvider; collate: string; ctype: string; locale?: string };
  /** Installed extensions: name, version, schema, and the relations each dumps the user's rows of. */
  extensions: RequiredExtension[];
  /** Collations other than the default, C and POSIX that objects use or the database defines. */
  collations: Array<{ schema: string; name: string; provider: LocaleProvider; locale: string }>;
}

export interface RequiredExtension {
  name: string;
  version: string;
  schema: string;
  /**
   * The extension's configuration relations (pg_extension_config_dump): the extension
   * creates them, and pg_dump dumps only their rows, as data entries whose table entry is
   * not in the archive. Restoring without the extension must leave those rows out too,
   * and nothing in the archive ties them to it. Absent in backups before it was recorded.
   */
  config?: Array<{ schema: string; name: string }>;
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
    (d.requirements === undefined || isRequirements(d.requirements)) &&
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

const isText = (v: unknown): v is string => typeof v === "string";
const isProvider = (v: unknown): v is LocaleProvider => v === "libc" || v === "icu" || v === "builtin";

function isRequirements(r: unknown): r is RestoreRequirements {
  const q = r as Partial<RestoreRequirements> | null;
  if (q === null || typeof q !== "object") return false;
  const { server, database, extensions, collations } = q;
  return (
    server !== undefined &&
    isText(server.version) &&
    Number.isSafeInteger(server.versionNum) &&
    isText(server.encoding) &&
    isCount(q.databaseBytes) &&
    database !== undefined &&
    isText(database.encoding) &&
    isProvider(database.provider) &&
    isText(database.collate) &&
    isText(database.ctype) &&
    (database.locale === undefined || isText(database.locale)) &&
    Array.isArray(extensions) &&
    extensions.every(
      (e) =>
        e !== null &&
        isText(e.name) &&
        isText(e.version) &&
        isText(e.schema) &&
        (e.config === undefined ||
          (Array.isArray(e.config) && e.config.every((c) => c !== null && isText(c.schema) && isText(c.name)))),
    ) &&
    Array.isArray(collations) &&
    collations.every(
      (c) => c !== null && isText(c.schema) && isText(c.name) && isProvider(c.provider) && isText(c.locale),
    )
  );
}
