import { createHash } from "node:crypto";
import { type AuditLog, appendAudit } from "#core/audit/audit-log.ts";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { newBackupId, objectKey, verificationKeys } from "#core/keys.ts";
import { MANIFEST_FORMAT, type Manifest, serializeManifest } from "#core/manifest.ts";
import type { VerificationRecord } from "#core/status.ts";
import { getBytes, type ObjectStore } from "#core/store/object-store.ts";
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

/**
 * A backup with tiny payload objects, written the way backup writes them, and committed
 * by a backup.ok row in the store's own audit log recording its manifest's SHA-256
 * (core/ledger.ts); `commit: false` leaves it uncommitted, as a store writer would.
 * `tookMs` dates its start that long before `at`, when it finished.
 */
export async function writeBackup(
  store: ObjectStore,
  databaseId: string,
  at: Date,
  options: { commit?: boolean; audit?: AuditLog; tookMs?: number; databaseBytes?: number } = {},
): Promise<string> {
  const manifest = sampleManifest(databaseId, at);
  if (options.databaseBytes !== undefined) manifest.databaseBytes = options.databaseBytes;
  if (options.tookMs) manifest.startedAt = new Date(at.getTime() - options.tookMs).toISOString();
  const { backupId } = manifest;
  for (const o of manifest.objects) await store.putIfAbsent(o.key, "abc");
  const text = serializeManifest(manifest);
  await store.putIfAbsent(objectKey(databaseId, backupId, "manifest"), text);
  if (options.commit !== false) {
    await appendAudit(options.audit ?? new StoreAuditLog(store, `db#${databaseId}`), {
      at: at.toISOString(),
      event: "backup.ok",
      actor: "test",
      databaseId,
      backupId,
      details: { manifestSha256: sha256(text) },
    });
  }
  return backupId;
}

const sha256 = (bytes: Buffer | string) => createHash("sha256").update(bytes).digest("hex");

/** The SHA-256 of a backup's manifest as the store holds it. */
export async function manifestSha256(store: ObjectStore, databaseId: string, backupId: string): Promise<string> {
  return sha256(await getBytes(store, objectKey(databaseId, backupId, "manifest")));
}

/** A verification as status reads it (core/status.ts). */
export function sampleRecord(
  backupId: string,
  at: Date,
  ok: boolean,
  kind: "restore" | "integrity" = "restore",
): VerificationRecord {
  return { backupId, kind, ok, at: at.toISOString(), restoreSeconds: 12.5, failedChecks: ok ? [] : ["row-counts"] };
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

/**
 * A verification as `strongroom verify` records it: the verify.ok / verify.fail audit row
 * naming the manifest's SHA-256 (what counts), and the plaintext summary beside it.
 */
export async function writeVerification(
  store: ObjectStore,
  databaseId: string,
  backupId: string,
  at: Date,
  ok: boolean,
  kind: "restore" | "integrity" = "restore",
  audit?: AuditLog,
): Promise<void> {
  const summary = sampleVerification(databaseId, backupId, at, ok, kind);
  await store.putIfAbsent(verificationKeys(databaseId, backupId, at).summary, JSON.stringify(summary));
  await appendAudit(audit ?? new StoreAuditLog(store, `db#${databaseId}`), {
    at: at.toISOString(),
    event: ok ? "verify.ok" : "verify.fail",
    actor: "test",
    databaseId,
    backupId,
    details: {
      kind,
      manifestSha256: await manifestSha256(store, databaseId, backupId),
      rtoSeconds: summary.rto.restoreSeconds,
      ...(ok ? {} : { failedChecks: ["row-counts"] }),
    },
  });
}
