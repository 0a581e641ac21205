import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import * as os from "node:os";
import { constants } from "node:os";
import * as path from "node:path";
import { createInterface } from "node:readline";
import { Metrics } from "@aws-lambda-powertools/metrics";
import { GetSecretValueCommand } from "@aws-sdk/client-secrets-manager";
import { PublishCommand } from "@aws-sdk/client-sns";
import type { Context } from "aws-lambda";
import { ImageConfigError } from "#core/errors.ts";
import { METRICS_SERVICE } from "#core/flows/metrics.ts";
import { hintInFlowTerms } from "#core/flows/plan.ts";
import type {
  ContainerDefinition,
  Deployment,
  Flow,
  LambdaFunction,
  TaskDefinition,
  TaskVolume,
} from "./deployment.ts";
import { secretArnOf } from "./deployment.ts";
import type { SimClients } from "./provision.ts";
import { type RunningTask, TaskSandbox } from "./task-sandbox.ts";

const REPO_ROOT = path.resolve(import.meta.dirname, "../..");
const WORKER_CLI = path.join(REPO_ROOT, "containers/worker/bin/strongroom.mjs");

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type LocalHandler = (input: Json) => Promise<Json>;

/**
 * The error a worker task reported as it failed: its name, message and hint, the hint in
 * the terms of the flow's input where the worker's flag has an input field.
 */
export interface WorkerError {
  name: string;
  message: string;
  hint?: string;
}

/** What the local tasks report besides their results: published messages and metrics. */
export interface SimRecord {
  published: Array<{ topicArn: string; subject?: string; message: string }>;
  metrics: Array<{ namespace: string; name: string; value: number; dimensions: Record<string, string> }>;
}

export interface LocalTasksOptions {
  deployment: Deployment;
  clients: SimClients;
  record: SimRecord;
  /** Where the tasks' and functions' log lines go (stderr in the CLI). */
  log: (line: string) => void;
  /**
   * Runs each ECS task as Fargate would (task-sandbox.ts): the definition's user, a
   * read-only root, only its volumes writable, the image's environment. `false` runs the
   * worker as a plain child process of this one, which models none of that.
   * @default TaskSandbox.open(): containers/worker/Dockerfile as the image
   */
  sandbox?: TaskSandbox | false;
  /**
   * The image's ENTRYPOINT as this machine runs it; the container override's command
   * follows it.
   * @default node containers/worker/bin/strongroom.mjs (the worker CLI from the checkout)
   */
  entrypoint?: string[];
  /** IAM enforcement (infra/sim/iam-enforcement.ts). @default none: every call is allowed */
  iam?: TaskIam;
}

/** The hooks through which IAM enforcement sees each principal's calls and credentials. */
export interface TaskIam {
  /** Environment for a function's SDK clients: its role's key, the IAM gateway's endpoints. */
  functionEnv(fn: LambdaFunction): Record<string, string>;
  /** Environment for a task's container: its task role's key, the IAM gateway's endpoints. */
  taskEnv(definition: TaskDefinition, taskArn: string): Record<string, string>;
  /** Each throws the error Step Functions raises when the flow's role may not make the call. */
  authorizeInvoke(flow: Flow, fn: LambdaFunction): Promise<void>;
  authorizePublish(flow: Flow, topicArn: string): Promise<void>;
  authorizeRunTask(
    flow: Flow,
    request: { Cluster: string; PropagateTags?: string; VolumeConfigurations?: VolumeConfiguration[] },
    definition: TaskDefinition,
    taskArn: string,
  ): Promise<void>;
  /** Throws when the task's execution role may not read the secret (the task cannot start). */
  authorizeSecret(definition: TaskDefinition, valueFrom: string, taskArn: string): Promise<void>;
}

/**
 * A local handler for every Task state of a flow, chosen by its Resource as Step
 * Functions would dispatch it: a function ARN calls that function's real handler module
 * in this process, `ecs:runTask.sync` runs the worker CLI as Fargate would run the
 * task's container (task-sandbox.ts), and
 * `sns:publish` publishes to the SNS stand-in. A Task no handler fits is refused up
 * front: aws-local-stepfunctions would otherwise call real AWS for it.
 */
export class LocalTasks {
  private readonly handlers = new Map<string, Promise<LambdaHandler>>();
  private readonly running = new Set<RunningTask>();
  /** What each failed task reported, by task ARN (the Cause of its States.TaskFailed names it). */
  private readonly failures = new Map<string, WorkerError>();
  private readonly o: LocalTasksOptions;
  private readonly sandbox: TaskSandbox | false;

  constructor(options: LocalTasksOptions) {
    this.o = options;
    this.sandbox = options.sandbox ?? TaskSandbox.open();
  }

  handlersFor(flow: Flow): Record<string, LocalHandler> {
    const out: Record<string, LocalHandler> = {};
    for (const [name, state] of Object.entries(flow.definition.States)) {
      if (state.Type !== "Task") continue;
      const resource = String(state.Resource);
      const fn = this.o.deployment.functions.get(resource);
      const iam = this.o.iam;
      if (fn) {
        out[name] = async (input) => {
          await iam?.authorizeInvoke(flow, fn);
          return this.invoke(fn, input);
        };
      } else if (resource.endsWith(":states:::ecs:runTask.sync")) {
        out[name] = (input) => this.runTask(name, input, flow);
      } else if (resource.endsWith(":states:::sns:publish")) {
        out[name] = async (input) => {
          await iam?.authorizePublish(flow, (input as { TopicArn: string }).TopicArn);
          return this.publish(input);
        };
      } else throw new Error(`${flow.name}: state ${JSON.stringify(name)} calls ${resource}, which the sim cannot run`);
    }
    return out;
  }

  /**
   * The error the task with this ARN reported as it failed, or undefined (it succeeded,
   * never started, or printed no error). Its hint reads in the flow's input terms.
   */
  reportedBy(taskArn: string): WorkerError | undefined {
    return this.failures.get(taskArn);
  }

  /** Stops every task still running (the sim was interrupted). */
  stopAll(): void {
    for (const task of this.running) task.stop();
  }

  // ---- Lambda ------------------------------------------------------------------------

  private async invoke(fn: LambdaFunction, payload: Json): Promise<Json> {
    let handler = this.handlers.get(fn.arn);
    if (!handler) {
      handler = this.load(fn);
      this.handlers.set(fn.arn, handler);
    }
    const context = lambdaContext(fn);
    try {
      // The payload and the result cross a JSON boundary, as they do in AWS.
      const result = await (await handler)(JSON.parse(JSON.stringify(payload)), context);
      return JSON.parse(JSON.stringify(result ?? null)) as Json;
    } catch (err) {
      // Step Functions names a function's error by its type and carries Lambda's error
      // document as the Cause.
      const e = err instanceof Error ? err : new Error(String(err));
      throw named(e.name, JSON.stringify({ errorType: e.name, errorMessage: e.message, trace: [] }));
    }
  }

  /** The function's real module, given the environment the template gives it (a warm Lambda). */
  private async load(fn: LambdaFunction): Promise<LambdaHandler> {
    const mod = (await import(path.join(REPO_ROOT, "functions", fn.name, "handler.ts"))) as {
      createHandler: (deps: object) => LambdaHandler;
      depsFromEnv: (env: NodeJS.ProcessEnv) => Record<string, unknown>;
    };
    const deps = mod.depsFromEnv({ ...process.env, ...fn.environment, ...this.o.iam?.functionEnv(fn) });
    if (deps.metrics instanceof Metrics) {
      deps.metrics = new RecordingMetrics(this.o.record, fn.environment.POWERTOOLS_METRICS_NAMESPACE ?? "default");
    }
    return mod.createHandler(deps);
  }

  // ---- ECS ---------------------------------------------------------------------------

  /**
   * `ecs:runTask.sync`: the task definition's container, run as the worker CLI with the
   * definition's environment, its secrets fetched from the Secrets Manager stand-in, and
   * the request's command override. Resolves with the DescribeTasks shape once it
   * stops; a non-zero exit (or a task that could not start) fails with
   * States.TaskFailed and the task as JSON, as Step Functions does.
   */
  private async runTask(stateName: string, input: Json, flow: Flow): Promise<Json> {
    const request = input as unknown as {
      Cluster: string;
      PropagateTags?: string;
      TaskDefinition: string;
      Overrides?: {
        ContainerOverrides?: Array<{ Name: string; Command?: string[] }>;
        EphemeralStorage?: { SizeInGiB?: unknown };
      };
      VolumeConfigurations?: VolumeConfiguration[];
    };
    const definition = this.o.deployment.taskDefinitions.get(request.TaskDefinition);
    if (!definition) {
      throw named("ECS.InvalidParameterException", `TaskDefinition not found: ${request.TaskDefinition}`);
    }
    const storageProblem =
      ephemeralStorageProblem(request.Overrides?.EphemeralStorage) ??
      volumeConfigurationsProblem(definition.volumes, request.VolumeConfigurations);
    if (storageProblem) throw named("ECS.InvalidParameterException", storageProblem);
    const { region, account } = this.o.deployment.place;
    const clusterName = request.Cluster.split("/").pop() ?? "cluster";
    const task = {
      TaskArn: `arn:aws:ecs:${region}:${account}:task/${clusterName}/${randomUUID().replaceAll("-", "")}`,
      TaskDefinitionArn: definition.arn,
      ClusterArn: request.Cluster,
      LaunchType: "FARGATE",
      LastStatus: "STOPPED",
      DesiredStatus: "STOPPED",
      Overrides: request.Overrides ?? {},
      StopCode: "EssentialContainerExited",
      StoppedReason: "Essential container in task exited",
      Containers: [] as Array<{ Name: string; LastStatus: string; ExitCode?: number; Reason?: string }>,
    };
    await this.o.iam?.authorizeRunTask(flow, request, definition, task.TaskArn);
    const container = definition.containers[0] as ContainerDefinition;
    const override = request.Overrides?.ContainerOverrides?.find((c) => c.Name === container.Name);
    let secrets: Record<string, string>;
    try {
      // ECS fetches each secret once, however many variables read keys of it.
      const secretArns = new Set((container.Secrets ?? []).map((s) => secretArnOf(s.ValueFrom).arn));
      for (const arn of secretArns) await this.o.iam?.authorizeSecret(definition, arn, task.TaskArn);
      secrets = await this.fetchSecrets(container);
    } catch (err) {
      // ECS never starts the container: no exit code, TaskFailedToStart.
      task.StopCode = "TaskFailedToStart";
      task.StoppedReason = `ResourceInitializationError: unable to pull secrets: ${(err as Error).message}`;
      task.Containers.push({ Name: container.Name, LastStatus: "STOPPED", Reason: "ResourceInitializationError" });
      throw named("States.TaskFailed", JSON.stringify(task));
    }
    // A task's TLS settings (infra/constructs/tls.ts) name CA bundles inside the worker
    // image, and the sim's PostgreSQL is no RDS instance: its tasks connect as libpq does
    // by default (prefer). TLS to the database is not emulated; test/integration/tls.test.ts
    // runs the worker with those settings against a server with a certificate.
    const environment = Object.fromEntries(
      (container.Environment ?? [])
        .filter((e) => e.Name !== "PGSSLMODE" && e.Name !== "PGSSLROOTCERT")
        .map((e) => [e.Name, e.Value]),
    );
    const command = override?.Command ?? [];
    let ran: { exitCode: number; reported: WorkerError | undefined };
    try {
      ran = await this.runContainer(stateName, definition, container, command, {
        ...environment,
        ...secrets,
        ...this.o.iam?.taskEnv(definition, task.TaskArn),
      });
    } catch (err) {
      if (!(err instanceof ImageConfigError)) throw err;
      // Docker cannot start a container whose user the image lacks.
      task.StopCode = "TaskFailedToStart";
      task.StoppedReason = `CannotStartContainerError: ${err.message}`;
      task.Containers.push({ Name: container.Name, LastStatus: "STOPPED", Reason: "CannotStartContainerError" });
      throw named("States.TaskFailed", JSON.stringify(task));
    }
    task.Containers.push({ Name: container.Name, LastStatus: "STOPPED", ExitCode: ran.exitCode });
    if (ran.exitCode !== 0) {
      // As in AWS, the Cause is the task, not its logs; the sim keeps what the worker said.
      if (ran.reported) {
        const { hint, ...rest } = ran.reported;
        this.failures.set(task.TaskArn, {
          ...rest,
          ...(hint ? { hint: hintInFlowTerms(command[0] ?? "", hint) } : {}),
        });
      }
      throw named("States.TaskFailed", JSON.stringify(task));
    }
    return task as unknown as Json;
  }

  private async fetchSecrets(container: ContainerDefinition): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const s of container.Secrets ?? []) {
      const ref = secretArnOf(s.ValueFrom);
      const got = await this.o.clients.secrets.send(new GetSecretValueCommand({ SecretId: ref.name }));
      const text = got.SecretString ?? "";
      if (!ref.jsonKey) {
        out[s.Name] = text;
        continue;
      }
      let value: unknown;
      try {
        value = (JSON.parse(text) as Record<string, unknown>)[ref.jsonKey];
      } catch {
        throw new Error(`secret ${ref.name} is not JSON, so it has no key ${ref.jsonKey}`);
      }
      if (value === undefined || value === null) throw new Error(`secret ${ref.name} has no key ${ref.jsonKey}`);
      out[s.Name] = String(value);
    }
    return out;
  }

  /**
   * The container, in the task sandbox as Fargate runs it, or (`sandbox: false`) as a plain
   * child process: its exit code, and the last error it reported on its output.
   */
  private async runContainer(
    stateName: string,
    definition: TaskDefinition,
    container: ContainerDefinition,
    command: string[],
    variables: Record<string, string>,
  ): Promise<{ exitCode: number; reported: WorkerError | undefined }> {
    const task = this.sandbox
      ? this.sandbox.run({
          definition: container,
          volumes: definition.volumes,
          argv: [...(this.o.entrypoint ?? [process.execPath, WORKER_CLI]), ...command],
          variables,
          agentVariables: this.agentVariables(),
        })
      : plainChild([...(this.o.entrypoint ?? [process.execPath, WORKER_CLI]), ...command], variables);
    this.running.add(task);
    let reported: WorkerError | undefined;
    const read = [task.stdout, task.stderr].map((stream) => {
      const lines = createInterface({ input: stream });
      lines.on("line", (line) => {
        this.o.log(`[${stateName}] ${line}`);
        reported = workerErrorIn(line) ?? reported;
      });
      return new Promise<void>((resolve) => lines.once("close", resolve));
    });
    try {
      const exitCode = await task.exitCode;
      // Every line read, the last one included, before the error is taken as the task's.
      await Promise.all(read);
      return { exitCode, reported };
    } finally {
      this.running.delete(task);
    }
  }

  /**
   * What a sandboxed container gets besides the image's ENV and its definition's
   * variables: what the ECS agent sets on Fargate, and the sim's stand-ins for what it
   * cannot give. Left out: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and
   * ECS_CONTAINER_METADATA_URI(_V4), since no credentials or metadata endpoint runs here.
   */
  private agentVariables(): Record<string, string> {
    const env = process.env;
    const { region } = this.o.deployment.place;
    const passed = Object.entries(env).filter(
      ([k, v]) =>
        v !== undefined &&
        // The stand-ins' endpoints, where a task reaches AWS's.
        (k === "AWS_ENDPOINT_URL" ||
          k.startsWith("AWS_ENDPOINT_URL_") ||
          // The credentials the sim's own clients give the stand-ins, in place of the task
          // role's, which the SDK would fetch from the ECS credentials endpoint.
          ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"].includes(k) ||
          // Where this machine keeps the PostgreSQL majors the image installs under
          // /usr/lib/postgresql, when not there too.
          k === "PG_BIN_DIRS"),
    ) as Array<[string, string]>;
    return {
      // The ECS agent's: the task's region and platform.
      AWS_REGION: region,
      AWS_DEFAULT_REGION: region,
      AWS_EXECUTION_ENV: "AWS_ECS_FARGATE",
      ...Object.fromEntries(passed),
    };
  }

  // ---- SNS ---------------------------------------------------------------------------

  private async publish(input: Json): Promise<Json> {
    const p = input as { TopicArn: string; Message: unknown; Subject?: string };
    // Step Functions sends a JSON Message as its serialization.
    const message = typeof p.Message === "string" ? p.Message : JSON.stringify(p.Message);
    const sent = await this.o.clients.sns.send(
      new PublishCommand({ TopicArn: p.TopicArn, Message: message, ...(p.Subject ? { Subject: p.Subject } : {}) }),
    );
    this.o.record.published.push({
      topicArn: p.TopicArn,
      message,
      ...(p.Subject ? { subject: p.Subject } : {}),
    });
    return { MessageId: sent.MessageId ?? "" };
  }
}

type LambdaHandler = (event: unknown, context: Context) => Promise<unknown>;

/**
 * The worker as a plain child process of the sim (`sandbox: false`): the caller's user
 * and filesystem, a scratch directory as home and temp, the image's settings by hand,
 * the stand-ins' endpoints and credentials, then the definition's variables.
 */
function plainChild(argv: string[], variables: Record<string, string>): RunningTask {
  const scratch = mkdtempSync(path.join(os.tmpdir(), "strongroom-task-"));
  const passed = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => k.startsWith("AWS_") || ["PATH", "LANG", "PG_BIN_DIRS", "PYTHON"].includes(k),
    ),
  );
  const env = {
    ...passed,
    HOME: scratch,
    TMPDIR: scratch,
    NODE_ENV: "production",
    STRONGROOM_STAGING_DIR: scratch,
    ...variables,
  };
  const [file, ...args] = argv as [string, ...string[]];
  const child = spawn(file, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  const exitCode = new Promise<number>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => {
      rmSync(scratch, { recursive: true, force: true });
      // Like a container runtime: a signal is reported as 128 + its number.
      resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0));
    });
  });
  return {
    stdout: child.stdout,
    stderr: child.stderr,
    exitCode,
    stop: () => child.kill("SIGTERM"),
  };
}

/**
 * The error in one line of a worker's output: its --json result (`{"ok": false, "error":
 * {"name", "message", "hint"}}`) or its error log line (`{"level": "ERROR", "error":
 * name, "message", "hint"}`, main.ts's printError); undefined for any other line.
 */
export function workerErrorIn(line: string): WorkerError | undefined {
  if (!line.startsWith("{")) return undefined;
  let doc: { ok?: unknown; level?: unknown; error?: unknown; message?: unknown; hint?: unknown };
  try {
    doc = JSON.parse(line);
  } catch {
    return undefined;
  }
  const text = (value: unknown) => (typeof value === "string" && value !== "" ? value : undefined);
  const of = (name: unknown, message: unknown, hint: unknown): WorkerError | undefined => {
    const n = text(name);
    if (n === undefined) return undefined;
    const h = text(hint);
    return { name: n, message: text(message) ?? "", ...(h ? { hint: h } : {}) };
  };
  if (doc.ok === false && typeof doc.error === "object" && doc.error !== null) {
    const e = doc.error as { name?: unknown; message?: unknown; hint?: unknown };
    return of(e.name, e.message, e.hint);
  }
  if (doc.level === "ERROR") return of(doc.error, doc.message, doc.hint);
  return undefined;
}

/** An error Step Functions matches by name, with its Cause as the message. */
function named(name: string, cause: string): Error {
  const err = new Error(cause);
  err.name = name;
  return err;
}

/** The Lambda runtime's context object, in the shape Powertools reads. */
function lambdaContext(fn: LambdaFunction): Context {
  const deadline = Date.now() + fn.timeoutSeconds * 1000;
  const functionName = fn.arn.split(":").pop() ?? fn.name;
  return {
    functionName,
    functionVersion: "$LATEST",
    invokedFunctionArn: fn.arn,
    memoryLimitInMB: "512",
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: "sim",
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/** Powertools Metrics whose EMF documents are kept for the sim's report instead of printed. */
export class RecordingMetrics extends Metrics {
  private readonly record: SimRecord;

  constructor(record: SimRecord, namespace: string) {
    super({ namespace, serviceName: METRICS_SERVICE });
    this.record = record;
  }

  override publishStoredMetrics(): this {
    if (this.hasStoredMetrics()) {
      const emf = this.serializeMetrics() as unknown as {
        _aws: {
          CloudWatchMetrics: Array<{ Namespace: string; Dimensions: string[][]; Metrics: Array<{ Name: string }> }>;
        };
      } & Record<string, unknown>;
      for (const directive of emf._aws.CloudWatchMetrics) {
        const dimensions = Object.fromEntries((directive.Dimensions[0] ?? []).map((d) => [d, String(emf[d])]));
        for (const m of directive.Metrics) {
          this.record.metrics.push({
            namespace: directive.Namespace,
            name: m.Name,
            value: Number(emf[m.Name]),
            dimensions,
          });
        }
      }
    }
    this.clearMetrics();
    this.clearDimensions();
    this.clearMetadata();
    return this;
  }
}

/**
 * RunTask's `overrides.ephemeralStorage`, as ECS checks it (the ECS API reference,
 * EphemeralStorage: "The minimum supported value is 21 GiB and the maximum supported
 * value is 200 GiB"): a whole number of GiB in that range, or ECS refuses the call.
 */
/** RunTask's volumeConfigurations[]: a volume the task definition left to be configured at launch. */
export interface VolumeConfiguration {
  Name?: unknown;
  ManagedEBSVolume?: {
    RoleArn?: unknown;
    SizeInGiB?: unknown;
    SnapshotId?: unknown;
    VolumeType?: unknown;
    Iops?: unknown;
    Throughput?: unknown;
    FilesystemType?: unknown;
  };
}

const EBS_SIZES: Record<string, { min: number; max: number }> = {
  gp3: { min: 1, max: 16_384 },
  gp2: { min: 1, max: 16_384 },
  io1: { min: 4, max: 16_384 },
  io2: { min: 4, max: 16_384 },
  st1: { min: 125, max: 16_384 },
  sc1: { min: 125, max: 16_384 },
  standard: { min: 1, max: 1024 },
};

/**
 * RunTask's `volumeConfigurations`, as ECS checks them against the task definition (the
 * ECS API reference, TaskVolumeConfiguration and TaskManagedEBSVolumeConfiguration; the
 * EBS user guide's volume types): each names the definition's volume configured at
 * launch; a managed EBS volume has an infrastructure role and, without a snapshot, a
 * size in its type's range; gp3 throughput is 125 to 1,000 MiB/s and at most a quarter
 * of its IOPS (3,000 by default); Linux filesystems only. The sim is stricter than ECS
 * documents in one place: a definition's volume configured at launch that the call
 * leaves unconfigured is refused, where ECS's behaviour is not documented.
 */
export function volumeConfigurationsProblem(
  volumes: TaskVolume[],
  configurations: VolumeConfiguration[] | undefined,
): string | undefined {
  const atLaunch = volumes.filter((v) => v.ConfiguredAtLaunch === true).map((v) => v.Name);
  const given = configurations ?? [];
  for (const c of given) {
    if (typeof c.Name !== "string" || !atLaunch.includes(c.Name)) {
      return `The task definition has no volume ${JSON.stringify(c.Name)} with configuredAtLaunch set to true`;
    }
    const ebs = c.ManagedEBSVolume;
    if (!ebs) return `Volume ${c.Name}: managedEBSVolume is required`;
    if (typeof ebs.RoleArn !== "string" || !/^arn:aws[a-z-]*:iam::\d{12}:role\//.test(ebs.RoleArn)) {
      return `Volume ${c.Name}: managedEBSVolume.roleArn must be an IAM role ARN; got ${JSON.stringify(ebs.RoleArn)}`;
    }
    const type = ebs.VolumeType ?? "gp3";
    const range = EBS_SIZES[String(type)];
    if (!range) return `Volume ${c.Name}: unknown volumeType ${JSON.stringify(type)}`;
    if (ebs.SnapshotId === undefined || ebs.SizeInGiB !== undefined) {
      const size = ebs.SizeInGiB;
      if (!Number.isInteger(size) || (size as number) < range.min || (size as number) > range.max) {
        return `Volume ${c.Name}: sizeInGiB for ${String(type)} must be between ${range.min} and ${range.max}; got ${JSON.stringify(size)}`;
      }
    }
    if (ebs.Throughput !== undefined) {
      const iops = ebs.Iops ?? 3000;
      const t = ebs.Throughput;
      if (type !== "gp3") return `Volume ${c.Name}: throughput applies to gp3 volumes only`;
      if (!Number.isInteger(t) || (t as number) < 125 || (t as number) > 1000 || (t as number) > (iops as number) / 4) {
        return `Volume ${c.Name}: gp3 throughput must be 125 to 1000 MiB/s and at most iops/4 (${String(iops)} IOPS); got ${JSON.stringify(t)}`;
      }
    }
    if (ebs.FilesystemType !== undefined && !["ext3", "ext4", "xfs"].includes(String(ebs.FilesystemType))) {
      return `Volume ${c.Name}: filesystemType must be ext3, ext4 or xfs on Linux; got ${JSON.stringify(ebs.FilesystemType)}`;
    }
  }
  const missing = atLaunch.filter((name) => !given.some((c) => c.Name === name));
  if (missing.length > 0) {
    return `The task definition's volume ${missing.join(", ")} is configured at launch, and this call configures none (the sim refuses it)`;
  }
  return undefined;
}

export function ephemeralStorageProblem(override: { SizeInGiB?: unknown } | undefined): string | undefined {
  if (override === undefined) return undefined;
  const size = override.SizeInGiB;
  return Number.isInteger(size) && (size as number) >= 21 && (size as number) <= 200
    ? undefined
    : `The ephemeral storage size must be between 21 GiB and 200 GiB; got ${JSON.stringify(size)}`;
}
