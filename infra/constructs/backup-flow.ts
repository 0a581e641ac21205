import type * as sfn from "aws-cdk-lib/aws-stepfunctions";
import { Construct } from "constructs";
import { audit, auditedFlow, type FlowProps, invoke, runWorkerTask } from "./flow-parts.ts";

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

  constructor(scope: Construct, id: string, props: FlowProps) {
    super(scope, id);
    const { handlers } = props;
    const flow = BackupFlow.NAME;
    const plan = { "databaseId.$": "$.plan.databaseId", "backupId.$": "$.plan.backupId" };
    this.stateMachine = auditedFlow(this, {
      flow,
      kind: "backup",
      props,
      plan: invoke(this, "Plan backup", handlers.planBackup, { "databaseId.$": "$.databaseId" }, "$.plan"),
      steps: [
        audit(this, "Audit backup.start", handlers.auditAppend, "backup.start", flow, {
          details: { "execution.$": "$$.Execution.Id" },
        }),
        runWorkerTask(this, "Run backup task", props.worker, props.network),
        invoke(this, "Record in catalog", handlers.catalogRecord, plan, "$.catalog"),
        // backup.ok with the manifest's SHA-256 is what makes the backup count
        // (core/ledger.ts), so it is written before prune, which counts only committed backups.
        audit(this, "Audit backup.ok", handlers.auditAppend, "backup.ok", flow, {
          details: { "execution.$": "$$.Execution.Id", "manifestSha256.$": "$.catalog.manifestSha256" },
        }),
        invoke(
          this,
          "Prune by retention",
          handlers.retentionPrune,
          { "databaseId.$": "$.plan.databaseId", "policy.$": "$.plan.retention" },
          "$.prune",
        ),
      ],
      done: "Backed up",
      invoked: [handlers.planBackup, handlers.catalogRecord, handlers.retentionPrune],
    });
  }
}
