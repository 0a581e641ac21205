import { newBackupId, objectKey, verificationKeys } from "#core/keys.ts";
import { MANIFEST_FORMAT, type Manifest, serializeManifest } from "#core/manifest.ts";
import type { ObjectStore } from "#core/store/object-store.ts";
import { summarize, VERIFICATION_FORMAT, type VerificationSummary } from "#core/verification.ts";

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

/** A verification summary as `strongroom verify` writes it (only the summary: prune and status read that). */
export function sampleVerification(
  databaseId: string,
  backupId: string,
  at: Date,
  ok: boolean,
  kind: "restore" | "integrity" = "restore",
): VerificationSummary {
  return summarize({
    format: VERIFICATION_FORMAT,
    kind,
    ok,
    databaseId,
    backupId,
    at: at.toISOString(),
    scratch: { kind: "auto", serverVersion: "15.18" },
    checks: [
      { name: "restore", ok: true, detail: "", seconds: 1 },
      { name: "row-counts", ok, detail: "", seconds: 1 },
    ],
    rto: { restoreSeconds: 12.5, checksSeconds: 1, totalSeconds: 14, dumpBytes: 3, storedBytes: 9 },
    worker: { version: "test", cores: 2, memoryMiB: 1024 },
  });
}

export async function writeVerification(
  store: ObjectStore,
  databaseId: string,
  backupId: string,
  at: Date,
  ok: boolean,
  kind: "restore" | "integrity" = "restore",
): Promise<void> {
  const summary = sampleVerification(databaseId, backupId, at, ok, kind);
  await store.putIfAbsent(verificationKeys(databaseId, backupId, at).summary, JSON.stringify(summary));
}
