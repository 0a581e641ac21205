import { createHash } from "node:crypto";
import { NestedStack, Stack } from "aws-cdk-lib";
import type * as ecs from "aws-cdk-lib/aws-ecs";
import * as iam from "aws-cdk-lib/aws-iam";
import type * as sqs from "aws-cdk-lib/aws-sqs";
import * as ssm from "aws-cdk-lib/aws-ssm";
import type * as sfn from "aws-cdk-lib/aws-stepfunctions";
import type { Construct } from "constructs";
import { type DatabaseSettings, settingsParameter } from "#core/flows/flow-settings.ts";
import type { DatabaseConfig } from "../config/load-config.ts";
import type { Alarms } from "./alarms.ts";
import { noManifestOverwrite, noUploadOverwrite } from "./backup-bucket.ts";
import { allowKeys } from "./kms.ts";
import { acknowledgeWildcard } from "./nag.ts";
import { databaseSchedules } from "./schedules.ts";
import { connectionEnvironment, connectionSecrets, rolePath, taskFamily, Worker } from "./worker.ts";

/**
 * How many groups the databases are spread over, by a hash of their id. A database's
 * group never changes as others are added or removed, so its resources are never
 * moved between stacks (which CloudFormation would do by deleting and creating them,
 * and which fails for the named ones: the parameter and the task definition family).
 */
export const GROUPS = 16;

/**
 * What one database adds to its group: a backup and a verify task role, four task
 * definitions (backup, restore, verify, and verify on an EBS volume), a settings
 * parameter, two schedules and two alarms. Each group also has its two
 * execution roles and Scheduler's role, with their policies (7 resources).
 */
export const RESOURCES_PER_DATABASE = 11;
export const RESOURCES_PER_GROUP = 7;
/** CloudFormation's quota of resources per stack, a nested stack's included. */
export const STACK_RESOURCE_QUOTA = 500;
/** The most databases one group takes, with room to spare under the quota. */
export const MAX_PER_GROUP = Math.floor((STACK_RESOURCE_QUOTA * 0.9 - RESOURCES_PER_GROUP) / RESOURCES_PER_DATABASE);

/** The group a database id belongs to: stable for the id, whatever else is configured. */
export function groupOf(databaseId: string): number {
  return createHash("sha256").update(databaseId).digest().readUInt32BE(0) % GROUPS;
}

export interface DatabaseGroupProps {
  readonly worker: Worker;
  readonly databases: readonly DatabaseConfig[];
  /** `/strongroom/<name>`: each database's settings go to `<path>/databases/<id>`. */
  readonly settingsPath: string;
  readonly backupFlow: sfn.IStateMachine;
  readonly verifyFlow: sfn.IStateMachine;
  readonly deadLetterQueue: sqs.IQueue;
  readonly alarms: Alarms;
}

/**
 * A nested stack holding what each of its databases needs on its own. A deployment of
 * 200 databases is about 1,800 such resources, past CloudFormation's 500 per stack; in
 * nested stacks of at most MAX_PER_GROUP databases each, every stack stays under it, and
 * each database keeps a backup role of its own that can write only its own prefix.
 */
export class DatabaseGroup extends NestedStack {
  readonly backupTasks = new Map<string, ecs.FargateTaskDefinition>();
  readonly restoreTasks = new Map<string, ecs.FargateTaskDefinition>();
  readonly verifyTasks = new Map<string, ecs.FargateTaskDefinition>();
  readonly backupRoles = new Map<string, iam.Role>();
  /** Per database whose server archives WAL here: the role (and instance profile) its host archives with. */
  readonly walHostRoles = new Map<string, { role: iam.Role; profile: iam.CfnInstanceProfile }>();

  constructor(scope: Construct, id: string, props: DatabaseGroupProps) {
    super(scope, id, { description: `strongroom: ${props.databases.map((d) => d.id).join(", ")}`.slice(0, 1024) });
    const { worker, databases } = props;
    const identity = worker.importSecret(this, worker.identitySecretArn);
    const backupExecution = worker.executionRole(
      this,
      "BackupExecutionRole",
      "backup",
      databases.map((d) => d.secretArn),
    );
    const restoreExecution = worker.executionRole(this, "RestoreExecutionRole", "restore", [
      worker.identitySecretArn,
      ...databases.map((d) => d.restoreSecretArn),
    ]);
    for (const db of databases) {
      const backupRole = this.backupRole(worker, db.id, db.walArchiving);
      this.backupRoles.set(db.id, backupRole);
      const backup = worker.defineTask(this, `BackupTask-${db.id}`, {
        family: taskFamily(worker.name, "backup", db.id),
        size: db.task,
        taskRole: backupRole,
        executionRole: backupExecution,
        environment: {
          ...worker.commonEnvironment(),
          ...connectionEnvironment(db.connection),
          STRONGROOM_RECIPIENTS: worker.recipients.join(","),
        },
        secrets: connectionSecrets(worker.importSecret(this, db.secretArn), db.connection),
      });
      const restore = worker.defineTask(this, `RestoreTask-${db.id}`, {
        family: taskFamily(worker.name, "restore", db.id),
        size: db.task,
        taskRole: worker.restoreRole,
        executionRole: restoreExecution,
        environment: { ...worker.commonEnvironment(), ...connectionEnvironment(db.connection) },
        secrets: {
          ...connectionSecrets(worker.importSecret(this, db.restoreSecretArn), db.connection),
          STRONGROOM_IDENTITY: worker.identitySecret(identity),
        },
      });
      const verifyRole = this.verifyRole(worker, db.id, db.walArchiving);
      const verifyTask = (id: string, family: string, scratchDir?: string) =>
        worker.defineTask(this, id, {
          family,
          size: db.task,
          taskRole: verifyRole,
          executionRole: worker.verifyExecutionRole,
          // Restoring a dump runs code its roles wrote. The worker runs as root here so that
          // it can start the scratch server as the image's `postgres` user with an
          // allowlisted environment: that user cannot read root's /proc/<pid>/environ (the
          // identity, the credentials endpoint's relative URI) or its memory, as the
          // image's `node` user, sharing the worker's uid, could (docs/trust.md).
          user: "0",
          // The scratch cluster lives on the task's scratch volume (the root filesystem is read-only).
          environment: worker.verifyEnvironment(scratchDir),
          secrets: { STRONGROOM_IDENTITY: worker.identitySecret(identity) },
          ...(db.verify.image !== undefined ? { image: worker.verifyImage(db.verify.image) } : {}),
          ...(scratchDir !== undefined ? { launchVolumeAt: scratchDir } : {}),
        });
      const verify = verifyTask(`VerifyTask-${db.id}`, taskFamily(worker.name, "verify", db.id));
      // The same task with its scratch cluster on an EBS volume ECS creates at launch and
      // deletes when the task stops: for what ephemeral storage (200 GiB) cannot hold.
      const verifyOnVolume = verifyTask(
        `VerifyVolumeTask-${db.id}`,
        taskFamily(worker.name, "verify-ebs", db.id),
        Worker.VERIFY_VOLUME_PATH,
      );
      this.backupTasks.set(db.id, backup);
      this.restoreTasks.set(db.id, restore);
      this.verifyTasks.set(db.id, verify);
      const settings: DatabaseSettings = {
        id: db.id,
        backupTaskDefinition: backup.taskDefinitionArn,
        restoreTaskDefinition: restore.taskDefinitionArn,
        verifyTaskDefinition: verify.taskDefinitionArn,
        verifyVolumeTaskDefinition: verifyOnVolume.taskDefinitionArn,
        retention: { ...db.retention, timeZone: db.timeZone },
        verify: {
          deep: db.verify.deep,
          maxAgeDays: db.verify.maxAgeDays,
          skipExtensions: db.verify.skipExtensions,
          ephemeralGiB: db.task.ephemeralGiB,
          storage: db.verify.storage,
          vcpus: db.task.cpu / 1024,
        },
        ...(db.wal ? { wal: db.wal } : {}),
        mode: db.mode,
      };
      new ssm.StringParameter(this, `Settings-${db.id}`, {
        parameterName: settingsParameter.database(props.settingsPath, db.id),
        stringValue: Stack.of(this).toJsonString(settings),
        description: `strongroom settings of ${db.id} (written by the stack; the plan functions read them)`,
        tier: ssm.ParameterTier.STANDARD,
      });
      if (db.walArchiving) this.walHostRoles.set(db.id, this.walHostRole(worker, db.id));
      databaseSchedules(this, db, props);
      if (db.mode !== "physical") props.alarms.stale(db.id, this);
      if (db.mode !== "logical") props.alarms.stale(db.id, this, "base");
      // A physical-only database has no logical verification to age: PitrUnverified watches it.
      if (db.mode !== "physical") props.alarms.unverified(db.id, db.verify.maxAgeDays, this);
      if (db.wal) {
        props.alarms.walArchive(
          db.id,
          {
            maxVerifyAgeDays: db.verify.maxAgeDays,
            ...(db.wal.maxAgeMinutes !== undefined ? { maxAgeMinutes: db.wal.maxAgeMinutes } : {}),
          },
          this,
        );
      }
    }
  }

  /**
   * The role a self-run database server's host archives its WAL with (`strongroom wal-push`
   * as archive_command, or the archiver; docs/pitr.md) and takes its base backups with: it
   * may only add WAL under `<prefix>/<db>/wal/` and base backups under `<prefix>/<db>/base/`
   * (a manifest never replaced), never delete an object, never read or write anything else. Put-if-absent is the condition: a PutObject without `If-None-Match: *` is not
   * allowed. It may read back its own WAL prefix, which wal-push does for a file archived
   * twice (the same content exits 0). EC2 assumes it through the instance profile beside it;
   * a host elsewhere uses it through IAM Roles Anywhere or an equivalent.
   */
  private walHostRole(worker: Worker, databaseId: string): { role: iam.Role; profile: iam.CfnInstanceProfile } {
    const bucket = worker.bucket;
    const own = `${bucket.prefix ? `${bucket.prefix}/` : ""}${databaseId}`;
    const wal = bucket.bucket.arnForObjects(`${own}/wal/*`);
    const bases = bucket.bucket.arnForObjects(`${own}/base/*`);
    const path = rolePath(worker.name, "wal-host");
    const role = new iam.Role(this, `WalHostRole-${databaseId}`, {
      assumedBy: new iam.ServicePrincipal("ec2.amazonaws.com"),
      path,
      description: `strongroom ${worker.name}: the host of ${databaseId} archives its WAL, only adding files`,
      inlinePolicies: {
        "wal-archive": new iam.PolicyDocument({
          statements: [
            new iam.PolicyStatement({
              actions: ["s3:PutObject"],
              resources: [wal],
              conditions: { StringEquals: { "s3:if-none-match": "*" } },
            }),
            new iam.PolicyStatement({ actions: ["s3:GetObject"], resources: [wal] }),
            // `strongroom basebackup` on the host: the tar streams in (a multipart upload, which
            // carries no If-None-Match), its manifest is put-if-absent only, and it reads the WAL
            // headers it waits for (listing its prefixes, so that a missing key is 404, not 403).
            new iam.PolicyStatement({ actions: ["s3:PutObject", "s3:AbortMultipartUpload"], resources: [bases] }),
            noManifestOverwrite(bucket.bucket.arnForObjects(`${own}/base/*/manifest.json`)),
            // …and its completion must carry it: an older base's tar is never replaced.
            noUploadOverwrite(bucket.bucket.arnForObjects(`${own}/base/*/base.tar.zst.age`)),
            new iam.PolicyStatement({
              actions: ["s3:ListBucket"],
              resources: [bucket.bucket.bucketArn],
              conditions: { StringLike: { "s3:prefix": [`${own}/wal/*`, `${own}/base/*`] } },
            }),
            ...[allowKeys(this, worker.kmsKeyArns, "s3-write")].filter((x) => x !== undefined),
          ],
        }),
      },
    });
    acknowledgeWildcard(role, wal, "WAL files are named by PostgreSQL at run time");
    acknowledgeWildcard(role, bases, "base backups are named by id at run time");
    const profile = new iam.CfnInstanceProfile(this, `WalHostProfile-${databaseId}`, {
      path,
      roles: [role.roleName],
    });
    return { role, profile };
  }

  /**
   * The database's own verify role: read and list `<db>/`, put only under
   * `<db>/verifications/` (a verification of one database can never be recorded for
   * another) and, with walArchiving, `<db>/base/<id>/verifications/` (`verify --pitr`'s
   * results, beside the base), never delete.
   */
  private verifyRole(worker: Worker, databaseId: string, walArchiving: boolean): iam.Role {
    return this.ownTaskRole(worker, databaseId, "verify", "read its backups, write its verification results", (own) => {
      const verifications = worker.bucket.bucket.arnForObjects(`${own}/verifications/*`);
      const baseVerifications = worker.bucket.bucket.arnForObjects(`${own}/base/*/verifications/*`);
      const resources = walArchiving ? [verifications, baseVerifications] : [verifications];
      return {
        statements: [new iam.PolicyStatement({ actions: ["s3:PutObject"], resources })],
        wildcards: resources.map(
          (r) => [r, "verification results are named by backup or base id and time at run time"] as [string, string],
        ),
      };
    });
  }

  /**
   * The database's own backup role: put under `<db>/backups/`, read and list only
   * `<db>/`, never delete, never overwrite a manifest, never another database's prefix.
   * With walArchiving, also a base backup's two objects under `<db>/base/<id>/` (BackupFlow
   * with kind "base"): its tar and its manifest, never a verification result beside them.
   */
  private backupRole(worker: Worker, databaseId: string, walArchiving: boolean): iam.Role {
    return this.ownTaskRole(worker, databaseId, "backup", "write its backups, never delete them", (own) => {
      const objects = (pattern: string) => worker.bucket.bucket.arnForObjects(`${own}/${pattern}`);
      const backups = objects("backups/*");
      const bases = walArchiving ? [objects("base/*/base.tar.zst.age"), objects("base/*/manifest.json")] : [];
      return {
        statements: [
          new iam.PolicyStatement({
            actions: ["s3:PutObject", "s3:AbortMultipartUpload"],
            resources: [backups, ...bases],
          }),
          // Also for an imported bucket, whose policy is not ours: this role never overwrites a manifest.
          noManifestOverwrite(objects("backups/*/manifest.json")),
          ...(walArchiving
            ? [
                noManifestOverwrite(objects("base/*/manifest.json")),
                // Nor a base's tar: its upload completes with If-None-Match (core/store).
                noUploadOverwrite(objects("base/*/base.tar.zst.age")),
                // `*` spans `/`: the grant above must not reach a verification result beside a base.
                new iam.PolicyStatement({
                  effect: iam.Effect.DENY,
                  actions: ["s3:PutObject"],
                  resources: [objects("base/*/verifications/*")],
                }),
              ]
            : []),
        ],
        wildcards: [
          [backups, "backups are objects named by backup id at run time"],
          ...bases.map((b) => [b, "base backups are objects named by base id at run time"] as [string, string]),
        ],
      };
    });
  }

  /**
   * A task role of one database's own: read and list only `<prefix>/<db>/`, use the KMS
   * keys through S3, plus the duty's `writes` there. Its statements are inline (no
   * separate policy resource per database), under the duty's role path.
   */
  private ownTaskRole(
    worker: Worker,
    databaseId: string,
    duty: "backup" | "verify",
    does: string,
    writes: (own: string) => { statements: iam.PolicyStatement[]; wildcards: Array<[string, string]> },
  ): iam.Role {
    const bucket = worker.bucket;
    const own = `${bucket.prefix ? `${bucket.prefix}/` : ""}${databaseId}`;
    const objects = bucket.bucket.arnForObjects(`${own}/*`);
    const written = writes(own);
    const role = new iam.Role(this, `${duty === "backup" ? "Backup" : "Verify"}TaskRole-${databaseId}`, {
      assumedBy: new iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
      path: rolePath(worker.name, `${duty}-task`),
      description: `strongroom ${worker.name} ${duty} task of ${databaseId}: ${does}`,
      inlinePolicies: {
        [duty]: new iam.PolicyDocument({
          statements: [
            ...written.statements,
            new iam.PolicyStatement({ actions: ["s3:GetObject"], resources: [objects] }),
            new iam.PolicyStatement({
              actions: ["s3:ListBucket"],
              resources: [bucket.bucket.bucketArn],
              conditions: { StringLike: { "s3:prefix": [`${own}/*`] } },
            }),
            ...[allowKeys(this, worker.kmsKeyArns, "s3-write")].filter((x) => x !== undefined),
          ],
        }),
      },
    });
    for (const [arn, reason] of written.wildcards) acknowledgeWildcard(role, arn, reason);
    acknowledgeWildcard(role, objects, "the database's objects are named by backup id at run time");
    return role;
  }
}

/** The databases by group, each group sorted by id; a group over MAX_PER_GROUP is an error naming it. */
export function groupDatabases(databases: readonly DatabaseConfig[]): Map<number, DatabaseConfig[]> {
  const groups = new Map<number, DatabaseConfig[]>();
  for (const db of databases) {
    const g = groupOf(db.id);
    groups.set(g, [...(groups.get(g) ?? []), db]);
  }
  for (const [g, dbs] of groups) {
    if (dbs.length > MAX_PER_GROUP) {
      throw new Error(
        `database group ${g} would hold ${dbs.length} databases, more than ${MAX_PER_GROUP} fit in one nested stack under CloudFormation's 500 resources: deploy these in a second strongroom (another name)`,
      );
    }
    dbs.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
  return new Map([...groups].sort(([a], [b]) => a - b));
}
