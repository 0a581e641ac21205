import * as iam from "aws-cdk-lib/aws-iam";
import * as sfn from "aws-cdk-lib/aws-stepfunctions";
import { Construct } from "constructs";
import { audit, auditedFlow, type FlowProps, type Fork, invoke, runWorkerTask } from "./flow-parts.ts";

/**
 * VerifyFlow, started by each database's verify schedule with `{"databaseId"}` (or by
 * hand with a `backupId`; a database with walArchiving has a second daily schedule with
 * `"kind": "pitr"`, whose task runs `verify --pitr`): plan (resolves latest) → audit verify.start → the verify task
 * (.sync: restores into a throwaway cluster of the backup's major inside the task, runs
 * the checks, stores the result) → verification-record (the catalog item, the
 * VerificationOk and VerifyRestoreSeconds metrics) → audit verify.ok. A check that fails makes the worker
 * exit 1, so the flow records verify.fail (with the exit code) → SNS → Fail, and the
 * VerifyFlowFailed alarm is "a verification failed". Before verify.fail, the failed
 * verification's stored result is recorded too (catalog lastVerifyOk false, VerificationOk 0).
 * A task that exits 3 was inconclusive (the scratch lacked an extension or a locale the
 * backup needs): recorded, audited verify.inconclusive, and the execution succeeds; the
 * VerificationInconclusive alarm says so, never VerifyFlowFailed.
 */
export class VerifyFlow extends Construct {
  static readonly NAME = "VerifyFlow";
  readonly stateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: FlowProps) {
    super(scope, id);
    const { handlers } = props;
    const flow = VerifyFlow.NAME;
    // Every verify row names the manifest it verified: a verification counts for exactly
    // that manifest (core/ledger.ts), never for another one put under the same id.
    // `kind` is the plan's: "restore" (a logical backup) or "pitr" (a base backup and its
    // WAL recovered to a point), so the rows count for the right reader (core/ledger.ts,
    // core/pitr/pitr-status.ts).
    const verified = {
      "databaseId.$": "$.plan.databaseId",
      "backupId.$": "$.plan.backupId",
      "manifestSha256.$": "$.plan.manifestSha256",
      "kind.$": "$.plan.kind",
    };
    const details = {
      "execution.$": "$$.Execution.Id",
      "manifestSha256.$": "$.plan.manifestSha256",
      "kind.$": "$.plan.kind",
    };
    this.stateMachine = auditedFlow(this, {
      flow,
      kind: "verify",
      props,
      plan: invoke(this, "Plan verify", handlers.planVerify, undefined, "$.plan"),
      steps: [
        audit(this, "Audit verify.start", handlers.auditAppend, "verify.start", flow, { details }),
        this.runVerifyTask(props),
        // The verdict is the flow's (the task exited 0 here), never a summary in the bucket.
        invoke(this, "Record verification", handlers.verificationRecord, { ...verified, ok: true }, "$.verification"),
        audit(this, "Audit verify.ok", handlers.auditAppend, "verify.ok", flow, {
          details: {
            ...details,
            "restoreSeconds.$": "$.verification.restoreSeconds",
            // Verified with exclusions: the extensions left out (verify.skipExtensions).
            "excluded.$": "$.verification.excluded",
          },
        }),
      ],
      done: "Verified",
      failureDetails: details,
      invoked: [handlers.planVerify, handlers.verificationRecord],
      // A verification that failed its checks stored a result too: record it (catalog
      // lastVerifyOk false, VerificationOk 0). A task that died before storing one has
      // nothing to record; that failure is ignored and verify.fail still follows.
      // Exit 3 is an inconclusive verification (the scratch server lacked an extension
      // or a locale the backup needs): recorded as such, verify.inconclusive, and the
      // execution succeeds; the VerificationInconclusive alarm, not VerifyFlowFailed, says so.
      onFailure: invoke(
        this,
        "Record failed verification",
        handlers.verificationRecord,
        { ...verified, ok: false, "failure.$": "$.error" },
        "$.verdict",
      ),
      afterOnFailure: (recordFailure) =>
        new sfn.Choice(this, "Inconclusive?")
          .when(
            sfn.Condition.stringEquals("$.verdict.outcome", "inconclusive"),
            audit(this, "Audit verify.inconclusive", handlers.auditAppend, "verify.inconclusive", flow, {
              "failure.$": "$.error",
              details,
            }).next(new sfn.Succeed(this, "Inconclusive")),
          )
          .otherwise(recordFailure),
    });
    // ECS assumes the volume role to create and delete the run's EBS volume; the flow
    // passes it to ECS itself, never to a task.
    this.stateMachine.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ["iam:PassRole"],
        resources: [props.worker.verifyVolumeRole.roleArn],
        conditions: { StringEquals: { "iam:PassedToService": "ecs.amazonaws.com" } },
      }),
    );
  }

  /**
   * The verify task, on the storage the plan chose for this backup: ephemeral storage
   * sized per run, or, for what that cannot hold (or `verify.storage: "ebs"`), the
   * task definition whose scratch is an EBS volume, sized per run and created at launch.
   */
  private runVerifyTask(props: FlowProps): Fork {
    const common = { securityGroupIds: props.network.verifySecurityGroupIds, sizedByPlan: true };
    const onEphemeral = runWorkerTask(this, "Run verify task", props.worker, props.network, common);
    const onVolume = runWorkerTask(this, "Run verify task on a volume", props.worker, props.network, {
      ...common,
      volumeRole: props.worker.verifyVolumeRole,
    });
    const choice = new sfn.Choice(this, "Storage?")
      .when(sfn.Condition.stringEquals("$.plan.storage", "ebs"), onVolume)
      .otherwise(onEphemeral);
    return { choice, branches: [onEphemeral, onVolume] };
  }
}
