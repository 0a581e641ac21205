import type * as sns from "aws-cdk-lib/aws-sns";
import * as sfn from "aws-cdk-lib/aws-stepfunctions";
import { Construct } from "constructs";
import {
  acknowledgeFlowRole,
  allowRunningTasks,
  audit,
  flowStateMachine,
  invoke,
  notifyAndFail,
  runWorkerTask,
} from "./flow-parts.ts";
import type { Handlers } from "./handlers.ts";
import type { Network } from "./network.ts";
import type { Worker } from "./worker.ts";

export interface BackupFlowProps {
  readonly handlers: Handlers;
  readonly worker: Worker;
  readonly network: Network;
  readonly alarmTopic: sns.ITopic;
}

/**
 * BackupFlow, started by each database's schedule with `{"databaseId": "…"}`:
 * plan (the backup id) → audit backup.start → the backup task (.sync) → catalog-record
 * → retention-prune → audit backup.ok. Any failure after the plan: audit backup.fail
 * (error name, the worker's exit code) → SNS → Fail. The flow owns the audit rows, so a
 * task that never started (capacity, image pull) is recorded too.
 */
export class BackupFlow extends Construct {
  static readonly NAME = "BackupFlow";
  readonly stateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: BackupFlowProps) {
    super(scope, id);
    const { handlers, worker } = props;
    const flow = BackupFlow.NAME;
    const failed = notifyAndFail(this, flow, props.alarmTopic);
    const recordFailure = audit(this, "Audit backup.fail", handlers.auditAppend, "backup.fail", flow, {
      "failure.$": "$.error",
    });
    recordFailure.addCatch(failed, { resultPath: "$.auditError" });
    recordFailure.next(failed);

    const plan = invoke(this, "Plan backup", handlers.planBackup, { "databaseId.$": "$.databaseId" }, "$.plan");
    plan.addCatch(failed, { resultPath: "$.error" });
    const steps = [
      audit(this, "Audit backup.start", handlers.auditAppend, "backup.start", flow, {
        details: { "execution.$": "$$.Execution.Id" },
      }),
      runWorkerTask(this, "Run backup task", worker, props.network),
      invoke(
        this,
        "Record in catalog",
        handlers.catalogRecord,
        { "databaseId.$": "$.plan.databaseId", "backupId.$": "$.plan.backupId" },
        "$.catalog",
      ),
      invoke(
        this,
        "Prune by retention",
        handlers.retentionPrune,
        { "databaseId.$": "$.plan.databaseId", "policy.$": "$.plan.retention" },
        "$.prune",
      ),
      audit(this, "Audit backup.ok", handlers.auditAppend, "backup.ok", flow, {
        details: { "execution.$": "$$.Execution.Id", "deleted.$": "$.prune.deleted" },
      }),
    ];
    for (const step of steps) step.addCatch(recordFailure, { resultPath: "$.error" });
    let chain = sfn.Chain.start(plan);
    for (const step of steps) chain = chain.next(step);
    this.stateMachine = flowStateMachine(this, flow, chain.next(new sfn.Succeed(this, "Backed up")));
    allowRunningTasks(this.stateMachine, worker);
    acknowledgeFlowRole(this.stateMachine, [
      handlers.planBackup,
      handlers.auditAppend,
      handlers.catalogRecord,
      handlers.retentionPrune,
    ]);
  }
}
