import type * as sfn from "aws-cdk-lib/aws-stepfunctions";
import { Construct } from "constructs";
import { audit, auditedFlow, type FlowProps, invoke, runWorkerTask } from "./flow-parts.ts";

/**
 * RestoreFlow, started from the console with
 * `{"databaseId", "backupId"?: "latest"|id, "target": {"database"} | {"secretArn", "database"?}, "clean"?, "noOwner"?, "confirm"?}`:
 * plan (checks the input, refusing any password field, and `clean` on the source's own
 * server without `confirm`, before anything runs; resolves latest) → audit restore.start → the restore task (.sync, creates the target database
 * when missing, verifies row counts) → audit restore.ok. Failure: restore.fail → SNS → Fail.
 */
export class RestoreFlow extends Construct {
  static readonly NAME = "RestoreFlow";
  readonly stateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: FlowProps) {
    super(scope, id);
    const { handlers } = props;
    const flow = RestoreFlow.NAME;
    const details = { "execution.$": "$$.Execution.Id", "target.$": "$.plan.target" };
    this.stateMachine = auditedFlow(this, {
      flow,
      kind: "restore",
      props,
      plan: invoke(this, "Check and plan restore", handlers.planRestore, undefined, "$.plan"),
      steps: [
        audit(this, "Audit restore.start", handlers.auditAppend, "restore.start", flow, { details }),
        runWorkerTask(this, "Run restore task", props.worker, props.network),
        audit(this, "Audit restore.ok", handlers.auditAppend, "restore.ok", flow, { details }),
      ],
      done: "Restored",
      invoked: [handlers.planRestore],
    });
  }
}
