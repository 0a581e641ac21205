import { Duration, RemovalPolicy, Stack } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import type * as lambda from "aws-cdk-lib/aws-lambda";
import * as logs from "aws-cdk-lib/aws-logs";
import type * as sns from "aws-cdk-lib/aws-sns";
import * as sfn from "aws-cdk-lib/aws-stepfunctions";
import * as tasks from "aws-cdk-lib/aws-stepfunctions-tasks";
import type { Construct } from "constructs";
import type { Handlers } from "./handlers.ts";
import { acknowledgeWildcard } from "./nag.ts";
import type { Network } from "./network.ts";
import { type Duty, Worker } from "./worker.ts";

/**
 * Pieces BackupFlow and RestoreFlow share. The ASL is JSONPath (not JSONata), which
 * both Step Functions and aws-local-stepfunctions (npm run sim) run.
 */

/** The longest a worker task may run: a day covers a dump of several TB at the measured rates. */
export const WORKER_TASK_TIMEOUT = Duration.hours(24);

/**
 * A Lambda task whose result is the handler's return value, placed at `resultPath`.
 * Without a payload, the function gets the state's whole input.
 */
export function invoke(
  scope: Construct,
  name: string,
  fn: lambda.IFunction,
  payload: Record<string, unknown> | undefined,
  resultPath: string,
): tasks.LambdaInvoke {
  const state = new tasks.LambdaInvoke(scope, name, {
    lambdaFunction: fn,
    ...(payload ? { payload: sfn.TaskInput.fromObject(payload) } : {}),
    payloadResponseOnly: true,
    // CDK adds a Retry on Lambda service errors (5xx, SDK errors); a handler's own typed
    // error (InvalidInputError, …) is not retried.
    retryOnServiceExceptions: true,
    resultPath,
  });
  // Throttling is not among CDK's: a burst of schedules at 02:00 must wait, not fail.
  state.addRetry({
    errors: ["Lambda.TooManyRequestsException"],
    interval: Duration.seconds(2),
    maxAttempts: 6,
    backoffRate: 2,
  });
  return state;
}

/** An audit-append task for `event`, naming the flow's database and backup. */
export function audit(
  scope: Construct,
  name: string,
  fn: lambda.IFunction,
  event: string,
  flow: string,
  extra: Record<string, unknown> = {},
): tasks.LambdaInvoke {
  return invoke(
    scope,
    name,
    fn,
    {
      event,
      actor: flow,
      "databaseId.$": "$.plan.databaseId",
      "backupId.$": "$.plan.backupId",
      ...extra,
    },
    sfn.JsonPath.DISCARD,
  );
}

/**
 * `ecs:runTask.sync`: starts the plan's task definition with the plan's argv and waits
 * for it to stop (RUN_JOB; the CDK default, request/response, would not wait). A
 * non-zero exit of the worker fails the state with States.TaskFailed, the task JSON as
 * its Cause. Only ECS's own API errors (capacity, throttling) are retried: a failed dump
 * must never silently run again.
 */
export function runWorkerTask(
  scope: Construct,
  name: string,
  worker: Worker,
  network: Network,
  options: {
    /** @default network.securityGroupIds */
    securityGroupIds?: string[];
    /**
     * Size the task's ephemeral storage per run from the plan's `ephemeralStorageGiB`
     * (VerifyFlow: the backup's database, core/flows/verify-storage.ts). @default the task definition's
     */
    sizedByPlan?: boolean;
    /**
     * Give the task definition's volume configured at launch an EBS gp3 volume of the
     * plan's `volumeGiB`, created by ECS with this infrastructure role and deleted when
     * the task stops. @default none (the definition must then configure none at launch)
     */
    volumeRole?: iam.IRole;
  } = {},
): sfn.CustomState {
  const securityGroupIds = options.securityGroupIds ?? network.securityGroupIds;
  const sizedByPlan = options.sizedByPlan ?? false;
  const state = new sfn.CustomState(scope, name, {
    stateJson: {
      Type: "Task",
      Resource: `arn:${Stack.of(scope).partition}:states:::ecs:runTask.sync`,
      Parameters: {
        Cluster: worker.cluster.clusterArn,
        "TaskDefinition.$": "$.plan.taskDefinition",
        LaunchType: "FARGATE",
        PlatformVersion: "LATEST",
        NetworkConfiguration: {
          AwsvpcConfiguration: {
            Subnets: network.subnetIds,
            SecurityGroups: securityGroupIds,
            AssignPublicIp: network.assignPublicIp ? "ENABLED" : "DISABLED",
          },
        },
        Overrides: {
          ContainerOverrides: [{ "Name.$": "$.plan.container", "Command.$": "$.plan.command" }],
          ...(sizedByPlan ? { EphemeralStorage: { "SizeInGiB.$": "$.plan.ephemeralStorageGiB" } } : {}),
        },
        PropagateTags: "TASK_DEFINITION",
        ...(options.volumeRole !== undefined
          ? {
              VolumeConfigurations: [
                {
                  Name: Worker.LAUNCH_VOLUME,
                  ManagedEBSVolume: {
                    "SizeInGiB.$": "$.plan.volumeGiB",
                    // gp3's baseline 125 MiB/s: Fargate caps a task's EBS throughput by its
                    // size (75 MiB/s at 2 vCPU, 500 at 16), so more would be paid for unused.
                    VolumeType: "gp3",
                    Encrypted: true,
                    ...(worker.ebsKmsKeyArn !== undefined ? { KmsKeyId: worker.ebsKmsKeyArn } : {}),
                    FilesystemType: "ext4",
                    RoleArn: options.volumeRole.roleArn,
                    TerminationPolicy: { DeleteOnTermination: true },
                  },
                },
              ],
            }
          : {}),
      },
      ResultSelector: { "taskArn.$": "$.TaskArn", "stopCode.$": "$.StopCode" },
      ResultPath: "$.task",
      // A hung dump or restore must not hold a task (and its locks) for ever: when the
      // state times out, Step Functions stops the task (ecs:StopTask) and fails the
      // state with States.Timeout, which the flow records as *.fail.
      TimeoutSeconds: WORKER_TASK_TIMEOUT.toSeconds(),
    },
  });
  state.addRetry({
    // API errors, and placement failures (no capacity), which Step Functions reports as
    // AmazonECS.Unknown: the task never started, so running it again is safe.
    errors: ["ECS.AmazonECSException", "AmazonECS.Unknown"],
    interval: Duration.seconds(30),
    maxAttempts: 3,
    backoffRate: 2,
  });
  return state;
}

/**
 * What a state machine that runs worker tasks may do with ECS: run only its duties'
 * task definition families (`<name>_<duty>_*`), pass only its duties' roles (under
 * `/strongroom/<name>/<duty>-`), and only to ECS tasks. So BackupFlow cannot start a
 * task that holds the identity, and no flow can pass a role to anything else.
 */
export function allowRunningTasks(
  machine: sfn.StateMachine,
  worker: Worker,
  duties: ReadonlyArray<Duty | "target" | "verify-ebs">,
): void {
  const stack = Stack.of(machine);
  const families = duties.map((duty) =>
    stack.formatArn({ service: "ecs", resource: "task-definition", resourceName: `${worker.name}_${duty}_*` }),
  );
  machine.addToRolePolicy(new iam.PolicyStatement({ actions: ["ecs:RunTask"], resources: families }));
  machine.addToRolePolicy(
    new iam.PolicyStatement({
      actions: ["ecs:StopTask", "ecs:DescribeTasks"],
      resources: ["*"],
      conditions: { ArnEquals: { "ecs:cluster": worker.cluster.clusterArn } },
    }),
  );
  const roles = [...new Set(duties.map((d) => (d === "target" ? "restore" : d === "verify-ebs" ? "verify" : d)))].map(
    (duty) =>
      stack.formatArn({
        service: "iam",
        region: "",
        resource: "role",
        // `<duty>-task/…` and `<duty>-execution/…` (rolePath).
        resourceName: `strongroom/${worker.name}/${duty}-*`,
      }),
  );
  machine.addToRolePolicy(
    new iam.PolicyStatement({
      actions: ["iam:PassRole"],
      resources: roles,
      conditions: { StringEquals: { "iam:PassedToService": "ecs-tasks.amazonaws.com" } },
    }),
  );
  for (const arn of [...families, ...roles]) {
    acknowledgeWildcard(machine, arn, "the duty's task definitions and roles, one per database, by name and path");
  }
  // PropagateTags makes RunTask tag the task it creates, which ECS authorizes as
  // ecs:TagResource on the new task (ecs:CreateAction = RunTask).
  const tasks = stack.formatArn({ service: "ecs", resource: "task", resourceName: `${worker.cluster.clusterName}/*` });
  acknowledgeWildcard(
    machine,
    tasks,
    "task ids are made by ECS at run time; only RunTask's own new tasks, by condition",
  );
  machine.addToRolePolicy(
    new iam.PolicyStatement({
      actions: ["ecs:TagResource"],
      resources: [tasks],
      conditions: { StringEquals: { "ecs:CreateAction": "RunTask" } },
    }),
  );
  // The managed rule through which Step Functions learns that a .sync task stopped.
  machine.addToRolePolicy(
    new iam.PolicyStatement({
      actions: ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
      resources: [
        stack.formatArn({ service: "events", resource: "rule", resourceName: "StepFunctionsGetEventsForECSTaskRule" }),
      ],
    }),
  );
}

/** Publishes a failure to the alarm topic, then fails the execution with the caught error. */
export function notifyAndFail(scope: Construct, flow: string, topic: sns.ITopic): sfn.Chain {
  const notify = new tasks.SnsPublish(scope, "Notify failure", {
    topic,
    subject: `strongroom: ${flow} failed`,
    message: sfn.TaskInput.fromObject({
      flow,
      "execution.$": "$$.Execution.Id",
      "error.$": "$.error.Error",
      "cause.$": "$.error.Cause",
    }),
    resultPath: sfn.JsonPath.DISCARD,
  });
  const fail = new sfn.Fail(scope, `${flow} failed`, { errorPath: "$.error.Error", causePath: "$.error.Cause" });
  notify.addCatch(fail, { resultPath: "$.notifyError" });
  return notify.next(fail);
}

/**
 * Acknowledges the wildcards a flow's role needs: invoking any version of its own
 * functions (`<fn>:*`, as CDK grants it), and `*` for X-Ray and for describing and
 * stopping tasks (ECS task ARNs are made at run time; the statement is bound to the
 * cluster by condition).
 */
export function acknowledgeFlowRole(machine: sfn.StateMachine, functions: lambda.IFunction[]): void {
  for (const f of new Set(functions)) {
    acknowledgeWildcard(machine, `${f.functionArn}:*`, "CDK's grant to invoke the flow's own function, any version");
  }
  acknowledgeWildcard(
    machine,
    "*",
    "X-Ray's PutTraceSegments and ECS task ARNs (made at run time, bound to the cluster by condition) have no narrower resource",
  );
}

/** A state machine with full logging and X-Ray tracing. */
export function flowStateMachine(scope: Construct, name: string, definition: sfn.IChainable): sfn.StateMachine {
  return new sfn.StateMachine(scope, "StateMachine", {
    definitionBody: sfn.DefinitionBody.fromChainable(definition),
    comment: `strongroom ${name}`,
    tracingEnabled: true,
    logs: {
      // Under /aws/vendedlogs/, as AWS advises for Step Functions: other log group names
      // each add to the account's one CloudWatch Logs resource policy, which has a size limit.
      destination: new logs.LogGroup(scope, "Logs", {
        logGroupName: `/aws/vendedlogs/states/${Stack.of(scope).stackName}-${name}`,
        retention: logs.RetentionDays.THREE_MONTHS,
        removalPolicy: RemovalPolicy.RETAIN,
      }),
      level: sfn.LogLevel.ALL,
      // Inputs carry ids and names only: passwords are refused before they reach a state.
      includeExecutionData: true,
    },
  });
}

/** What a flow construct is given. */
export interface FlowProps {
  readonly handlers: Handlers;
  readonly worker: Worker;
  readonly network: Network;
  readonly alarmTopic: sns.ITopic;
}

/**
 * The shape the flows share: plan → steps → Succeed. A failed plan (nothing started)
 * goes straight to SNS and Fail; a failed step is first recorded as `<kind>.fail`
 * (after `onFailure`, when given: a best-effort step whose own failure is ignored).
 * Builds the state machine with its ECS permissions and cdk-nag acknowledgements.
 */
/** A step that is one of several states: `choice` picks a branch, and every branch goes on to the next step. */
export interface Fork {
  choice: sfn.Choice;
  branches: sfn.CustomState[];
}

export function auditedFlow(
  scope: Construct,
  o: {
    flow: string;
    kind: "backup" | "restore" | "verify";
    props: FlowProps;
    plan: tasks.LambdaInvoke;
    /** In order; a fork is a Choice whose branches (each caught like a step) meet at the next step. */
    steps: Array<tasks.LambdaInvoke | sfn.CustomState | Fork>;
    done: string;
    invoked: lambda.IFunction[];
    /** Runs first when a step fails; its result is discarded, so `$.error` stays the step's. */
    onFailure?: tasks.LambdaInvoke;
    /**
     * What follows `onFailure`, given the `<kind>.fail` recording: a branch that may end
     * the flow another way (VerifyFlow's inconclusive verdict). @default the recording
     */
    afterOnFailure?: (recordFailure: sfn.IChainable) => sfn.IChainable;
    /** More details for the `<kind>.fail` row, from the plan (which always ran before a step failed). */
    failureDetails?: Record<string, unknown>;
  },
): sfn.StateMachine {
  const { handlers, worker } = o.props;
  const failed = notifyAndFail(scope, o.flow, o.props.alarmTopic);
  const recordFailure = audit(scope, `Audit ${o.kind}.fail`, handlers.auditAppend, `${o.kind}.fail`, o.flow, {
    "failure.$": "$.error",
    ...(o.failureDetails ? { details: o.failureDetails } : {}),
  });
  recordFailure.addCatch(failed, { resultPath: "$.auditError" });
  recordFailure.next(failed);
  let onStepFailure: sfn.IChainable = recordFailure;
  if (o.onFailure) {
    o.onFailure.addCatch(recordFailure, { resultPath: "$.onFailureError" });
    o.onFailure.next(o.afterOnFailure ? o.afterOnFailure(recordFailure) : recordFailure);
    onStepFailure = o.onFailure;
  }
  o.plan.addCatch(failed, { resultPath: "$.error" });
  let chain = sfn.Chain.start(o.plan);
  for (const step of o.steps) {
    if ("choice" in step) {
      for (const branch of step.branches) branch.addCatch(onStepFailure, { resultPath: "$.error" });
      chain = chain.next(step.choice.afterwards());
      continue;
    }
    step.addCatch(onStepFailure, { resultPath: "$.error" });
    chain = chain.next(step);
  }
  const machine = flowStateMachine(scope, o.flow, chain.next(new sfn.Succeed(scope, o.done)));
  allowRunningTasks(
    machine,
    worker,
    o.kind === "restore" ? ["restore", "target"] : o.kind === "verify" ? ["verify", "verify-ebs"] : [o.kind],
  );
  acknowledgeFlowRole(machine, [...o.invoked, handlers.auditAppend]);
  return machine;
}
