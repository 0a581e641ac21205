import { createHash } from "node:crypto";
import { CfnOutput, Fn, Stack, type StackProps } from "aws-cdk-lib";
import * as ssm from "aws-cdk-lib/aws-ssm";
import type { Construct } from "constructs";
import { type RestoreTargetSettings, settingsParameter } from "#core/flows/flow-settings.ts";
import type { StrongroomConfig, TaskSize } from "../config/load-config.ts";
import { Alarms } from "../constructs/alarms.ts";
import { BackupBucket } from "../constructs/backup-bucket.ts";
import { BackupFlow } from "../constructs/backup-flow.ts";
import { ControlTables } from "../constructs/control-tables.ts";
import { Dashboard } from "../constructs/dashboard.ts";
import { DatabaseGroup, groupDatabases } from "../constructs/database-group.ts";
import { Handlers } from "../constructs/handlers.ts";
import { Network } from "../constructs/network.ts";
import { ObjectTrail } from "../constructs/object-trail.ts";
import { RestoreFlow } from "../constructs/restore-flow.ts";
import { Schedules } from "../constructs/schedules.ts";
import { VerifyFlow } from "../constructs/verify-flow.ts";
import { Worker } from "../constructs/worker.ts";

export interface StrongroomStackProps extends StackProps {
  readonly config: StrongroomConfig;
}

/** The strongroom deployment: composes the constructs from the config; no logic of its own. */
export class StrongroomStack extends Stack {
  readonly bucket: BackupBucket;
  readonly tables: ControlTables;
  readonly network: Network;
  readonly worker: Worker;
  readonly handlers: Handlers;
  readonly alarms: Alarms;
  readonly backupFlow: BackupFlow;
  readonly restoreFlow: RestoreFlow;
  readonly verifyFlow: VerifyFlow;
  readonly schedules: Schedules;
  readonly groups: DatabaseGroup[] = [];

  constructor(scope: Construct, id: string, props: StrongroomStackProps) {
    super(scope, id, props);
    const { config } = props;
    this.bucket = new BackupBucket(this, "Backups", {
      ...("name" in config.bucket ? { existingBucketName: config.bucket.name } : {}),
      ...("create" in config.bucket && config.bucket.objectLock ? { objectLock: config.bucket.objectLock } : {}),
      prefix: config.prefix,
    });
    this.tables = new ControlTables(this, "Tables");
    // Who else wrote or deleted backups: S3 data events of the bucket's strongroom prefix.
    if (config.objectTrail !== false) new ObjectTrail(this, "ObjectTrail", { bucket: this.bucket });
    this.network = new Network(this, "Network", "create" in config.network ? {} : { existing: config.network });
    this.worker = new Worker(this, "Worker", {
      name: config.name,
      network: this.network,
      bucket: this.bucket,
      recipients: config.recipients,
      identitySecretArn: config.identitySecretArn,
      restoreTargets: config.restoreTargets,
      restoreTargetSize: largestTask(config.databases),
      kmsKeyArns: config.kmsKeyArns ?? [],
      ...(config.ebsKmsKeyArn !== undefined ? { ebsKmsKeyArn: config.ebsKmsKeyArn } : {}),
    });
    const settingsPath = `/strongroom/${config.name}`;
    this.handlers = new Handlers(this, "Handlers", {
      bucket: this.bucket,
      tables: this.tables,
      settingsPath,
      kmsKeyArns: config.kmsKeyArns ?? [],
    });
    this.alarms = new Alarms(this, "Alarms", config.alarmEmail ? { email: config.alarmEmail } : {});
    const flowProps = {
      handlers: this.handlers,
      worker: this.worker,
      network: this.network,
      alarmTopic: this.alarms.topic,
    };
    this.backupFlow = new BackupFlow(this, BackupFlow.NAME, flowProps);
    this.restoreFlow = new RestoreFlow(this, RestoreFlow.NAME, flowProps);
    this.verifyFlow = new VerifyFlow(this, VerifyFlow.NAME, flowProps);
    this.schedules = new Schedules(this, "Schedules", {
      probe: this.handlers.destinationProbe,
      readiness: this.handlers.readiness,
      walAgeEveryFiveMinutes: config.databases.some((db) => db.wal?.maxAgeMinutes !== undefined),
    });
    this.alarms.flowFailed(BackupFlow.NAME, this.backupFlow.stateMachine);
    this.alarms.flowFailed(RestoreFlow.NAME, this.restoreFlow.stateMachine);
    this.alarms.flowFailed(VerifyFlow.NAME, this.verifyFlow.stateMachine);
    this.alarms.verificationInconclusive();
    this.alarms.verifyStorageExceeded();
    this.alarms.probeFailed(this.handlers.destinationProbe);
    this.alarms.schedulesDeadLettered(this.schedules.deadLetterQueue);

    // Each database's own resources, in nested stacks by a stable hash of its id.
    for (const [group, databases] of groupDatabases(config.databases)) {
      this.groups.push(
        new DatabaseGroup(this, `Databases${group.toString(16).toUpperCase()}`, {
          worker: this.worker,
          databases,
          settingsPath,
          backupFlow: this.backupFlow.stateMachine,
          verifyFlow: this.verifyFlow.stateMachine,
          deadLetterQueue: this.schedules.deadLetterQueue,
          alarms: this.alarms,
        }),
      );
    }
    for (const target of config.restoreTargets) {
      const task = this.worker.restoreTargetTasks.get(target.id);
      if (!task) throw new Error(`no task definition for restore target ${target.id}`);
      const settings: RestoreTargetSettings = {
        id: target.id,
        secretArn: target.secretArn,
        restoreTaskDefinition: task.taskDefinitionArn,
      };
      new ssm.StringParameter(this, `RestoreTargetSettings-${target.id}`, {
        parameterName: settingsParameter.restoreTarget(settingsPath, target.id),
        stringValue: this.toJsonString(settings),
        description: `strongroom restore target ${target.id} (written by the stack; plan-restore reads it)`,
      });
    }
    // After every alarm exists: the dashboard shows the ones firing.
    new Dashboard(this, "Dashboard", {
      deploymentName: config.name,
      databaseIds: config.databases.map((db) => db.id),
      pitrDatabaseIds: config.databases.filter((db) => db.walArchiving).map((db) => db.id),
      alarms: { deployment: this.alarms.deploymentAlarms, byDatabase: this.alarms.databaseAlarms },
    });

    new CfnOutput(this, "StoreUrl", { value: this.bucket.storeUrl, description: "--store for the CLI" });
    new CfnOutput(this, "RestoreFlowArn", { value: this.restoreFlow.stateMachine.stateMachineArn });
    new CfnOutput(this, "AuditTable", { value: this.tables.audit.tableName, description: "--audit-table for the CLI" });
    new CfnOutput(this, "DatabaseClientSecurityGroup", {
      value: Fn.join(",", this.network.securityGroupIds),
      description:
        "the security group backup and restore tasks connect from: add an inbound rule on TCP 5432 (or your database's port) from it to each database's security group",
    });
    new CfnOutput(this, "CatalogTable", {
      value: this.tables.catalog.tableName,
      description: "--table for strongroom status (and catalog rebuild)",
    });
    // Each WAL-archiving database's host role: what its archive_command runs with (docs/pitr.md).
    for (const group of this.groups) {
      for (const [databaseId, { role, profile }] of group.walHostRoles) {
        // Output ids take letters and digits only; the hash keeps "a-b" and "ab" apart.
        const id = `${databaseId.replace(/[^A-Za-z0-9]/g, "")}${createHash("sha256").update(databaseId).digest("hex").slice(0, 6)}`;
        new CfnOutput(this, `WalHostRole${id}`, {
          value: role.roleArn,
          description: `the role ${databaseId}'s host archives WAL with: it may only add objects under its wal/ prefix`,
        });
        new CfnOutput(this, `WalHostInstanceProfile${id}`, {
          value: profile.ref,
          description: `the EC2 instance profile of ${databaseId}'s host, holding that role`,
        });
      }
    }
  }
}

/** The largest database task: restore-target tasks get it, since any database may be restored there. */
export function largestTask(databases: ReadonlyArray<{ task: TaskSize }>): TaskSize {
  // CPU and memory go together (Fargate's table), so they come from one database; the
  // ephemeral storage is set on its own, and must hold the largest database's staging.
  const sized = databases.reduce<TaskSize>(
    (a, { task: b }) => (b.memoryMiB > a.memoryMiB || (b.memoryMiB === a.memoryMiB && b.cpu > a.cpu) ? b : a),
    databases[0]?.task ?? { cpu: 1024, memoryMiB: 2048, ephemeralGiB: 21 },
  );
  return { ...sized, ephemeralGiB: Math.max(sized.ephemeralGiB, ...databases.map((d) => d.task.ephemeralGiB)) };
}
