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

export interface RestoreFlowProps {
  readonly handlers: Handlers;
  readonly worker: Worker;
  readonly network: Network;
  readonly alarmTopic: sns.ITopic;
}

/**
 * RestoreFlow, started from the console with
 * `{"databaseId", "backupId"?: "latest"|id, "target": {"database"} | {"secretArn", "database"?}, "clean"?, "noOwner"?}`:
 * plan (checks the input, refusing any password field, before anything runs; resolves
 * latest) → audit restore.start → the restore task (.sync, creates the target database
 * when missing, verifies row counts) → audit restore.ok. Failure: restore.fail → SNS → Fail.
 */
export class RestoreFlow extends Construct {
  static readonly NAME = "RestoreFlow";
  readonly stateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: RestoreFlowProps) {
    super(scope, id);
    const { handlers, worker } = props;
    const flow = RestoreFlow.NAME;
    const failed = notifyAndFail(this, flow, props.alarmTopic);
    const recordFailure = audit(this, "Audit restore.fail", handlers.auditAppend, "restore.fail", flow, {
      "failure.$": "$.error",
    });
    recordFailure.addCatch(failed, { resultPath: "$.auditError" });
    recordFailure.next(failed);

    const plan = invoke(
      this,
      "Check and plan restore",
      handlers.planRestore,
      sfn.TaskInput.fromJsonPathAt("$"),
      "$.plan",
    );
    plan.addCatch(failed, { resultPath: "$.error" });
    const steps = [
      audit(this, "Audit restore.start", handlers.auditAppend, "restore.start", flow, {
        details: { "execution.$": "$$.Execution.Id", "target.$": "$.plan.target" },
      }),
      runWorkerTask(this, "Run restore task", worker, props.network),
      audit(this, "Audit restore.ok", handlers.auditAppend, "restore.ok", flow, {
        details: { "execution.$": "$$.Execution.Id", "target.$": "$.plan.target" },
      }),
    ];
    for (const step of steps) step.addCatch(recordFailure, { resultPath: "$.error" });
    let chain = sfn.Chain.start(plan);
    for (const step of steps) chain = chain.next(step);
    this.stateMachine = flowStateMachine(this, flow, chain.next(new sfn.Succeed(this, "Restored")));
    allowRunningTasks(this.stateMachine, worker);
    acknowledgeFlowRole(this.stateMachine, [handlers.planRestore, handlers.auditAppend]);
  }
}
