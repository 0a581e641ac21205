import { randomBytes } from "node:crypto";
import { UsageError } from "./errors.ts";

/**
 * The object layout (docs/formats.md, Keys and ids), relative to the store's root/prefix:
 *   <databaseId>/backups/<backupId>/{dump.pgc.zst.age, roles.json.age, stats.json.age, manifest.json}
 * A backup exists if and only if its manifest exists.
 */
export const OBJECT_NAMES = {
  dump: "dump.pgc.zst.age",
  roles: "roles.json.age",
  /** Backups made before 0.2 hold pg_dumpall text here; it is read back never, only listed and pruned. */
  globals: "globals.sql.age",
  stats: "stats.json.age",
  manifest: "manifest.json",
} as const;

export type ObjectRole = keyof typeof OBJECT_NAMES;

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";
const BACKUP_ID = /^\d{8}T\d{6}Z-[a-z2-7]{6}$/;
const DATABASE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** The same rules as JSON-schema `pattern`s, for the Lambdas' and the config's schemas. */
export const BACKUP_ID_PATTERN = BACKUP_ID.source;
export const DATABASE_ID_PATTERN = DATABASE_ID.source;

/** `20260421T020000Z-abc234`: sorts by time, unique by its random suffix. */
export function newBackupId(at: Date): string {
  const stamp = at
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}Z$/, "Z");
  const suffix = Array.from(randomBytes(6), (b) => BASE32[b & 31]).join("");
  return `${stamp}-${suffix}`;
}

export function isDatabaseId(id: string): boolean {
  return DATABASE_ID.test(id);
}

export function isBackupId(id: string): boolean {
  return BACKUP_ID.test(id);
}

/** The time a backup id encodes. */
export function backupIdTime(id: string): Date {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z/.exec(id);
  if (!m) throw new UsageError(`not a backup id: ${id}`);
  return new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`);
}

export function assertDatabaseId(id: string): void {
  if (!DATABASE_ID.test(id)) {
    throw new UsageError(`invalid database id ${JSON.stringify(id)}`, {
      hint: "use letters, digits, '.', '_' or '-' (at most 128), starting with a letter or digit",
    });
  }
}

export function backupPrefix(databaseId: string): string {
  assertDatabaseId(databaseId);
  return `${databaseId}/backups/`;
}

export function objectKey(databaseId: string, backupId: string, role: ObjectRole): string {
  return `${backupPrefix(databaseId)}${backupId}/${OBJECT_NAMES[role]}`;
}

/** Parses `<databaseId>/backups/<backupId>/manifest.json`; undefined for any other key. */
export function parseManifestKey(key: string): { databaseId: string; backupId: string } | undefined {
  const m = /^([^/]+)\/backups\/([^/]+)\/manifest\.json$/.exec(key);
  if (!m?.[1] || !m[2] || !isBackupId(m[2])) return undefined;
  return { databaseId: m[1], backupId: m[2] };
}

/**
 * A verification's result objects (docs/formats.md, Verification):
 *   <databaseId>/verifications/<backupId>/<at>.json.age   the full result, encrypted
 *   <databaseId>/verifications/<backupId>/<at>.json       a summary without schema data
 * `<at>` is the UTC start time to the millisecond and six random base32 characters
 * (`20261121T050000123Z-abc234`): results sort by time, and two verifications of one
 * backup in the same instant still get keys of their own.
 */
export function verificationKeys(databaseId: string, backupId: string, at: Date): { full: string; summary: string } {
  assertDatabaseId(databaseId);
  const stamp = at
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.(\d{3})Z$/, "$1Z");
  const suffix = Array.from(randomBytes(6), (b) => BASE32[b & 31]).join("");
  const base = `${databaseId}/verifications/${backupId}/${stamp}-${suffix}`;
  return { full: `${base}.json.age`, summary: `${base}.json` };
}

/** `<db>/wal/`: the database's archived WAL files, each under its own name (docs/formats.md, WAL). */
export function walPrefix(databaseId: string): string {
  assertDatabaseId(databaseId);
  return `${databaseId}/wal/`;
}

export function verificationPrefix(databaseId: string): string {
  assertDatabaseId(databaseId);
  return `${databaseId}/verifications/`;
}
