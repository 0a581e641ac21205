import { randomUUID } from "node:crypto";
import { StateMachine } from "aws-local-stepfunctions";
import { UsageError } from "#core/errors.ts";
import { regionFromEnv } from "#core/store/s3-store.ts";
import { logger as lambdaLogger } from "../../functions/common/lambda.ts";
import { loadConfig } from "../config/load-config.ts";
import { type Deployment, type Flow, readDeployment } from "./deployment.ts";
import type { IamCall } from "./iam-authorizer.ts";
import { IamEnforcement } from "./iam-enforcement.ts";
import type { Service } from "./iam-requests.ts";
import { LocalTasks, type SimRecord, type WorkerError } from "./local-tasks.ts";
import { provision, simClients } from "./provision.ts";
import { type Endpoint, startDynamoDbLocal, startMoto } from "./stand-ins.ts";
import { TaskSandbox, type TaskSandboxOptions } from "./task-sandbox.ts";

/** moto's account id; the ARNs the sim makes up use it, so SNS topic ARNs agree. */
const ACCOUNT = "123456789012";
/** The longest timer Node keeps (2^31-1 ms), for Task states with no TimeoutSeconds of their own. */
const NO_TIMEOUT_SECONDS = 2_147_483;

/** The events the sim reads (aws-local-stepfunctions does not export its EventLog type). */
type SimEvent =
  | { type: "StateEntered"; state: { name: string } }
  | { type: "ExecutionFailed"; Error: string; Cause: unknown }
  | { type: "other" };

/** One execution's outcome: a JSON line of `npm run sim -- --json`. */
export interface ExecutionResult {
  flow: string;
  status: "SUCCEEDED" | "FAILED";
  output?: unknown;
  error?: string;
  cause?: string;
  /**
   * When a worker task's failure failed the execution: the error the worker reported
   * (in its logs, which AWS keeps out of the Cause), its hint in the flow's input terms.
   */
  worker?: WorkerError;
  /** The states entered, in order. */
  states: string[];
  seconds: number;
  /** SNS messages the execution published (to the stand-in), and metrics its functions emitted. */
  published: SimRecord["published"];
  metrics: SimRecord["metrics"];
  /**
   * Every AWS call the execution's functions, tasks and flow made, with IAM's decision;
   * absent when IAM is not enforced (`iam: false`).
   */
  calls?: IamCall[];
}

export interface SimOptions {
  configFile: string;
  /** Log lines of the functions and tasks. @default stderr */
  log?: (line: string) => void;
  /**
   * Run each ECS task as Fargate would, in the task sandbox (its options, or `true`), or
   * as a plain child process (`false`; faster, and models none of Fargate's user,
   * filesystem and environment).
   * @default true
   */
  sandbox?: boolean | TaskSandboxOptions;
  /**
   * Enforce IAM: each function, task and flow calls AWS as its own role, through the
   * IAM gateway, and a call the template's policies do not allow fails as in AWS.
   * @default true
   */
  iam?: boolean;
}

/**
 * `npm run sim`: the synthesized state machines, run by aws-local-stepfunctions against
 * stand-ins. moto (S3, Secrets Manager, SNS) and DynamoDB Local are started on 127.0.0.1
 * for whichever of AWS_ENDPOINT_URL_S3 / _SNS / _SECRETS_MANAGER / _DYNAMODB (or
 * AWS_ENDPOINT_URL) is not set, and stopped by PID in `stop()`. Executions run one after
 * another in this process, against the same stand-ins, so state carries from one to
 * the next.
 */
export class Sim {
  readonly deployment: Deployment;
  private readonly tasks: LocalTasks;
  private readonly record: SimRecord;
  private readonly standIns: Endpoint[];
  /** IAM enforcement: the gateway, the policies and the record of calls; undefined with `iam: false`. */
  readonly iam: IamEnforcement | undefined;

  private constructor(
    deployment: Deployment,
    tasks: LocalTasks,
    record: SimRecord,
    standIns: Endpoint[],
    iam: IamEnforcement | undefined,
  ) {
    this.deployment = deployment;
    this.tasks = tasks;
    this.record = record;
    this.standIns = standIns;
    this.iam = iam;
  }

  private current: { abort: () => void } | undefined;

  static async start(options: SimOptions): Promise<Sim> {
    const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
    const config = loadConfig(options.configFile, "sim");
    // Before any stand-in starts: a machine without bubblewrap is told so at once.
    const sandbox =
      options.sandbox === false ? false : TaskSandbox.open(options.sandbox === true ? {} : (options.sandbox ?? {}));
    const standIns = await startStandIns(log);
    let iam: IamEnforcement | undefined;
    try {
      // The in-process functions log where the tasks do, not on the sim's stdout.
      lambdaLogger.configure("json", (line) => log(line.trimEnd()));
      const deployment = readDeployment(options.configFile, { account: ACCOUNT, region: regionFromEnv() });
      const clients = simClients();
      await provision(deployment, clients, config.sim?.secrets ?? {}, options.configFile);
      const record: SimRecord = { published: [], metrics: [] };
      // The stand-ins see the caller's key on every request, as they did without the gateway.
      iam =
        options.iam === false
          ? undefined
          : await IamEnforcement.start(deployment, upstreams(), process.env.AWS_ACCESS_KEY_ID ?? "test");
      const tasks = new LocalTasks({ deployment, clients, record, log, sandbox, ...(iam ? { iam } : {}) });
      return new Sim(deployment, tasks, record, standIns, iam);
    } catch (err) {
      await iam?.stop();
      await stopAll(standIns);
      throw err;
    }
  }

  get flowNames(): string[] {
    return [...this.deployment.flows.keys()];
  }

  /** The flow of that name, or a usage error naming the flows there are. */
  flow(flowName: string): Flow {
    const flow = this.deployment.flows.get(flowName);
    if (!flow) {
      throw new UsageError(`no flow ${JSON.stringify(flowName)} in the synthesized template`, {
        hint: `flows: ${this.flowNames.join(", ")}`,
      });
    }
    return flow;
  }

  /** Runs one execution of `flowName` to its end. */
  async run(flowName: string, input: unknown): Promise<ExecutionResult> {
    const flow = this.flow(flowName);
    this.record.published = [];
    this.record.metrics = [];
    this.iam?.reset();
    const machine = new StateMachine(withTimeouts(flow, this.deployment) as never);
    const name = randomUUID();
    const started = performance.now();
    const execution = machine.run(input as never, {
      overrides: { taskResourceLocalHandlers: this.tasks.handlersFor(flow) },
      context: {
        Execution: { Id: `${flow.arn.replace(":stateMachine:", ":execution:")}:${name}`, Name: name },
        StateMachine: { Id: flow.arn, Name: flow.arn.split(":").pop() },
      } as never,
    });
    this.current = execution;
    const states: string[] = [];
    let failure: { Error: string; Cause: unknown } | undefined;
    const watching = (async () => {
      for await (const event of execution.eventLogs as AsyncGenerator<SimEvent>) {
        if (event.type === "StateEntered") states.push(event.state.name);
        if (event.type === "ExecutionFailed") failure = { Error: event.Error, Cause: event.Cause };
      }
    })();
    let output: unknown;
    let status: ExecutionResult["status"] = "SUCCEEDED";
    try {
      output = await execution.result;
    } catch (err) {
      status = "FAILED";
      failure ??= { Error: (err as Error).name, Cause: (err as Error).message };
    } finally {
      this.current = undefined;
    }
    await watching;
    const worker = failure ? this.tasks.reportedBy(taskArnIn(failure.Cause) ?? "") : undefined;
    return {
      flow: flowName,
      status,
      ...(status === "SUCCEEDED" ? { output } : {}),
      ...(failure
        ? {
            error: failure.Error,
            cause: typeof failure.Cause === "string" ? failure.Cause : JSON.stringify(failure.Cause),
          }
        : {}),
      ...(worker ? { worker } : {}),
      states,
      seconds: Math.round((performance.now() - started) / 10) / 100,
      published: this.record.published,
      metrics: this.record.metrics,
      ...(this.iam ? { calls: this.iam.calls } : {}),
    };
  }

  /** Interrupted: stops the running execution and its tasks. */
  abort(): void {
    this.current?.abort();
    this.tasks.stopAll();
  }

  async stop(): Promise<void> {
    this.tasks.stopAll();
    await this.iam?.stop();
    await stopAll(this.standIns);
  }
}

/** The task a States.TaskFailed Cause describes (ECS's DescribeTasks shape), if it is one. */
function taskArnIn(cause: unknown): string | undefined {
  let parsed: unknown = cause;
  if (typeof cause === "string") {
    try {
      parsed = JSON.parse(cause);
    } catch {
      return undefined;
    }
  }
  const arn = (parsed as { TaskArn?: unknown } | null)?.TaskArn;
  return typeof arn === "string" ? arn : undefined;
}

/**
 * Step Functions gives a Task state without TimeoutSeconds no state timeout (a function
 * is bound by its own timeout); aws-local-stepfunctions defaults to 60 s, which a real
 * dump outlasts. So each Lambda task gets its function's timeout, and any other Task
 * without one waits as long as it takes.
 */
function withTimeouts(flow: Flow, deployment: Deployment): Flow["definition"] {
  const definition = structuredClone(flow.definition);
  for (const state of Object.values(definition.States)) {
    if (state.Type !== "Task" || state.TimeoutSeconds !== undefined || state.TimeoutSecondsPath !== undefined) continue;
    const fn = deployment.functions.get(String(state.Resource));
    state.TimeoutSeconds = fn ? fn.timeoutSeconds : NO_TIMEOUT_SECONDS;
  }
  return definition;
}

async function startStandIns(log: (line: string) => void): Promise<Endpoint[]> {
  const env = process.env;
  env.AWS_ACCESS_KEY_ID ??= "test";
  env.AWS_SECRET_ACCESS_KEY ??= "test";
  env.AWS_REGION ??= "us-east-1";
  const motoServices = ["S3", "SNS", "SECRETS_MANAGER", "SSM"].filter(
    (s) => !env[`AWS_ENDPOINT_URL_${s}`] && !env.AWS_ENDPOINT_URL,
  );
  const needDynamo = !env.AWS_ENDPOINT_URL_DYNAMODB && !env.AWS_ENDPOINT_URL;
  const [moto, dynamo] = await Promise.allSettled([
    motoServices.length > 0 ? startMoto() : undefined,
    needDynamo ? startDynamoDbLocal() : undefined,
  ]);
  const started = [moto, dynamo].flatMap((r) => (r.status === "fulfilled" && r.value ? [r.value] : []));
  for (const r of [moto, dynamo]) {
    if (r.status === "rejected") {
      await stopAll(started);
      throw r.reason;
    }
  }
  if (moto.status === "fulfilled" && moto.value) {
    for (const s of motoServices) env[`AWS_ENDPOINT_URL_${s}`] = moto.value.url;
    log(`sim: started moto on ${moto.value.url} (pid ${moto.value.pid}) for ${motoServices.join(", ")}`);
  }
  if (dynamo.status === "fulfilled" && dynamo.value) {
    env.AWS_ENDPOINT_URL_DYNAMODB = dynamo.value.url;
    log(`sim: started DynamoDB Local on ${dynamo.value.url} (pid ${dynamo.value.pid})`);
  }
  return started;
}

/** Each service's stand-in, as the SDK would reach it from this process's environment. */
function upstreams(): Partial<Record<Service, string>> {
  const env = process.env;
  const of = (variable: string) => env[`AWS_ENDPOINT_URL_${variable}`] ?? env.AWS_ENDPOINT_URL;
  const out: Partial<Record<Service, string>> = {};
  for (const [service, variable] of [
    ["s3", "S3"],
    ["dynamodb", "DYNAMODB"],
    ["sns", "SNS"],
    ["secretsmanager", "SECRETS_MANAGER"],
    ["ssm", "SSM"],
  ] as const) {
    const url = of(variable);
    if (url) out[service] = url;
  }
  return out;
}

async function stopAll(endpoints: Endpoint[]): Promise<void> {
  for (const e of endpoints.reverse()) await e.stop().catch(() => undefined);
}
