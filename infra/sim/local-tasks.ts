import { type ChildProcess, spawn } from "node:child_process";
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
import { METRICS_SERVICE } from "#core/flows/metrics.ts";
import type { ContainerDefinition, Deployment, Flow, LambdaFunction } from "./deployment.ts";
import { secretArnOf } from "./deployment.ts";
import type { SimClients } from "./provision.ts";

const REPO_ROOT = path.resolve(import.meta.dirname, "../..");
const WORKER_CLI = path.join(REPO_ROOT, "containers/worker/bin/strongroom.mjs");

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type LocalHandler = (input: Json) => Promise<Json>;

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
}

/**
 * A local handler for every Task state of a flow, chosen by its Resource as Step
 * Functions would dispatch it: a function ARN calls that function's real handler module
 * in this process, `ecs:runTask.sync` runs the worker CLI as a child process, and
 * `sns:publish` publishes to the SNS stand-in. A Task no handler fits is refused up
 * front: aws-local-stepfunctions would otherwise call real AWS for it.
 */
export class LocalTasks {
  private readonly handlers = new Map<string, Promise<LambdaHandler>>();
  private readonly children = new Set<ChildProcess>();
  private readonly o: LocalTasksOptions;

  constructor(options: LocalTasksOptions) {
    this.o = options;
  }

  handlersFor(flow: Flow): Record<string, LocalHandler> {
    const out: Record<string, LocalHandler> = {};
    for (const [name, state] of Object.entries(flow.definition.States)) {
      if (state.Type !== "Task") continue;
      const resource = String(state.Resource);
      const fn = this.o.deployment.functions.get(resource);
      if (fn) out[name] = (input) => this.invoke(fn, input);
      else if (resource.endsWith(":states:::ecs:runTask.sync")) out[name] = (input) => this.runTask(name, input);
      else if (resource.endsWith(":states:::sns:publish")) out[name] = (input) => this.publish(input);
      else throw new Error(`${flow.name}: state ${JSON.stringify(name)} calls ${resource}, which the sim cannot run`);
    }
    return out;
  }

  /** Stops every task still running (the sim was interrupted). */
  stopAll(): void {
    for (const child of this.children) child.kill("SIGTERM");
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
    const deps = mod.depsFromEnv({ ...process.env, ...fn.environment });
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
  private async runTask(stateName: string, input: Json): Promise<Json> {
    const request = input as {
      Cluster: string;
      TaskDefinition: string;
      Overrides?: { ContainerOverrides?: Array<{ Name: string; Command?: string[] }> };
    };
    const definition = this.o.deployment.taskDefinitions.get(request.TaskDefinition);
    if (!definition) {
      throw named("ECS.InvalidParameterException", `TaskDefinition not found: ${request.TaskDefinition}`);
    }
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
    const container = definition.containers[0] as ContainerDefinition;
    const override = request.Overrides?.ContainerOverrides?.find((c) => c.Name === container.Name);
    let secrets: Record<string, string>;
    try {
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
    const exitCode = await this.runContainer(stateName, override?.Command ?? [], { ...environment, ...secrets });
    task.Containers.push({ Name: container.Name, LastStatus: "STOPPED", ExitCode: exitCode });
    if (exitCode !== 0) throw named("States.TaskFailed", JSON.stringify(task));
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
   * The container: a fresh home and scratch directory (a task starts from the image,
   * not from this machine's ~/.pgpass), the image's settings, the stand-ins' endpoints
   * and credentials in place of the task role, then the definition's variables.
   */
  private runContainer(stateName: string, command: string[], variables: Record<string, string>): Promise<number> {
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
    const child = spawn(process.execPath, [WORKER_CLI, ...command], { env, stdio: ["ignore", "pipe", "pipe"] });
    this.children.add(child);
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on("line", (line) => this.o.log(`[${stateName}] ${line}`));
    }
    return new Promise<number>((resolve, reject) => {
      child.once("error", reject);
      child.once("close", (code, signal) => {
        this.children.delete(child);
        rmSync(scratch, { recursive: true, force: true });
        // Like a container runtime: a signal is reported as 128 + its number.
        resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0));
      });
    });
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
