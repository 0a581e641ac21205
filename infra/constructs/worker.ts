import { createHash } from "node:crypto";
import * as path from "node:path";
import { RemovalPolicy, Validations } from "aws-cdk-lib";
import { DockerImageAsset, Platform } from "aws-cdk-lib/aws-ecr-assets";
import * as ecs from "aws-cdk-lib/aws-ecs";
import * as iam from "aws-cdk-lib/aws-iam";
import * as logs from "aws-cdk-lib/aws-logs";
import * as secretsmanager from "aws-cdk-lib/aws-secretsmanager";
import { Construct } from "constructs";
import { WORKER_CONTAINER } from "#core/flows/flow-settings.ts";
import type { Connection, TaskSize } from "../config/load-config.ts";
import type { BackupBucket } from "./backup-bucket.ts";
import { ECR_PULL_ACTIONS, parseEcrImageUri } from "./ecr-image.ts";
import { grantKeys } from "./kms.ts";
import { acknowledgeWildcard } from "./nag.ts";
import type { Network } from "./network.ts";
import { databaseTlsEnvironment } from "./tls.ts";

const REPO_ROOT = path.resolve(import.meta.dirname, "../..");

export interface WorkerDatabase {
  readonly id: string;
  /** The backup's connection secret (username, password; host, port, dbname where `connection` says). */
  readonly secretArn: string;
  /** The restore's connection secret: a role that may CREATE DATABASE. */
  readonly restoreSecretArn: string;
  readonly connection: Connection;
  readonly task: TaskSize;
}

export interface WorkerProps {
  /** The deployment's name: task definition families and role paths start with it. */
  readonly name: string;
  readonly network: Network;
  readonly bucket: BackupBucket;
  /** age public keys every backup is encrypted to. */
  readonly recipients: readonly string[];
  /** The age identity's secret; only the restore (and verify) task definitions read it. */
  readonly identitySecretArn: string;
  /** Other servers a restore may target. @default none */
  readonly restoreTargets?: ReadonlyArray<{
    readonly id: string;
    readonly secretArn: string;
    readonly connection: Connection;
  }>;
  /** The size restore-target tasks get (the largest database's). */
  readonly restoreTargetSize?: TaskSize;
  /** @default the image built from containers/worker/Dockerfile (an asset, pushed to ECR) */
  readonly image?: ecs.ContainerImage;
  /** @default three months */
  readonly logRetention?: logs.RetentionDays;
  /** Customer-managed keys the bucket or the secrets are under. @default none */
  readonly kmsKeyArns?: readonly string[];
  /** The customer-managed key verify tasks' EBS volumes are encrypted with. @default the account's EBS default key */
  readonly ebsKmsKeyArn?: string;
}

/** A worker's duty: each has its own task definition family and its own role path. */
export type Duty = "backup" | "restore" | "verify";

/**
 * The Fargate side shared by every database: one cluster, one image, one log group, the
 * roles every database's restore and verify tasks share, and the restore-target tasks.
 * Each database's own task definitions and backup role live in its DatabaseGroup (a
 * nested stack), built with `defineTask`.
 *
 * A task definition names its secrets, and ECS injects them (credentials as PGUSER and
 * PGPASSWORD, the identity as STRONGROOM_IDENTITY), so no credential is ever in a flow's
 * input, a container override or the plain environment. ARM64, a read-only root
 * filesystem, and a scratch volume at /tmp for `restore --jobs` staging.
 *
 * Roles, per duty: a backup task may put objects under its own database's backups and
 * read that database's objects, never delete; restore tasks may read, never write;
 * a verify task may read its own database's objects, and put only results under its
 * `<db>/verifications/`. Only restore
 * and verify execution roles may read the identity secret; verify tasks get no database
 * secret at all (they restore into a cluster inside themselves). Every role sits under
 * the path `/strongroom/<name>/<duty>-task/` or `…/<duty>-execution/`, so that a flow may
 * pass exactly its own duty's roles (iam:PassRole on `role/strongroom/<name>/<duty>-*`).
 */
export class Worker extends Construct {
  static readonly CONTAINER = WORKER_CONTAINER;
  /** The volume RunTask's volumeConfigurations name: the only one a task definition may configure at launch. */
  static readonly LAUNCH_VOLUME = "launch-volume";
  /** Where a verify task's EBS volume is mounted, and its scratch cluster goes. */
  static readonly VERIFY_VOLUME_PATH = "/mnt";
  readonly name: string;
  readonly cluster: ecs.Cluster;
  readonly bucket: BackupBucket;
  readonly recipients: readonly string[];
  readonly restoreTargetTasks = new Map<string, ecs.FargateTaskDefinition>();
  /** Shared by every database's restore tasks and the restore-target tasks. */
  readonly restoreRole: iam.Role;
  /** Pulls the image, writes logs and reads the identity: every verify task's. */
  readonly verifyExecutionRole: iam.Role;
  /**
   * ECS's infrastructure role for the EBS volumes verify tasks get at launch: ECS assumes
   * it to create, attach and delete each volume. VerifyFlow passes it (to ecs.amazonaws.com only).
   */
  readonly verifyVolumeRole: iam.Role;
  /** The key verify volumes are encrypted with, when the config names one (RunTask's kmsKeyId). */
  readonly ebsKmsKeyArn: string | undefined;
  readonly identitySecretArn: string;
  readonly kmsKeyArns: readonly string[];

  private readonly image: ecs.ContainerImage;
  private readonly logGroup: logs.LogGroup;
  /** The repositories of the verify images the config names, each granted to verifyExecutionRole once. */
  private readonly verifyRepositories = new Set<string>();

  constructor(scope: Construct, id: string, props: WorkerProps) {
    super(scope, id);
    if (props.recipients.length === 0) throw new Error("Worker needs at least one recipient");
    this.name = props.name;
    this.bucket = props.bucket;
    this.recipients = props.recipients;
    this.identitySecretArn = props.identitySecretArn;
    this.kmsKeyArns = props.kmsKeyArns ?? [];
    this.cluster = new ecs.Cluster(this, "Cluster", { vpc: props.network.vpc });
    Validations.of(this.cluster).acknowledge({
      id: "AwsSolutions-ECS4",
      reason:
        "Container Insights bills custom metrics per task; the tasks are short batch jobs whose outcome the flows record, alarm on and log",
    });
    // One asset for every task definition, nested stacks' too: one image, one build.
    this.image =
      props.image ??
      ecs.ContainerImage.fromDockerImageAsset(
        new DockerImageAsset(this, "Image", {
          directory: REPO_ROOT,
          file: "containers/worker/Dockerfile",
          platform: Platform.LINUX_ARM64,
        }),
      );
    this.logGroup = new logs.LogGroup(this, "Logs", {
      retention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    const bucket = props.bucket;
    this.restoreRole = this.role(
      this,
      "RestoreTaskRole",
      "restore-task",
      "restore tasks: read backups, never write or delete them",
    );
    this.restoreRole.addToPolicy(
      new iam.PolicyStatement({ actions: ["s3:GetObject"], resources: [bucket.objectsArn] }),
    );
    this.restoreRole.addToPolicy(listUnder(bucket, bucket.prefix));
    acknowledgeWildcard(
      this.restoreRole,
      bucket.objectsArn,
      "backups are objects under strongroom's prefix, named by database and backup id at run time",
    );
    grantKeys(this.restoreRole, this.kmsKeyArns, "s3-read");
    this.verifyExecutionRole = this.executionRole(this, "VerifyExecutionRole", "verify", [props.identitySecretArn]);
    this.verifyVolumeRole = new iam.Role(this, "VerifyVolumeRole", {
      // ECS itself, not a task: the volume's lifecycle is ECS's, and no container holds this role.
      assumedBy: new iam.ServicePrincipal("ecs.amazonaws.com"),
      // Not under verify-*: flows pass those to ECS tasks, and no task may hold this role.
      path: rolePath(this.name, "ecs-volume"),
      description: `strongroom ${this.name} ECS infrastructure role: the EBS volumes verify tasks get at launch`,
      managedPolicies: [
        iam.ManagedPolicy.fromAwsManagedPolicyName("service-role/AmazonECSInfrastructureRolePolicyForVolumes"),
      ],
    });
    this.ebsKmsKeyArn = props.ebsKmsKeyArn;
    // A customer-managed key: ECS creates the volume with this role, and EC2 needs its grant
    // (the managed policy has no KMS actions; the ECS developer guide's EBS encryption page).
    grantKeys(this.verifyVolumeRole, props.ebsKmsKeyArn ? [props.ebsKmsKeyArn] : [], "ebs");
    Validations.of(this.verifyVolumeRole).acknowledge({
      id: "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonECSInfrastructureRolePolicyForVolumes]",
      reason:
        "AmazonECSInfrastructureRolePolicyForVolumes is the policy ECS documents for its infrastructure role; it lets ECS create, attach and delete only volumes it tags as its own",
    });

    const targets = props.restoreTargets ?? [];
    if (targets.length > 0) {
      const execution = this.executionRole(this, "RestoreTargetExecutionRole", "restore", [
        props.identitySecretArn,
        ...targets.map((t) => t.secretArn),
      ]);
      for (const target of targets) {
        this.restoreTargetTasks.set(
          target.id,
          this.defineTask(this, `RestoreTarget-${target.id}`, {
            family: taskFamily(this.name, "target", target.id),
            size: props.restoreTargetSize ?? { cpu: 1024, memoryMiB: 2048, ephemeralGiB: 21 },
            taskRole: this.restoreRole,
            executionRole: execution,
            environment: { ...this.commonEnvironment(), ...connectionEnvironment(target.connection) },
            secrets: {
              ...connectionSecrets(this.importSecret(this, target.secretArn), target.connection),
              STRONGROOM_IDENTITY: ecs.Secret.fromSecretsManager(this.importSecret(this, props.identitySecretArn)),
            },
          }),
        );
      }
    }
  }

  /** The plain environment every task but verify's has. */
  commonEnvironment(): Record<string, string> {
    return {
      STRONGROOM_STORE: this.bucket.storeUrl,
      STRONGROOM_LOG_FORMAT: "json",
      // The connection comes from the PG* variables: values from the config, credentials from the secret.
      DATABASE_URL: "postgres://",
    };
  }

  /** The verify task's environment: no connection at all, a scratch cluster under /tmp. */
  verifyEnvironment(scratchDir = "/tmp"): Record<string, string> {
    return {
      STRONGROOM_STORE: this.bucket.storeUrl,
      STRONGROOM_LOG_FORMAT: "json",
      STRONGROOM_SCRATCH_DIR: scratchDir,
    };
  }

  /** A role for `duty` under the deployment's path, assumable by ECS tasks only. */
  role(scope: Construct, id: string, kind: `${Duty}-task` | `${Duty}-execution`, description: string): iam.Role {
    return new iam.Role(scope, id, {
      assumedBy: new iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
      path: rolePath(this.name, kind),
      description: `strongroom ${this.name} ${description}`,
    });
  }

  /**
   * An execution role: pulls the image (the definition grants it), writes the task's
   * logs (the log driver grants it) and reads exactly `secretArns`.
   */
  executionRole(scope: Construct, id: string, duty: Duty, secretArns: readonly string[]): iam.Role {
    const role = this.role(scope, id, `${duty}-execution`, `${duty} tasks' execution: pull, log, read their secrets`);
    role.addToPolicy(
      new iam.PolicyStatement({
        actions: ["secretsmanager:GetSecretValue"],
        resources: [...new Set(secretArns)],
      }),
    );
    grantKeys(role, this.kmsKeyArns, "secrets");
    acknowledgeWildcard(
      role,
      "*",
      "ecr:GetAuthorizationToken, which pulling the image needs, has no resource-level permissions",
    );
    return role;
  }

  /**
   * The image a database's verify task runs instead of the worker image (its config's
   * `verify.image`): an image in a private ECR repository, by the URI as written, built
   * FROM the worker image (same entrypoint, users and VOLUME /tmp: docs/verify.md). The
   * verify execution role, which every verify task shares, may pull that repository: a
   * task definition names its image, so the role's other pulls change no task's image.
   */
  verifyImage(uri: string): ecs.ContainerImage {
    const { repositoryArn } = parseEcrImageUri(uri);
    if (!this.verifyRepositories.has(repositoryArn)) {
      this.verifyRepositories.add(repositoryArn);
      this.verifyExecutionRole.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ECR_PULL_ACTIONS, resources: [repositoryArn] }),
      );
      this.verifyExecutionRole.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ["ecr:GetAuthorizationToken"], resources: ["*"] }),
      );
    }
    return ecs.ContainerImage.fromRegistry(uri);
  }

  /** The identity as the task's STRONGROOM_IDENTITY. */
  identitySecret(identity: secretsmanager.ISecret): ecs.Secret {
    return ecs.Secret.fromSecretsManager(identity);
  }

  importSecret(scope: Construct, arn: string): secretsmanager.ISecret {
    const id = `Secret-${createHash("sha256").update(arn).digest("hex").slice(0, 12)}`;
    return (
      (scope.node.tryFindChild(id) as secretsmanager.ISecret | undefined) ??
      secretsmanager.Secret.fromSecretCompleteArn(scope, id, arn)
    );
  }

  defineTask(
    scope: Construct,
    id: string,
    o: {
      family: string;
      size: TaskSize;
      taskRole: iam.IRole;
      executionRole: iam.IRole;
      environment: Record<string, string>;
      secrets: Record<string, ecs.Secret>;
      user?: string;
      /** @default the worker image */
      image?: ecs.ContainerImage;
      /**
       * Mount a volume configured at launch (EBS, which RunTask's volumeConfigurations
       * must then size) at this path. @default none
       */
      launchVolumeAt?: string;
    },
  ): ecs.FargateTaskDefinition {
    const def = new ecs.FargateTaskDefinition(scope, id, {
      family: o.family,
      cpu: o.size.cpu,
      memoryLimitMiB: o.size.memoryMiB,
      ephemeralStorageGiB: o.size.ephemeralGiB,
      runtimePlatform: {
        cpuArchitecture: ecs.CpuArchitecture.ARM64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
      taskRole: o.taskRole,
      executionRole: o.executionRole,
      volumes: [
        { name: "scratch" },
        ...(o.launchVolumeAt !== undefined ? [{ name: Worker.LAUNCH_VOLUME, configuredAtLaunch: true }] : []),
      ],
    });
    const worker = def.addContainer(Worker.CONTAINER, {
      image: o.image ?? this.image,
      essential: true,
      readonlyRootFilesystem: true,
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: o.family }),
      environment: o.environment,
      secrets: o.secrets,
      ...(o.user !== undefined ? { user: o.user } : {}),
    });
    worker.addMountPoints({ containerPath: "/tmp", sourceVolume: "scratch", readOnly: false });
    if (o.launchVolumeAt !== undefined) {
      worker.addMountPoints({ containerPath: o.launchVolumeAt, sourceVolume: Worker.LAUNCH_VOLUME, readOnly: false });
    }
    Validations.of(def).acknowledge({
      id: "AwsSolutions-ECS2",
      reason:
        "the plain environment holds only non-secret settings (store URL, public recipients, log format, host, port and database name); credentials come from Secrets Manager through `secrets`",
    });
    return def;
  }
}

/** Every role of a deployment's duty sits under this path. */
export function rolePath(name: string, kind: string): string {
  return `/strongroom/${name}/${kind}/`;
}

/**
 * The task definition family of a database's duty: `<name>_<duty>_<id>`. A family takes
 * letters, digits, `_` and `-`; a database id may also hold `.`, which becomes `_`, and
 * then a hash of the id keeps `a.b` and `a_b` apart. Config names have no `_`, so
 * `<name>_backup_*` (what BackupFlow may run) matches no other deployment's families.
 */
export function taskFamily(name: string, duty: Duty | "target" | "verify-ebs", id: string): string {
  const safe = id.replace(/[^A-Za-z0-9_-]/g, "_");
  const suffix = safe === id ? "" : `_${createHash("sha256").update(id).digest("hex").slice(0, 8)}`;
  return `${name}_${duty}_${safe}${suffix}`;
}

/** ListBucket, only under `prefix` (the whole bucket when there is none). */
export function listUnder(bucket: BackupBucket, prefix: string): iam.PolicyStatement {
  return new iam.PolicyStatement({
    actions: ["s3:ListBucket"],
    resources: [bucket.bucket.bucketArn],
    ...(prefix ? { conditions: { StringLike: { "s3:prefix": [`${prefix}/*`] } } } : {}),
  });
}

/**
 * The connection's values as libpq variables in the plain environment (no secret among
 * them), and how the server is authenticated (PGSSLMODE, PGSSLROOTCERT).
 */
export function connectionEnvironment(connection: Connection): Record<string, string> {
  return {
    ...databaseTlsEnvironment(connection.tls),
    ...(connection.host !== undefined ? { PGHOST: connection.host } : {}),
    ...(connection.port !== undefined ? { PGPORT: String(connection.port) } : {}),
    ...(connection.dbname !== undefined ? { PGDATABASE: connection.dbname } : {}),
  };
}

/**
 * libpq's variables from the secret: always the credentials, and host, port or dbname
 * only where the config says the secret holds them (ECS refuses to start a task whose
 * secret lacks a named key). parsePgUrl reads them for `postgres://`.
 */
export function connectionSecrets(secret: secretsmanager.ISecret, connection: Connection): Record<string, ecs.Secret> {
  const variable = { host: "PGHOST", port: "PGPORT", dbname: "PGDATABASE" } as const;
  return {
    PGUSER: ecs.Secret.fromSecretsManager(secret, "username"),
    PGPASSWORD: ecs.Secret.fromSecretsManager(secret, "password"),
    ...Object.fromEntries(
      connection.fromSecret.map((key) => [variable[key], ecs.Secret.fromSecretsManager(secret, key)]),
    ),
  };
}
