import { newBackupId, objectKey } from "#core/keys.ts";
import { MANIFEST_FORMAT, type Manifest, serializeManifest } from "#core/manifest.ts";
import type { ObjectStore } from "#core/store/object-store.ts";

const sha = "0".repeat(64);

/** A well-formed manifest of a backup with tiny payload objects. */
export function sampleManifest(databaseId: string, at: Date): Manifest {
  const backupId = newBackupId(at);
  const objects = (["dump", "roles", "stats"] as const).map((role) => ({
    role,
    key: objectKey(databaseId, backupId, role),
    chain: ["test"],
    plainBytes: 3,
    storedBytes: 3,
    plainSha256: sha,
    storedSha256: sha,
  }));
  return {
    format: MANIFEST_FORMAT,
    databaseId,
    backupId,
    database: databaseId,
    startedAt: at.toISOString(),
    finishedAt: at.toISOString(),
    server: { version: "15.18", versionNum: 150018, systemIdentifier: null },
    pgDump: { version: "15.18" },
    recipients: ["age1test"],
    objects,
    worker: { version: "test" },
  };
}

/** A committed backup with tiny payload objects, written the way backup writes them. */
export async function writeBackup(store: ObjectStore, databaseId: string, at: Date): Promise<string> {
  const manifest = sampleManifest(databaseId, at);
  const { backupId } = manifest;
  for (const o of manifest.objects) await store.putIfAbsent(o.key, "abc");
  await store.putIfAbsent(objectKey(databaseId, backupId, "manifest"), serializeManifest(manifest));
  return backupId;
}
