import { Duration, RemovalPolicy, Validations } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import * as s3 from "aws-cdk-lib/aws-s3";
import { Construct } from "constructs";

export interface BackupBucketProps {
  /** Import this existing bucket instead of creating one. @default a new bucket */
  readonly existingBucketName?: string;
  /**
   * The default retention of a created bucket, which always has Object Lock enabled.
   * @default no default retention: objects are not locked unless a writer locks them
   */
  readonly objectLock?: { readonly mode: "GOVERNANCE" | "COMPLIANCE"; readonly days: number };
  /** Key prefix of strongroom's objects (no leading or trailing /). @default "" */
  readonly prefix?: string;
}

/** What every bucket strongroom creates is: versioned, encrypted, private, TLS-only, owned by the account. */
export const PRIVATE_BUCKET = {
  versioned: true,
  encryption: s3.BucketEncryption.S3_MANAGED,
  blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
  enforceSSL: true,
  objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
} satisfies s3.BucketProps;

/**
 * Where backups live. A created bucket keeps versions (an overwritten or deleted object
 * can be recovered), is encrypted, private, TLS-only, and aborts multipart uploads left
 * by a killed task after a day, so a failed backup's parts do not cost forever.
 *
 * A created bucket always has Object Lock enabled, whatever the config says, because
 * `AWS::S3::Bucket.ObjectLockEnabled` can only be set by replacing the bucket: a config
 * that switched it on later would make CloudFormation create a new, empty bucket and, the
 * old one being retained, leave every backup behind in it. The config's `objectLock` only
 * sets the default retention (`ObjectLockConfiguration.Rule.DefaultRetention`), which
 * CloudFormation changes in place. Enabled without a default retention, Object Lock locks
 * nothing (strongroom never sets a per-object retention or legal hold), so prune's deletes
 * and the noncurrent-version expiry below work as on any versioned bucket.
 */
export class BackupBucket extends Construct {
  readonly bucket: s3.IBucket;
  /** s3://bucket/prefix, as the worker and the Lambdas take it. */
  readonly storeUrl: string;
  /** The ARN pattern of every object strongroom writes. */
  readonly objectsArn: string;
  readonly prefix: string;
  /** The ARN pattern of every manifest under a prefix. */
  readonly manifestsArn: (prefix: string) => string;

  constructor(scope: Construct, id: string, props: BackupBucketProps = {}) {
    super(scope, id);
    if (props.existingBucketName && props.objectLock) {
      throw new Error("objectLock applies to a bucket strongroom creates; set it on the existing bucket instead");
    }
    this.prefix = props.prefix ?? "";
    this.manifestsArn = (prefix: string) =>
      this.bucket.arnForObjects(`${prefix ? `${prefix}/` : ""}*/backups/*/manifest.json`);
    if (props.existingBucketName) {
      this.bucket = s3.Bucket.fromBucketName(this, "Imported", props.existingBucketName);
    } else {
      const bucket = new s3.Bucket(this, "Bucket", {
        ...PRIVATE_BUCKET,
        lifecycleRules: [
          { id: "abort-incomplete-uploads", abortIncompleteMultipartUploadAfter: Duration.days(1) },
          // The bucket is versioned, so prune's deletes only add delete markers: without
          // this rule no deleted backup's bytes would ever go. They stay 30 days (a
          // mistaken or hostile delete can be undone), then go, and so do the markers.
          {
            id: "expire-deleted-backups",
            noncurrentVersionExpiration: Duration.days(NONCURRENT_DAYS),
            expiredObjectDeleteMarker: true,
          },
        ],
        // Always, and never from the config: see the class comment.
        objectLockEnabled: true,
        ...(props.objectLock ? { objectLockDefaultRetention: defaultRetention(props.objectLock) } : {}),
        removalPolicy: RemovalPolicy.RETAIN,
      });
      Validations.of(bucket).acknowledge({
        id: "AwsSolutions-S1",
        reason:
          "every consequential act on backups is in strongroom's hash-chained audit log; S3 server access logs would need a second bucket the team may not want (CloudTrail data events are the team's choice)",
      });
      // CDK's declarations predate exactOptionalPropertyTypes: a Bucket is an IBucket.
      this.bucket = bucket as s3.IBucket;
      // A committed manifest is never overwritten, by anyone: BackupFlow reads it back after
      // the task to record its SHA-256 in backup.ok, and an overwrite in that window would
      // commit someone else's. strongroom writes manifests with If-None-Match only.
      // A base backup's manifest too: an unsigned one counts by the bytes BackupFlow reads back.
      const base = this.bucket.arnForObjects(`${this.prefix ? `${this.prefix}/` : ""}*/base/*/manifest.json`);
      bucket.addToResourcePolicy(
        noManifestOverwrite([this.manifestsArn(props.prefix ?? ""), base], new iam.AnyPrincipal()),
      );
      // A base's tar is named in its manifest by digest, and the backup role may put base
      // tars: without this, it could replace an older base's, which restore would refuse
      // only when it came to it. strongroom completes it with If-None-Match.
      bucket.addToResourcePolicy(
        noUploadOverwrite(
          this.bucket.arnForObjects(`${this.prefix ? `${this.prefix}/` : ""}*/base/*/base.tar.zst.age`),
          new iam.AnyPrincipal(),
        ),
      );
      // The bucket outlives the stack, and so must what its policy refuses (TLS only, no
      // manifest overwrite): a deleted stack must not leave the backups unguarded.
      bucket.policy?.applyRemovalPolicy(RemovalPolicy.RETAIN);
    }
    const path = this.prefix === "" ? "" : `/${this.prefix}`;
    this.storeUrl = `s3://${this.bucket.bucketName}${path}`;
    this.objectsArn = this.bucket.arnForObjects(this.prefix === "" ? "*" : `${this.prefix}/*`);
  }
}

/** How long a deleted or replaced object's bytes stay recoverable in the versioned bucket. */
export const NONCURRENT_DAYS = 30;

/**
 * The default retention of new object versions. A locked version outlives prune's delete
 * (which only adds a delete marker) and the noncurrent-version expiry: lifecycle removes it
 * only once its retention has passed too, so a pruned backup's bytes stay until both 30 days
 * after the delete and `days` after the put have gone by.
 */
function defaultRetention(lock: NonNullable<BackupBucketProps["objectLock"]>): s3.ObjectLockRetention {
  const days = Duration.days(lock.days);
  return lock.mode === "COMPLIANCE" ? s3.ObjectLockRetention.compliance(days) : s3.ObjectLockRetention.governance(days);
}

/**
 * Denies putting a manifest without `If-None-Match: *` (condition key `s3:if-none-match`),
 * so an existing manifest can never be overwritten: with the header, S3 refuses a key
 * that exists (412); without it, this statement refuses the request.
 */

export function noManifestOverwrite(manifests: string | string[], principal?: iam.IPrincipal): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: "NoManifestOverwrite",
    effect: iam.Effect.DENY,
    actions: ["s3:PutObject"],
    resources: Array.isArray(manifests) ? manifests : [manifests],
    // Not Null: any header other than `*` is refused too (a negated operator also matches an absent key).
    conditions: { StringNotEquals: { "s3:if-none-match": "*" } },
    ...(principal ? { principals: [principal] } : {}),
  });
}

/**
 * Denies creating an object without `If-None-Match: *`, for objects written by multipart
 * upload: CreateMultipartUpload and UploadPart cannot carry the header, so only the
 * requests that create the object (`s3:ObjectCreationOperation`: PutObject,
 * CompleteMultipartUpload, CopyObject) must. With the header, S3 refuses a key that
 * exists (412). Fails closed: a request without the operation key (one the documentation
 * does not list, such as a browser-form POST) is denied too (BoolIfExists), and so is a
 * header other than `*` (a negated operator matches an absent key as well).
 */
export function noUploadOverwrite(objects: string | string[], principal?: iam.IPrincipal): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: "NoUploadOverwrite",
    effect: iam.Effect.DENY,
    actions: ["s3:PutObject"],
    resources: Array.isArray(objects) ? objects : [objects],
    conditions: {
      StringNotEquals: { "s3:if-none-match": "*" },
      BoolIfExists: { "s3:ObjectCreationOperation": "true" },
    },
    ...(principal ? { principals: [principal] } : {}),
  });
}
