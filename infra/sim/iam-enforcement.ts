import { randomUUID } from "node:crypto";
import type { Deployment, Flow, LambdaFunction, TaskDefinition } from "./deployment.ts";
import { secretArnOf } from "./deployment.ts";
import { Authorizer, type IamCall, type IamRequest, type Principal } from "./iam-authorizer.ts";
import { IamGateway } from "./iam-gateway.ts";
import { TemplatePolicies } from "./iam-policies.ts";
import type { Service } from "./iam-requests.ts";
import type { VolumeConfiguration } from "./local-tasks.ts";

/**
 * IAM in npm run sim: each principal of the template calls AWS as itself, and what its
 * role's policies (and the resource's policy) do not allow fails as AWS fails it.
 * - Functions and tasks reach the stand-ins through the IAM gateway, each with its
 *   role's own access key.
 * - A flow's own calls (invoking a function, RunTask with its PassRole and tagging,
 *   publishing to SNS) are made in-process by LocalTasks; they are decided here against
 *   the state machine's role, and a denied one raises the error Step Functions raises.
 * - ECS's own call when it starts a task (GetSecretValue for the task's secrets) is
 *   decided against the task definition's execution role.
 */
export class IamEnforcement {
  readonly authorizer: Authorizer;
  readonly gateway: IamGateway;
  private readonly deployment: Deployment;

  private constructor(deployment: Deployment, authorizer: Authorizer, gateway: IamGateway) {
    this.deployment = deployment;
    this.authorizer = authorizer;
    this.gateway = gateway;
  }

  /**
   * Reads the policies from the deployment's resources and starts the gateway in front
   * of `upstreams`. The stand-ins see `upstreamAccessKeyId` on every forwarded request.
   */
  static async start(
    deployment: Deployment,
    upstreams: Partial<Record<Service, string>>,
    upstreamAccessKeyId: string,
  ): Promise<IamEnforcement> {
    const authorizer = new Authorizer(TemplatePolicies.fromResources(deployment.resources), deployment.place);
    const hashKeys = new Map(
      deployment.tables.map((t) => [t.name, t.keySchema.find((k) => k.KeyType === "HASH")?.AttributeName]),
    );
    const gateway = await IamGateway.start({
      authorizer,
      upstreams,
      upstreamAccessKeyId,
      names: {
        place: deployment.place,
        hashKeyOf: (table) => hashKeys.get(table),
        secretArnOf: (id) => {
          if (id.startsWith("arn:")) return id;
          const known = deployment.secretArns.find((arn) => secretArnOf(arn).name === id);
          const { region, account } = deployment.place;
          return known ?? `arn:aws:secretsmanager:${region}:${account}:secret:${id}`;
        },
      },
    });
    return new IamEnforcement(deployment, authorizer, gateway);
  }

  /** The calls decided since the last `reset()`. */
  get calls(): IamCall[] {
    return this.authorizer.calls;
  }

  reset(): void {
    this.authorizer.calls = [];
  }

  async stop(): Promise<void> {
    await this.gateway.stop();
  }

  // ---- what the principals run with ------------------------------------------------

  /** A function's environment additions: its role's key and the gateway's endpoints. */
  functionEnv(fn: LambdaFunction): Record<string, string> {
    const session = fn.arn.split(":").pop() ?? fn.name;
    return this.gateway.envFor(this.authorizer.credentialsFor(fn.roleArn, session));
  }

  /**
   * A task's environment additions: its task role's key and the gateway's endpoints. A
   * task definition without a task role gets no credentials, and no instance metadata
   * to look for them in.
   */
  taskEnv(definition: TaskDefinition, taskArn: string): Record<string, string> {
    if (!definition.taskRoleArn) {
      return { ...this.gateway.envFor({ accessKeyId: "", secretAccessKey: "" }), AWS_EC2_METADATA_DISABLED: "true" };
    }
    return this.gateway.envFor(this.authorizer.credentialsFor(definition.taskRoleArn, taskIdOf(taskArn)));
  }

  // ---- the flow's own calls --------------------------------------------------------

  /** lambda:InvokeFunction, as the flow's role. Step Functions raises Lambda.AWSLambdaException for a 403. */
  async authorizeInvoke(flow: Flow, fn: LambdaFunction): Promise<void> {
    const denied = await this.first(this.asFlow(flow), [{ action: "lambda:InvokeFunction", resource: fn.arn }]);
    if (denied) throw stepError("Lambda.AWSLambdaException", denied, "AWSLambda", 403, "AccessDeniedException");
  }

  /** sns:Publish, as the flow's role, against the topic's policy. */
  async authorizePublish(flow: Flow, topicArn: string): Promise<void> {
    const denied = await this.first(this.asFlow(flow), [{ action: "sns:Publish", resource: topicArn }]);
    if (denied) throw stepError("SNS.AuthorizationErrorException", denied, "AmazonSNS", 403, "AuthorizationError");
  }

  /**
   * What `ecs:runTask.sync` asks IAM, as the flow's role: RunTask on the task definition
   * (condition ecs:cluster), PassRole of its task and execution roles to ECS tasks,
   * TagResource on the new task when tags propagate (ECS authorizes tagging on create
   * with ecs:CreateAction), and the managed EventBridge rule through which Step
   * Functions learns that the task stopped.
   */
  async authorizeRunTask(
    flow: Flow,
    request: {
      Cluster: string;
      PropagateTags?: string;
      Tags?: unknown[];
      VolumeConfigurations?: VolumeConfiguration[];
    },
    definition: TaskDefinition,
    taskArn: string,
  ): Promise<void> {
    const principal = this.asFlow(flow);
    const { region, account } = this.deployment.place;
    const cluster = { "ecs:cluster": request.Cluster };
    const ecs: IamRequest[] = [
      {
        action: "ecs:RunTask",
        resource: definition.arn,
        context: { ...cluster, ...(request.PropagateTags ? { "ecs:propagate-tags": request.PropagateTags } : {}) },
      },
      ...[definition.taskRoleArn, definition.executionRoleArn].flatMap((role) =>
        role
          ? [
              {
                action: "iam:PassRole",
                resource: role,
                context: { "iam:PassedToService": "ecs-tasks.amazonaws.com" },
              },
            ]
          : [],
      ),
      // A volume configured at launch: ECS itself assumes its infrastructure role to create it.
      ...(request.VolumeConfigurations ?? []).map((v) => ({
        action: "iam:PassRole",
        resource: String(v.ManagedEBSVolume?.RoleArn),
        context: { "iam:PassedToService": "ecs.amazonaws.com" },
      })),
      ...(request.PropagateTags || (request.Tags?.length ?? 0) > 0
        ? [{ action: "ecs:TagResource", resource: taskArn, context: { ...cluster, "ecs:CreateAction": "RunTask" } }]
        : []),
    ];
    const deniedEcs = await this.first(principal, ecs);
    if (deniedEcs) throw stepError("ECS.AccessDeniedException", deniedEcs, "AmazonECS", 400, "AccessDeniedException");
    const rule = `arn:aws:events:${region}:${account}:rule/StepFunctionsGetEventsForECSTaskRule`;
    const sync = await this.first(principal, [
      { action: "events:PutTargets", resource: rule },
      { action: "events:PutRule", resource: rule },
      { action: "events:DescribeRule", resource: rule },
      { action: "ecs:DescribeTasks", resource: taskArn, context: cluster },
    ]);
    // Without these Step Functions cannot follow the task it started; it reports the
    // refusal as the task's failure.
    if (sync) {
      throw stepError(
        "States.TaskFailed",
        sync,
        sync.action.startsWith("ecs:") ? "AmazonECS" : "AmazonCloudWatchEvents",
        400,
        "AccessDeniedException",
      );
    }
  }

  /**
   * secretsmanager:GetSecretValue for one of the task's secrets, as its execution role
   * (ECS fetches them before the container starts). A refusal is ECS's
   * ResourceInitializationError: the error's message is what ECS puts in StoppedReason.
   */
  async authorizeSecret(definition: TaskDefinition, valueFrom: string, taskArn: string): Promise<void> {
    const { arn } = secretArnOf(valueFrom);
    const principal = definition.executionRoleArn
      ? this.authorizer.principal(definition.executionRoleArn, taskIdOf(taskArn))
      : undefined;
    const denied = await this.first(principal, [
      { action: "secretsmanager:GetSecretValue", resource: arn, context: { "secretsmanager:SecretId": arn } },
    ]);
    if (denied) {
      throw new Error(
        `execution resource retrieval failed: unable to retrieve secret from asm: failed to fetch secret ${arn} from secrets manager: AccessDeniedException: ${denied.message}`,
      );
    }
  }

  private asFlow(flow: Flow): Principal {
    return this.authorizer.principal(flow.roleArn, flow.name);
  }

  /** Decides each request in order; the first denied call, or undefined when all are allowed. */
  private async first(principal: Principal | undefined, requests: IamRequest[]): Promise<IamCall | undefined> {
    for (const r of requests) {
      const call = await this.authorizer.authorize(principal, r);
      if (call.decision !== "Allowed") return call;
    }
    return undefined;
  }
}

/** The task id, the last part of a task ARN: ECS names the task role's session by it. */
function taskIdOf(taskArn: string): string {
  return taskArn.split("/").pop() ?? taskArn;
}

/**
 * A service integration's failure as Step Functions reports it: the error named by the
 * service and exception, the Cause the AWS SDK for Java's message.
 */
function stepError(name: string, call: IamCall, service: string, status: number, code: string): Error {
  const err = new Error(
    `${call.message} (Service: ${service}; Status Code: ${status}; Error Code: ${code}; Request ID: ${randomUUID()}; Proxy: null)`,
  );
  err.name = name;
  return err;
}
