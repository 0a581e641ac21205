import type { TestProject } from "vitest/node";
import { startDynamoDbLocal, startMoto } from "./aws.ts";
import { startCluster } from "./postgres.ts";

/**
 * Starts the local stand-ins once per test run: PostgreSQL (system major), moto S3,
 * DynamoDB Local, all on 127.0.0.1 and free ports, stopped by PID at teardown.
 * Where AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_DYNAMODB are set (LocalStack), those are
 * used instead of starting moto / DynamoDB Local.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
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

declare module "vitest" {
  export interface ProvidedContext {
    pgUrl: string;
    pgBinDir: string;
    s3Endpoint: string;
    dynamodbEndpoint: string;
  }
}
