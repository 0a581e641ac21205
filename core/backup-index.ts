import { createHash } from "node:crypto";
import { compareBackups } from "./backup-order.ts";
import { BackupNotFoundError, ManifestError, NotFoundError } from "./errors.ts";
import { objectKey, parseManifestKey } from "./keys.ts";
import { type Manifest, parseManifest } from "./manifest.ts";
import { getBytes, listAll, type ObjectStore } from "./store/object-store.ts";

/**
 * Finding manifests: a backup exists only if its manifest exists, so only manifest keys
 * are considered; payload objects without one are garbage. Whether a manifest counts is
 * decided by core/ledger.ts.
 */
export interface BackupRef {
  databaseId: string;
  backupId: string;
}

/** Every committed backup in the store (of one database, if given), oldest first. */
export async function listBackupRefs(store: ObjectStore, databaseId?: string): Promise<BackupRef[]> {
  const refs: BackupRef[] = [];
  for await (const o of listAll(store, databaseId ? `${databaseId}/backups/` : "")) {
    const ref = parseManifestKey(o.key);
    if (ref && (!databaseId || ref.databaseId === databaseId)) refs.push(ref);
  }
  return refs.sort((a, b) =>
    a.databaseId < b.databaseId ? -1 : a.databaseId > b.databaseId ? 1 : compareBackups(a, b),
  );
}

export async function readManifest(store: ObjectStore, ref: BackupRef): Promise<Manifest> {
  return (await readManifestRecord(store, ref)).manifest;
}

/** A manifest with the SHA-256 of its stored bytes (what `backup.ok` rows record). */
export interface ManifestRecord {
  manifest: Manifest;
  sha256: string;
}

export async function readManifestRecord(store: ObjectStore, ref: BackupRef): Promise<ManifestRecord> {
  const key = objectKey(ref.databaseId, ref.backupId, "manifest");
  let bytes: Buffer;
  try {
    bytes = await getBytes(store, key);
  } catch (err) {
    if (err instanceof NotFoundError) throw notFound(ref.backupId, ref.databaseId, err);
    throw err;
  }
  const manifest = parseManifest(bytes.toString("utf8"), key);
  assertManifestLocation(manifest, ref, key);
  return { manifest, sha256: createHash("sha256").update(bytes).digest("hex") };
}

/**
 * A manifest must describe the backup at its own location: its ids are those of its
 * key, and every object key is the one derived from (databaseId, backupId, role). A
 * manifest copied or corrupted into another backup's directory would otherwise point
 * restore at, and prune's deletes at, a different backup's objects.
 */
export function assertManifestLocation(manifest: Manifest, ref: BackupRef, key: string): void {
  const problems: string[] = [];
  if (manifest.databaseId !== ref.databaseId) problems.push(`databaseId ${JSON.stringify(manifest.databaseId)}`);
  if (manifest.backupId !== ref.backupId) problems.push(`backupId ${JSON.stringify(manifest.backupId)}`);
  const roles = new Set<string>();
  for (const o of manifest.objects) {
    if (roles.has(o.role)) problems.push(`a second ${o.role} object`);
    roles.add(o.role);
    if (o.key !== objectKey(ref.databaseId, ref.backupId, o.role)) problems.push(`object key ${JSON.stringify(o.key)}`);
  }
  if (problems.length > 0) {
    throw new ManifestError(`${key} does not describe the backup at its location: ${problems.join(", ")}`, {
      hint: "someone with write access to the store copied or altered it; nothing was deleted or restored. Inspect it, then delete it by hand",
    });
  }
}

/**
 * Every manifest in the store, committed or not: what is there, not what counts (that is
 * core/ledger.ts, which every command reads). For tests and benchmarks.
 */
export async function listManifests(store: ObjectStore, databaseId?: string): Promise<Manifest[]> {
  const refs = await listBackupRefs(store, databaseId);
  return Promise.all(refs.map((ref) => readManifest(store, ref)));
}

function notFound(backup: string, databaseId: string | undefined, cause?: unknown): BackupNotFoundError {
  const what = backup === "latest" ? "no backups" : `no backup ${backup}`;
  return new BackupNotFoundError(`${what}${databaseId ? ` for database ${databaseId}` : ""} in this store`, {
    cause,
    hint: "`strongroom list --store …` shows the backups there",
  });
}
