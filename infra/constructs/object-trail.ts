import { Duration, RemovalPolicy, Validations } from "aws-cdk-lib";
import * as cloudtrail from "aws-cdk-lib/aws-cloudtrail";
import * as s3 from "aws-cdk-lib/aws-s3";
import { Construct } from "constructs";
import { type BackupBucket, PRIVATE_BUCKET } from "./backup-bucket.ts";

export interface ObjectTrailProps {
  readonly bucket: BackupBucket;
  /** How long the trail's log files are kept. @default 400 days (a year of monthly backups, and a margin) */
  readonly retention?: Duration;
}

/**
 * A CloudTrail trail of every write to strongroom's objects (S3 data events, WriteOnly:
 * PutObject, DeleteObject, multipart, …), by anyone: strongroom's own acts are in its
 * audit log, but a deletion by an administrator, a leaked key or a misconfigured
 * lifecycle rule is not, and S3 keeps no record of who deleted what. Management events
 * are not recorded here (the account's own trail has them). Its log files go to a bucket
 * of their own, versioned, private, TLS-only, kept beyond the stack.
 */
export class ObjectTrail extends Construct {
  readonly trail: cloudtrail.Trail;
  readonly logBucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: ObjectTrailProps) {
    super(scope, id);
    this.logBucket = new s3.Bucket(this, "Logs", {
      ...PRIVATE_BUCKET,
      lifecycleRules: [
        { id: "expire-trail-logs", expiration: props.retention ?? Duration.days(400) },
        // Versioned: an expired or deleted log file's bytes go 30 days later, and its marker too.
        { id: "expire-noncurrent", noncurrentVersionExpiration: Duration.days(30), expiredObjectDeleteMarker: true },
      ],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(this.logBucket).acknowledge({
      id: "AwsSolutions-S1",
      reason: "this bucket holds CloudTrail's log files; logging access to it would need a third bucket",
    });
    this.trail = new cloudtrail.Trail(this, "Trail", {
      // CDK's declarations predate exactOptionalPropertyTypes: a Bucket is an IBucket.
      bucket: this.logBucket as s3.IBucket,
      // Data events of one bucket in this region; the account's trail covers the rest.
      isMultiRegionTrail: false,
      includeGlobalServiceEvents: false,
      managementEvents: cloudtrail.ReadWriteType.NONE,
      enableFileValidation: true,
      sendToCloudWatchLogs: false,
    });
    const prefix = props.bucket.prefix;
    this.trail.addS3EventSelector(
      [{ bucket: props.bucket.bucket, ...(prefix ? { objectPrefix: `${prefix}/` } : {}) }],
      {
        readWriteType: cloudtrail.ReadWriteType.WRITE_ONLY,
        includeManagementEvents: false,
      },
    );
    Validations.of(this.trail).acknowledge({
      id: "AwsSolutions-CT1",
      reason: "the trail's files are in a private, TLS-only, versioned bucket; nobody reads them as a stream",
    });
  }
}
