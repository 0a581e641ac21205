import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { App, Stack } from "aws-cdk-lib";
import { CfnBucket } from "aws-cdk-lib/aws-s3";
import { beforeAll, describe, expect, it } from "vitest";
import { BackupBucket, NONCURRENT_DAYS } from "../../infra/constructs/backup-bucket.ts";
import { type CfnResource, exampleConfig, synthesize } from "../helpers/stack.ts";

/**
 * The AWS rule this file encodes (CloudFormation resource reference, AWS::S3::Bucket):
 * changing `BucketName` or `ObjectLockEnabled` is "Update requires: Replacement", while
 * `ObjectLockConfiguration` (the default retention) is "Update requires: No interruption".
 * The bucket is retained, so a replacement would leave every backup in the old bucket and
 * point the deployment at a new, empty one. So no config change may alter those two.
 */
const REPLACING_PROPERTIES = ["BucketName", "ObjectLockEnabled"] as const;

const LOCKS = [
  undefined,
  { mode: "GOVERNANCE", days: 30 },
  { mode: "GOVERNANCE", days: 90 },
  { mode: "COMPLIANCE", days: 3650 },
] as const;

type Templates = Array<{ lock: (typeof LOCKS)[number]; resources: Record<string, CfnResource> }>;
let templates: Templates;

beforeAll(() => {
  templates = LOCKS.map((lock) => {
    const raw = exampleConfig();
    raw.bucket = lock ? { create: true, objectLock: lock } : { create: true };
    return { lock, resources: synthesize(raw).Resources };
  });
});

const bucketsOf = (resources: Record<string, CfnResource>) =>
  Object.entries(resources).filter(([id, r]) => r.Type === "AWS::S3::Bucket" && id.startsWith("BackupsBucket"));

describe("the backup bucket and Object Lock", () => {
  it("creates the bucket with ObjectLockEnabled whatever the config's objectLock is, so no config change can replace it", () => {
    const [first, ...rest] = templates.map(({ resources }) => {
      const buckets = bucketsOf(resources);
      expect(buckets).toHaveLength(1);
      const [logicalId, bucket] = buckets[0] as [string, CfnResource];
      return { logicalId, replacing: REPLACING_PROPERTIES.map((p) => bucket.Properties[p]), bucket };
    });
    expect(first?.replacing).toEqual([undefined, true]);
    for (const other of rest) {
      // The same resource (a new logical id is a new bucket too) with the same replacing properties.
      expect(other.logicalId).toBe(first?.logicalId);
      expect(other.replacing).toEqual(first?.replacing);
    }
  });

  it("lets the config's objectLock change nothing but the bucket's default retention, which CloudFormation updates in place", () => {
    const withoutRetention = (resources: Record<string, CfnResource>) =>
      JSON.parse(JSON.stringify(resources), (key, value) => (key === "ObjectLockConfiguration" ? undefined : value));
    const [none, ...locked] = templates;
    for (const t of locked) expect(withoutRetention(t.resources)).toEqual(withoutRetention(none?.resources ?? {}));

    const retentionOf = (t: Templates[number]) =>
      (bucketsOf(t.resources)[0] as [string, CfnResource])[1].Properties.ObjectLockConfiguration;
    expect(retentionOf(none as Templates[number])).toBeUndefined();
    for (const t of locked) {
      expect(retentionOf(t)).toEqual({
        ObjectLockEnabled: "Enabled",
        Rule: { DefaultRetention: { Mode: t.lock?.mode, Days: t.lock?.days } },
      });
    }
  });

  it("still expires pruned backups' noncurrent versions with Object Lock on and no default retention", () => {
    const [, bucket] = bucketsOf(templates[0]?.resources ?? {})[0] as [string, CfnResource];
    const rules = (bucket.Properties.LifecycleConfiguration as { Rules: Array<Record<string, unknown>> }).Rules;
    expect(rules).toContainEqual(
      expect.objectContaining({
        Status: "Enabled",
        NoncurrentVersionExpiration: { NoncurrentDays: NONCURRENT_DAYS },
        ExpiredObjectDeleteMarker: true,
      }),
    );
    expect(bucket.DeletionPolicy).toBe("Retain");
    expect(bucket.UpdateReplacePolicy).toBe("Retain");
  });

  it("lets no role lock an object or bypass a lock: with no default retention, nothing is locked and prune frees storage", () => {
    const lockActions =
      /^s3:(\*|PutObjectRetention|PutObjectLegalHold|BypassGovernanceRetention|PutBucketObjectLockConfiguration)$/;
    const granted = Object.values(templates[0]?.resources ?? {})
      .filter((r) => r.Type === "AWS::IAM::Policy" || r.Type === "AWS::S3::BucketPolicy")
      .flatMap(
        (r) => (r.Properties.PolicyDocument as { Statement: Array<{ Effect: string; Action: unknown }> }).Statement,
      )
      .filter((s) => s.Effect === "Allow")
      .flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]) as string[]);
    expect(granted.filter((a) => lockActions.test(a))).toEqual([]);
  });

  it("sets no per-object retention or legal hold anywhere in the code that writes objects", () => {
    // A per-object lock would outlive prune exactly as a default retention does, unannounced.
    const root = path.resolve(import.meta.dirname, "../..");
    const sources = execFileSync("git", ["ls-files", "core", "containers", "functions"], {
      cwd: root,
      encoding: "utf8",
    })
      .split("\n")
      .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"));
    const locking = sources.filter((f) =>
      /ObjectLock(Mode|RetainUntilDate|LegalHoldStatus)|PutObject(Retention|LegalHold)Command/.test(
        readFileSync(path.join(root, f), "utf8"),
      ),
    );
    expect(locking).toEqual([]);
  });

  it("refuses objectLock on an imported bucket, naming the prop", () => {
    const stack = new Stack(new App());
    expect(
      () => new BackupBucket(stack, "B", { existingBucketName: "theirs", objectLock: { mode: "GOVERNANCE", days: 1 } }),
    ).toThrow(/objectLock applies to a bucket strongroom creates/);
    // An imported bucket is not strongroom's to change: no bucket resource at all.
    new BackupBucket(stack, "Imported", { existingBucketName: "theirs" });
    expect(stack.node.findAll().filter((c) => c instanceof CfnBucket)).toEqual([]);
  });
});
