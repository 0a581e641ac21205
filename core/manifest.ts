import { ManifestError } from "./errors.ts";
import { isBackupId, isDatabaseId, type ObjectRole } from "./keys.ts";

/**
 * The format this version writes. Format 1 (0.1) gave every object a `plainSha256`;
 * format 2 lets the dump's plain bytes be proven by zstd's per-frame content checksums
 * instead (`plainCheck`). Both are read (docs/formats.md).
 */
export const MANIFEST_FORMAT = "strongroom.manifest/2";
export const MANIFEST_FORMATS = ["strongroom.manifest/1", MANIFEST_FORMAT] as const;

/** How a dump's plain bytes are proven in format 2: every zstd frame's XXH64 content checksum. */
export const ZSTD_CHECKSUMS = "zstd-xxh64" as const;

/** One stored object of a backup. Sizes and digests of both the plain and the stored bytes. */
export interface ManifestObject {
  role: Exclude<ObjectRole, "manifest">;
  key: string;
  /** Transformations from plain to stored bytes, in order. */
  chain: string[];
  plainBytes: number;
  storedBytes: number;
  /** SHA-256 of the plain bytes; absent when `plainCheck` proves them instead. */
  plainSha256?: string;
  /**
   * `zstd-xxh64`: every zstd frame in the chain carries its content checksum, which the
   * decoder checks (format 2; the dump). A reader must refuse a frame without one.
   */
  plainCheck?: typeof ZSTD_CHECKSUMS;
  storedSha256: string;
  /**
   * SHA-256 of the stored object's first bytes: the age header and payload nonce. They fix
   * the payload key, so a reader that checks them before decrypting releases only chunks
   * that authenticate under the committed key: nothing a store writer made, even before
   * the whole object has been read and hashed. On the dump since 0.3; absent before.
   */
  storedHeadSha256?: string;
}

/**
 * The commit marker of a backup, written last with put-if-absent. Plaintext, so it
 * holds no secrets and nothing about the schema or the data (table names and row
 * counts live in the encrypted stats object).
 */
export interface Manifest {
  format: (typeof MANIFEST_FORMATS)[number];
  databaseId: string;
  backupId: string;
  database: string;
  startedAt: string;
  finishedAt: string;
  server: { version: string; versionNum: number; systemIdentifier: string | null };
  /**
   * Which database this is a backup of: `system:<system_identifier>/<database>` where the
   * role may read the system identifier, else `address:<host>:<port>/<database>`. Backups
   * in one series (one databaseId) must share it, so two servers that each have a database
   * `app` cannot expire each other's backups. Absent in manifests written before 0.2.
   */
  source?: string;
  /**
   * pg_database_size on the backup's snapshot: what VerifyFlow's planner sizes the verify
   * task's storage from, without the identity (the stats, which hold it too, are
   * encrypted). Absent in manifests written before it was recorded.
   */
  databaseBytes?: number;
  /**
   * The backup's `backup.start` row in its database's audit chain (db#<databaseId>).
   * `audit verify` checks the chain still reaches it: deleting the newest rows of a
   * chain leaves a manifest pointing past the chain's head. Absent with `--audit none`.
   */
  audit?: { seq: string; hash: string };
  pgDump: { version: string };
  recipients: string[];
  objects: ManifestObject[];
  worker: { version: string };
}

export function serializeManifest(manifest: Manifest): string {
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

const SHA256 = /^[0-9a-f]{64}$/;
/** A hex SHA-256, and a string first: RegExp.test converts anything else, and an object can make that throw. */
const isSha256 = (v: unknown): boolean => typeof v === "string" && SHA256.test(v);

/** Parses and checks a manifest; anything else is ManifestError naming the problem. */
export function parseManifest(text: string, key = "manifest"): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ManifestError(`${key} is not valid JSON`, { cause: err });
  }
  const fail = (what: string) => new ManifestError(`${key} is not a valid strongroom manifest: ${what}`);
  if (typeof raw !== "object" || raw === null) throw fail("not an object");
  const m = raw as Record<string, unknown>;
  if (!(MANIFEST_FORMATS as readonly unknown[]).includes(m.format)) {
    throw new ManifestError(
      `${key} has format ${JSON.stringify(m.format)}, expected ${MANIFEST_FORMATS.join(" or ")}`,
      {
        hint: "a newer strongroom may have written it; upgrade the CLI",
      },
    );
  }
  for (const field of ["databaseId", "backupId", "database", "startedAt", "finishedAt"]) {
    if (typeof m[field] !== "string") throw fail(`${field} missing`);
  }
  if (!isDatabaseId(m.databaseId as string)) throw fail("databaseId");
  if (!isBackupId(m.backupId as string)) throw fail("backupId");
  const server = m.server as Manifest["server"] | undefined;
  if (typeof server?.version !== "string" || typeof server.versionNum !== "number") throw fail("server missing");
  if (server.systemIdentifier !== null && typeof server.systemIdentifier !== "string")
    throw fail("server.systemIdentifier");
  const pgDump = m.pgDump as Manifest["pgDump"] | undefined;
  if (typeof pgDump?.version !== "string") throw fail("pgDump missing");
  const worker = m.worker as Manifest["worker"] | undefined;
  if (typeof worker?.version !== "string") throw fail("worker missing");
  if (m.source !== undefined && typeof m.source !== "string") throw fail("source");
  if (m.databaseBytes !== undefined && !(Number.isSafeInteger(m.databaseBytes) && (m.databaseBytes as number) >= 0)) {
    throw fail("databaseBytes");
  }
  const audit = m.audit as Manifest["audit"] | undefined;
  if (audit !== undefined && (typeof audit?.seq !== "string" || typeof audit.hash !== "string")) throw fail("audit");
  if (!Array.isArray(m.recipients) || m.recipients.some((r) => typeof r !== "string")) throw fail("recipients");
  if (!Array.isArray(m.objects)) throw fail("objects missing");
  for (const o of m.objects as ManifestObject[]) {
    if (
      typeof o?.key !== "string" ||
      !["dump", "roles", "stats", "globals"].includes(o.role) ||
      !Array.isArray(o.chain) ||
      o.chain.some((c) => typeof c !== "string") ||
      !Number.isSafeInteger(o.plainBytes) ||
      !Number.isSafeInteger(o.storedBytes) ||
      !plainProven(o, m.format) ||
      !isSha256(o.storedSha256) ||
      (o.storedHeadSha256 !== undefined && !isSha256(o.storedHeadSha256))
    ) {
      throw fail(`object entry ${JSON.stringify(o?.key ?? o)}`);
    }
  }
  return m as unknown as Manifest;
}

/**
 * Format 1: a plain SHA-256. Format 2: exactly one of a plain SHA-256 or zstd
 * checksums, the latter only on an object whose chain compresses with zstd frames.
 */
function plainProven(o: ManifestObject, format: unknown): boolean {
  const sha = o.plainSha256 !== undefined && isSha256(o.plainSha256);
  if (format === "strongroom.manifest/1") return sha && o.plainCheck === undefined;
  if (o.plainCheck === undefined) return sha;
  return (
    o.plainSha256 === undefined && o.plainCheck === ZSTD_CHECKSUMS && o.chain.some((c) => c.startsWith("zstd-frames/"))
  );
}

export function manifestObject(manifest: Manifest, role: ManifestObject["role"]): ManifestObject {
  const found = manifest.objects.find((o) => o.role === role);
  if (!found) throw new ManifestError(`backup ${manifest.backupId} has no ${role} object`);
  return found;
}
