import { CfnOutput, Stack, type StackProps } from "aws-cdk-lib";
import type { Construct } from "constructs";
import type { FlowSettings } from "#core/flows/flow-settings.ts";
import type { StrongroomConfig } from "../config/load-config.ts";
import { Alarms } from "../constructs/alarms.ts";
import { BackupBucket } from "../constructs/backup-bucket.ts";
import { BackupFlow } from "../constructs/backup-flow.ts";
import { ControlTables } from "../constructs/control-tables.ts";
import { Dashboard } from "../constructs/dashboard.ts";
import { Handlers } from "../constructs/handlers.ts";
import { Network } from "../constructs/network.ts";
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

  constructor(scope: Construct, id: string, props: StrongroomStackProps) {
    super(scope, id, props);
    const { config } = props;
    this.bucket = new BackupBucket(this, "Backups", {
      ...("name" in config.bucket ? { existingBucketName: config.bucket.name } : {}),
      ...("create" in config.bucket && config.bucket.objectLock ? { objectLock: config.bucket.objectLock } : {}),
      prefix: config.prefix,
    });
    this.tables = new ControlTables(this, "Tables");
    this.network = new Network(this, "Network", "create" in config.network ? {} : { existing: config.network });
    this.worker = new Worker(this, "Worker", {
      network: this.network,
      bucket: this.bucket,
      recipients: config.recipients,
      identitySecretArn: config.identitySecretArn,
      databases: config.databases,
      restoreTargets: config.restoreTargets,
    });
    const flowSettings: FlowSettings = {
      container: Worker.CONTAINER,
      databases: config.databases.map((db) => ({
        id: db.id,
        backupTaskDefinition: this.taskArn(this.worker.backupTasks, db.id),
        restoreTaskDefinition: this.taskArn(this.worker.restoreTasks, db.id),
        verifyTaskDefinition: this.taskArn(this.worker.verifyTasks, db.id),
        retention: { ...db.retention, timeZone: db.timeZone },
        verify: { deep: db.verify.deep, maxAgeDays: db.verify.maxAgeDays },
      })),
      restoreTargets: config.restoreTargets.map((t) => ({
        ...t,
        restoreTaskDefinition: this.taskArn(this.worker.restoreTargetTasks, t.id),
      })),
    };
    this.handlers = new Handlers(this, "Handlers", { bucket: this.bucket, tables: this.tables, flowSettings });
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
      backupFlow: this.backupFlow.stateMachine,
      verifyFlow: this.verifyFlow.stateMachine,
      databases: config.databases,
      probe: this.handlers.destinationProbe,
      readiness: this.handlers.readiness,
    });
    this.alarms.flowFailed(BackupFlow.NAME, this.backupFlow.stateMachine);
    this.alarms.flowFailed(RestoreFlow.NAME, this.restoreFlow.stateMachine);
    this.alarms.flowFailed(VerifyFlow.NAME, this.verifyFlow.stateMachine);
    this.alarms.probeFailed(this.handlers.destinationProbe);
    this.alarms.schedulesDeadLettered(this.schedules.deadLetterQueue);
    for (const db of config.databases) {
      this.alarms.stale(db.id);
      this.alarms.unverified(db.id, db.verify.maxAgeDays);
    }
    // After every alarm exists: the dashboard shows the ones firing.
    new Dashboard(this, "Dashboard", {
      deploymentName: config.name,
      databaseIds: config.databases.map((db) => db.id),
      alarms: { deployment: this.alarms.deploymentAlarms, byDatabase: this.alarms.databaseAlarms },
    });

    new CfnOutput(this, "StoreUrl", { value: this.bucket.storeUrl, description: "--store for the CLI" });
    new CfnOutput(this, "RestoreFlowArn", { value: this.restoreFlow.stateMachine.stateMachineArn });
    new CfnOutput(this, "AuditTable", { value: this.tables.audit.tableName, description: "--audit-table for the CLI" });
    new CfnOutput(this, "CatalogTable", {
      value: this.tables.catalog.tableName,
      description: "--table for strongroom status (and catalog rebuild)",
    });
  }

  private taskArn(tasks: Map<string, { taskDefinitionArn: string }>, id: string): string {
    const def = tasks.get(id);
    if (!def) throw new Error(`no task definition for ${id}`);
    return def.taskDefinitionArn;
  }
}
