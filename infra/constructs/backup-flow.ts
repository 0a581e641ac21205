import * as sfn from "aws-cdk-lib/aws-stepfunctions";
import { Construct } from "constructs";
import { audit, auditedFlow, type FlowProps, invoke, runWorkerTask } from "./flow-parts.ts";

/**
 * BackupFlow, started by each database's schedule with `{"databaseId": "…"}` (and, for a
 * database whose host archives its WAL, `"kind": "base"`: a physical base backup over a
 * replication connection, unsigned, committed by the same backup.ok row with kind "base"):
 * plan (the backup id) → audit backup.start → the backup task (.sync) → catalog-record
 * → audit backup.ok → retention (plan, audit retain.delete, delete, audit gc.delete), of
 * the logical backups and, for a walArchiving database, of its base backups and WAL. Any failure after the plan: audit backup.fail
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
      // The whole input, as VerifyFlow's: `{databaseId}`, or with `kind: "base"`; anything else is refused by its schema.
      plan: invoke(this, "Plan backup", handlers.planBackup, undefined, "$.plan"),
      steps: [
        audit(this, "Audit backup.start", handlers.auditAppend, "backup.start", flow, {
          details: { "execution.$": "$$.Execution.Id" },
        }),
        runWorkerTask(this, "Run backup task", props.worker, props.network),
        invoke(this, "Record in catalog", handlers.catalogRecord, { ...plan, "kind.$": "$.plan.kind" }, "$.catalog"),
        // backup.ok with the manifest's SHA-256 is what makes the backup count
        // (core/ledger.ts), so it is written before prune, which counts only committed backups.
        audit(this, "Audit backup.ok", handlers.auditAppend, "backup.ok", flow, {
          // kind "base" commits a physical base backup (core/pitr/bases.ts), "logical" a dump (core/ledger.ts).
          details: {
            "execution.$": "$$.Execution.Id",
            "manifestSha256.$": "$.catalog.manifestSha256",
            "kind.$": "$.plan.kind",
          },
        }),
        // Retention in three steps, so that only audit-append writes the audit table: the
        // retain.delete rows go in before anything is deleted, and the delete step removes
        // exactly the backups those rows retired (core/prune.ts).
        invoke(
          this,
          "Plan retention",
          handlers.retentionPrune,
          {
            step: "plan",
            "databaseId.$": "$.plan.databaseId",
            "policy.$": "$.plan.retention",
            "bases.$": "$.plan.bases",
          },
          "$.prune",
        ),
        invoke(
          this,
          "Audit retain.delete",
          handlers.auditAppend,
          { event: "retain.delete", actor: flow, "databaseId.$": "$.plan.databaseId", "rows.$": "$.prune.retire" },
          sfn.JsonPath.DISCARD,
        ),
        invoke(
          this,
          "Delete retired",
          handlers.retentionPrune,
          // The WAL range the plan's row named: the delete step deletes no WAL outside it.
          {
            step: "delete",
            "databaseId.$": "$.plan.databaseId",
            "policy.$": "$.plan.retention",
            "bases.$": "$.plan.bases",
            "wal.$": "$.prune.wal",
            "basesHalted.$": "$.prune.basesHalted",
          },
          "$.pruned",
        ),
        invoke(
          this,
          "Audit gc.delete",
          handlers.auditAppend,
          { event: "gc.delete", actor: flow, "databaseId.$": "$.plan.databaseId", "rows.$": "$.pruned.garbage" },
          sfn.JsonPath.DISCARD,
        ),
      ],
      done: "Backed up",
      invoked: [handlers.planBackup, handlers.catalogRecord, handlers.retentionPrune],
    });
  }
}
