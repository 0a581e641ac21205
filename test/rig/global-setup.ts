import { spawnSync } from "node:child_process";
import type { TestProject } from "vitest/node";
import { startCluster } from "#worker/pg/scratch-cluster.ts";
import { startDynamoDbLocal, startMoto } from "../../infra/sim/stand-ins.ts";

/**
 * Starts the local stand-ins once per test run: PostgreSQL (system major), moto S3,
 * DynamoDB Local, all on 127.0.0.1 and free ports, stopped by PID at teardown.
 * Where AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_DYNAMODB are set (LocalStack), those are
 * used instead of starting moto / DynamoDB Local.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  requireTools();
  const stops: Array<() => Promise<void>> = [];
  const teardown = async () => {
    for (const stop of stops.reverse()) await stop().catch((err) => console.error("rig teardown:", err));
  };
  try {
    process.env.AWS_ACCESS_KEY_ID ??= "test";
    process.env.AWS_SECRET_ACCESS_KEY ??= "test";
    process.env.AWS_REGION ??= "us-east-1";

    const [cluster, s3, dynamo] = await Promise.all([
      startCluster(),
      process.env.AWS_ENDPOINT_URL_S3 ? undefined : startMoto(),
      process.env.AWS_ENDPOINT_URL_DYNAMODB ? undefined : startDynamoDbLocal(),
    ]);
    stops.push(cluster.stop);
    if (s3) stops.push(s3.stop);
    if (dynamo) stops.push(dynamo.stop);

    process.env.AWS_ENDPOINT_URL_S3 = s3?.url ?? process.env.AWS_ENDPOINT_URL_S3;
    process.env.AWS_ENDPOINT_URL_DYNAMODB = dynamo?.url ?? process.env.AWS_ENDPOINT_URL_DYNAMODB;
    project.provide("pgUrl", cluster.url);
    project.provide("pgBinDir", cluster.binDir);
    project.provide("s3Endpoint", process.env.AWS_ENDPOINT_URL_S3 as string);
    project.provide("dynamodbEndpoint", process.env.AWS_ENDPOINT_URL_DYNAMODB as string);
    return teardown;
  } catch (err) {
    await teardown();
    throw err;
  }
}

/** Fails the run at once, naming what to install, rather than with a stand-in's ENOENT later. */
function requireTools(): void {
  const python = process.env.PYTHON ?? "python3";
  const needs: Array<[what: string, ok: boolean]> = [
    ["the age CLI (apt package age)", runs("age", ["--version"])],
    ["the zstd CLI (apt package zstd)", runs("zstd", ["--version"])],
    ["openssl (apt package openssl)", runs("openssl", ["version"])],
    // npm run sim runs each ECS task in it (infra/sim/task-sandbox.ts).
    ["bubblewrap (apt package bubblewrap)", runs("bwrap", ["--version"])],
  ];
  if (!process.env.AWS_ENDPOINT_URL_DYNAMODB) {
    needs.push(["a Java runtime for DynamoDB Local (apt package default-jre-headless)", runs("java", ["-version"])]);
  }
  if (!process.env.AWS_ENDPOINT_URL_S3) {
    needs.push([
      `moto for S3 (pip install 'moto[server]==5.2.1', so that ${python} can import moto.server)`,
      runs(python, ["-c", "import moto.server"]),
    ]);
  }
  const missing = needs.filter(([, ok]) => !ok).map(([what]) => what);
  if (missing.length > 0) {
    throw new Error(`the tests need ${missing.join("; ")}. ./scripts/bootstrap.sh --tests installs them.`);
  }
}

function runs(command: string, args: string[]): boolean {
  return spawnSync(command, args, { stdio: "ignore", timeout: 30_000 }).status === 0;
}

declare module "vitest" {
  export interface ProvidedContext {
    pgUrl: string;
    pgBinDir: string;
    s3Endpoint: string;
    dynamodbEndpoint: string;
  }
}
