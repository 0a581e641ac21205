import { randomUUID } from "node:crypto";
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  PutObjectLockConfigurationCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { listBackupRefs } from "#core/backup-index.ts";
import { DEFAULT_POLICY } from "#core/gfs.ts";
import { objectKey } from "#core/keys.ts";
import { executePrune, planPrune } from "#core/prune.ts";
import { openStore } from "#core/store/open-store.ts";
import { s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import { writeBackup } from "../helpers/backups.ts";

/**
 * The bucket strongroom creates always has Object Lock enabled (infra/constructs/
 * backup-bucket.ts), with a default retention only when the config asks. Against moto's
 * S3: what that means for backups' writes and prune's deletes.
 */
const DAY = 86_400_000;
const NOW = new Date("2026-11-21T12:00:00Z");
const client = new S3Client(s3ClientConfigFromEnv());

async function lockedBucket(): Promise<string> {
  const bucket = `lock-${randomUUID()}`;
  // As CloudFormation creates it from ObjectLockEnabled: true (which turns versioning on).
  await client.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
  return bucket;
}

/** Ten nightly backups of `shop`, pruned by the default policy; the keys of a pruned one. */
async function backUpAndPrune(bucket: string) {
  const store = await openStore(`s3://${bucket}/pg`);
  for (let d = 0; d < 10; d++) await writeBackup(store, "shop", new Date(NOW.getTime() - d * DAY));
  const audit = new StoreAuditLog(store, "db#shop");
  const plan = await planPrune(store, "shop", DEFAULT_POLICY, NOW, audit);
  const result = await executePrune(store, plan, audit, "test", () => NOW);
  const pruned = result.deleted[0]?.backupId as string;
  return { store, result, manifestKey: `pg/${objectKey("shop", pruned, "manifest")}` };
}

async function versionsOf(bucket: string, key: string) {
  const out = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: key }));
  return {
    markers: (out.DeleteMarkers ?? []).filter((m) => m.Key === key),
    versions: (out.Versions ?? []).filter((v) => v.Key === key),
  };
}

describe("a bucket with Object Lock enabled", () => {
  it("without a default retention, takes every backup and lets prune delete: the pruned bytes stay unlocked for the lifecycle rule", async () => {
    const bucket = await lockedBucket();
    const { store, result, manifestKey } = await backUpAndPrune(bucket);
    expect(result.deleted.length).toBeGreaterThan(0);
    expect(await listBackupRefs(store, "shop")).toHaveLength(10 - result.deleted.length);
    // The delete added a marker; the bytes are a noncurrent version that nothing locks, so
    // the 30-day noncurrent expiry removes them.
    const { markers, versions } = await versionsOf(bucket, manifestKey);
    expect(markers.map((m) => m.IsLatest)).toEqual([true]);
    expect(versions.map((v) => v.IsLatest)).toEqual([false]);
    const head = await client.send(
      new HeadObjectCommand({ Bucket: bucket, Key: manifestKey, VersionId: versions[0]?.VersionId }),
    );
    expect(head.ObjectLockMode).toBeUndefined();
  });

  it("with a default retention, locks every new version: prune's delete still works, the pruned bytes stay until the retention ends", async () => {
    const bucket = await lockedBucket();
    await client.send(
      new PutObjectLockConfigurationCommand({
        Bucket: bucket,
        ObjectLockConfiguration: {
          ObjectLockEnabled: "Enabled",
          Rule: { DefaultRetention: { Mode: "GOVERNANCE", Days: 30 } },
        },
      }),
    );
    const { result, manifestKey } = await backUpAndPrune(bucket);
    expect(result.deleted.length).toBeGreaterThan(0);
    const { markers, versions } = await versionsOf(bucket, manifestKey);
    expect(markers.map((m) => m.IsLatest)).toEqual([true]);
    const versionId = versions[0]?.VersionId;
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: manifestKey, VersionId: versionId }));
    expect(head.ObjectLockMode).toBe("GOVERNANCE");
    // Removing the locked version itself is refused, as it is to a lifecycle rule.
    const refused = await client
      .send(new DeleteObjectCommand({ Bucket: bucket, Key: manifestKey, VersionId: versionId }))
      .then(
        () => undefined,
        (err: Error) => err,
      );
    expect(refused?.name).toBe("AccessDenied");
  });
});
