import * as path from "node:path";
import { RemovalPolicy, Validations } from "aws-cdk-lib";
import { Platform } from "aws-cdk-lib/aws-ecr-assets";
import * as ecs from "aws-cdk-lib/aws-ecs";
import * as iam from "aws-cdk-lib/aws-iam";
import * as logs from "aws-cdk-lib/aws-logs";
import * as secretsmanager from "aws-cdk-lib/aws-secretsmanager";
import { Construct } from "constructs";
import { type BackupBucket, noManifestOverwrite } from "./backup-bucket.ts";
import { acknowledgeWildcard } from "./nag.ts";
import type { Network } from "./network.ts";

const REPO_ROOT = path.resolve(import.meta.dirname, "../..");

export interface WorkerDatabase {
  readonly id: string;
  /** The RDS-style JSON secret: host, port, username, password, dbname. */
  readonly secretArn: string;
  readonly task: { readonly cpu: number; readonly memoryMiB: number; readonly ephemeralGiB: number };
}

export interface WorkerProps {
  readonly network: Network;
  readonly bucket: BackupBucket;
  /** age public keys every backup is encrypted to. */
  readonly recipients: readonly string[];
  /** The age identity's secret; only the restore (and verify) task definitions read it. */
  readonly identitySecretArn: string;
  readonly databases: readonly WorkerDatabase[];
  /** Other servers a restore may target. @default none */
  readonly restoreTargets?: ReadonlyArray<{ readonly id: string; readonly secretArn: string }>;
  /** @default the image built from containers/worker/Dockerfile (an asset, pushed to ECR) */
  readonly image?: ecs.ContainerImage;
  /** @default three months */
  readonly logRetention?: logs.RetentionDays;
}

/**
 * The Fargate side: one cluster, one image, and a task definition per duty and server.
 * A task definition names its secrets, and ECS injects them (database credentials as
 * PG* variables, the identity as STRONGROOM_IDENTITY), so no credential is ever in a
 * flow's input, a container override or the plain environment. ARM64, a read-only root
 * filesystem, and a scratch volume at /tmp for `restore --jobs` staging.
 *
 * Roles, per duty: the backup task may put objects (and abort its multipart uploads)
 * and read manifests, never delete; the restore task may read, never write; the verify
 * task may read, and put only its results under `<db>/verifications/`. Only the restore
 * and verify task definitions' execution roles may read the identity secret; the verify
 * task gets no database secret at all (it restores into a cluster inside itself).
 */
export class Worker extends Construct {
  static readonly CONTAINER = "worker";
  readonly cluster: ecs.Cluster;
  readonly backupTasks = new Map<string, ecs.FargateTaskDefinition>();
  readonly restoreTasks = new Map<string, ecs.FargateTaskDefinition>();
  readonly restoreTargetTasks = new Map<string, ecs.FargateTaskDefinition>();
  readonly verifyTasks = new Map<string, ecs.FargateTaskDefinition>();
  readonly backupRole: iam.Role;
  readonly restoreRole: iam.Role;
  readonly verifyRole: iam.Role;

  private readonly image: ecs.ContainerImage;
  private readonly logGroup: logs.LogGroup;
  private readonly secrets = new Map<string, secretsmanager.ISecret>();

  constructor(scope: Construct, id: string, props: WorkerProps) {
    super(scope, id);
    if (props.recipients.length === 0) throw new Error("Worker needs at least one recipient");
    this.cluster = new ecs.Cluster(this, "Cluster", { vpc: props.network.vpc });
    Validations.of(this.cluster).acknowledge({
      id: "AwsSolutions-ECS4",
      reason:
        "Container Insights bills custom metrics per task; the tasks are short batch jobs whose outcome the flows record, alarm on and log",
    });
    this.image =
      props.image ??
      ecs.ContainerImage.fromAsset(REPO_ROOT, {
        file: "containers/worker/Dockerfile",
        platform: Platform.LINUX_ARM64,
      });
    this.logGroup = new logs.LogGroup(this, "Logs", {
      retention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    const bucket = props.bucket;
    const list = new iam.PolicyStatement({
      actions: ["s3:ListBucket"],
      resources: [bucket.bucket.bucketArn],
      ...(bucket.prefix ? { conditions: { StringLike: { "s3:prefix": [`${bucket.prefix}/*`] } } } : {}),
    });
    this.backupRole = new iam.Role(this, "BackupTaskRole", {
      assumedBy: new iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
      description: "strongroom backup tasks: write backups, never delete them",
    });
    // Backups only: a backup task (or whoever holds its credentials) must not be able to
    // put a verification result, an audit row or a probe object beside them.
    const backups = bucket.bucket.arnForObjects(`${bucket.prefix ? `${bucket.prefix}/` : ""}*/backups/*`);
    this.backupRole.addToPolicy(
      new iam.PolicyStatement({ actions: ["s3:PutObject", "s3:AbortMultipartUpload"], resources: [backups] }),
    );
    this.backupRole.addToPolicy(new iam.PolicyStatement({ actions: ["s3:GetObject"], resources: [bucket.objectsArn] }));
    // Also for an imported bucket, whose policy is not ours: this role never overwrites a manifest.
    this.backupRole.addToPolicy(noManifestOverwrite(bucket.manifestsArn(bucket.prefix)));
    acknowledgeWildcard(this.backupRole, backups, "backups are objects named by database and backup id at run time");
    this.backupRole.addToPolicy(list);
    this.restoreRole = new iam.Role(this, "RestoreTaskRole", {
      assumedBy: new iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
      description: "strongroom restore tasks: read backups, never write or delete them",
    });
    this.restoreRole.addToPolicy(
      new iam.PolicyStatement({ actions: ["s3:GetObject"], resources: [bucket.objectsArn] }),
    );
    this.restoreRole.addToPolicy(list);
    this.verifyRole = new iam.Role(this, "VerifyTaskRole", {
      assumedBy: new iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
      description: "strongroom verify tasks: read backups, write verification results, never delete",
    });
    const verifications = bucket.bucket.arnForObjects(`${bucket.prefix ? `${bucket.prefix}/` : ""}*/verifications/*`);
    this.verifyRole.addToPolicy(new iam.PolicyStatement({ actions: ["s3:GetObject"], resources: [bucket.objectsArn] }));
    this.verifyRole.addToPolicy(new iam.PolicyStatement({ actions: ["s3:PutObject"], resources: [verifications] }));
    this.verifyRole.addToPolicy(list);
    acknowledgeWildcard(
      this.verifyRole,
      verifications,
      "verification results are objects named by database, backup id and time at run time",
    );
    for (const role of [this.backupRole, this.restoreRole, this.verifyRole]) {
      acknowledgeWildcard(
        role,
        bucket.objectsArn,
        "backups are objects under strongroom's prefix, named by database and backup id at run time",
      );
    }

    const identity = this.secret(props.identitySecretArn);
    const common = {
      STRONGROOM_STORE: bucket.storeUrl,
      STRONGROOM_LOG_FORMAT: "json",
      // The connection comes from the PG* variables ECS injects from the secret.
      DATABASE_URL: "postgres://",
    };
    for (const db of props.databases) {
      const dbSecret = this.secret(db.secretArn);
      this.backupTasks.set(
        db.id,
        this.taskDefinition(`Backup-${db.id}`, db.task, this.backupRole, {
          environment: { ...common, STRONGROOM_RECIPIENTS: props.recipients.join(",") },
          secrets: connectionSecrets(dbSecret),
        }),
      );
      this.restoreTasks.set(
        db.id,
        this.taskDefinition(`Restore-${db.id}`, db.task, this.restoreRole, {
          environment: common,
          secrets: { ...connectionSecrets(dbSecret), STRONGROOM_IDENTITY: ecs.Secret.fromSecretsManager(identity) },
        }),
      );
    }
    for (const db of props.databases) {
      this.verifyTasks.set(
        db.id,
        this.taskDefinition(`Verify-${db.id}`, db.task, this.verifyRole, {
          // Restoring a dump runs code its roles wrote. The worker runs as root here so that
          // it can start the scratch server as the image's `postgres` user with an
          // allowlisted environment: that user cannot read root's /proc/<pid>/environ (the
          // identity, the credentials endpoint's relative URI) or its memory, as the
          // image's `node` user, sharing the worker's uid, could (docs/trust.md).
          user: "0",
          // The scratch cluster lives on the task's scratch volume (the root filesystem is read-only).
          environment: {
            STRONGROOM_STORE: bucket.storeUrl,
            STRONGROOM_LOG_FORMAT: "json",
            STRONGROOM_SCRATCH_DIR: "/tmp",
          },
          secrets: { STRONGROOM_IDENTITY: ecs.Secret.fromSecretsManager(identity) },
        }),
      );
    }
    const largest = props.databases.reduce(
      (a, b) => (b.task.ephemeralGiB > a.ephemeralGiB ? b.task : a),
      props.databases[0]?.task ?? { cpu: 1024, memoryMiB: 2048, ephemeralGiB: 21 },
    );
    for (const target of props.restoreTargets ?? []) {
      this.restoreTargetTasks.set(
        target.id,
        this.taskDefinition(`RestoreTarget-${target.id}`, largest, this.restoreRole, {
          environment: common,
          secrets: {
            ...connectionSecrets(this.secret(target.secretArn)),
            STRONGROOM_IDENTITY: ecs.Secret.fromSecretsManager(identity),
          },
        }),
      );
    }
  }

  /** Every task definition a flow may run. */
  get taskDefinitions(): ecs.FargateTaskDefinition[] {
    return [
      ...this.backupTasks.values(),
      ...this.restoreTasks.values(),
      ...this.restoreTargetTasks.values(),
      ...this.verifyTasks.values(),
    ];
  }

  private secret(arn: string): secretsmanager.ISecret {
    let secret = this.secrets.get(arn);
    if (!secret) {
      secret = secretsmanager.Secret.fromSecretCompleteArn(this, `Secret${this.secrets.size}`, arn);
      this.secrets.set(arn, secret);
    }
    return secret;
  }

  private taskDefinition(
    id: string,
    size: WorkerDatabase["task"],
    taskRole: iam.IRole,
    container: { environment: Record<string, string>; secrets: Record<string, ecs.Secret>; user?: string },
  ): ecs.FargateTaskDefinition {
    const def = new ecs.FargateTaskDefinition(this, id, {
      cpu: size.cpu,
      memoryLimitMiB: size.memoryMiB,
      ephemeralStorageGiB: size.ephemeralGiB,
      runtimePlatform: {
        cpuArchitecture: ecs.CpuArchitecture.ARM64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
      taskRole,
      volumes: [{ name: "scratch" }],
    });
    const worker = def.addContainer(Worker.CONTAINER, {
      image: this.image,
      essential: true,
      readonlyRootFilesystem: true,
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: id.toLowerCase() }),
      environment: container.environment,
      secrets: container.secrets,
      ...(container.user !== undefined ? { user: container.user } : {}),
    });
    worker.addMountPoints({ containerPath: "/tmp", sourceVolume: "scratch", readOnly: false });
    if (def.executionRole) {
      acknowledgeWildcard(
        def.executionRole,
        "*",
        "ecr:GetAuthorizationToken, which pulling the image needs, has no resource-level permissions",
      );
    }
    Validations.of(def).acknowledge({
      id: "AwsSolutions-ECS2",
      reason:
        "the plain environment holds only non-secret settings (store URL, public recipients, log format); credentials come from Secrets Manager through `secrets`",
    });
    return def;
  }
}

/** libpq's variables from an RDS-style secret; parsePgUrl reads them for `postgres://`. */
function connectionSecrets(secret: secretsmanager.ISecret): Record<string, ecs.Secret> {
  return {
    PGHOST: ecs.Secret.fromSecretsManager(secret, "host"),
    PGPORT: ecs.Secret.fromSecretsManager(secret, "port"),
    PGUSER: ecs.Secret.fromSecretsManager(secret, "username"),
    PGPASSWORD: ecs.Secret.fromSecretsManager(secret, "password"),
    PGDATABASE: ecs.Secret.fromSecretsManager(secret, "dbname"),
  };
}
