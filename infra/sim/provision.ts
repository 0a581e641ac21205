import { CreateTableCommand, DynamoDBClient, ResourceInUseException } from "@aws-sdk/client-dynamodb";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import {
  CreateSecretCommand,
  PutSecretValueCommand,
  ResourceExistsException,
  SecretsManagerClient,
} from "@aws-sdk/client-secrets-manager";
import { CreateTopicCommand, SNSClient } from "@aws-sdk/client-sns";
import { PutParameterCommand, SSMClient } from "@aws-sdk/client-ssm";
import { InvalidConfigError } from "#core/errors.ts";
import { s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import type { RdsSecret } from "../config/load-config.ts";
import { type Deployment, secretArnOf } from "./deployment.ts";

/** The SDK clients the sim talks to the stand-ins with (endpoints from AWS_ENDPOINT_URL_*). */
export interface SimClients {
  s3: S3Client;
  dynamodb: DynamoDBClient;
  sns: SNSClient;
  secrets: SecretsManagerClient;
  ssm: SSMClient;
}

export function simClients(): SimClients {
  return {
    s3: new S3Client(s3ClientConfigFromEnv()),
    dynamodb: new DynamoDBClient({}),
    sns: new SNSClient({}),
    secrets: new SecretsManagerClient({}),
    ssm: new SSMClient({}),
  };
}

/**
 * Creates what the template declares, in the stand-ins: the store's bucket, the tables
 * (their key schemas as synthesized), the alarm topic, and every secret a task definition
 * reads, with its value from the config's `sim.secrets`, and the settings parameters
 * the plan functions read. Idempotent, so a second run
 * against the same stand-ins keeps their data.
 */
export async function provision(
  deployment: Deployment,
  clients: SimClients,
  secretValues: Record<string, RdsSecret | string>,
  configFile: string,
): Promise<void> {
  const missing = deployment.secretArns.filter((arn) => secretValues[arn] === undefined);
  if (missing.length > 0) {
    throw new InvalidConfigError(`${configFile}: sim.secrets has no value for ${missing.join(", ")}`, {
      hint: 'add each under "sim": {"secrets": {"<arn>": {"username", "password"}}} (as RDS writes them; host, port and dbname where the config\'s secretHas says so), and the identity secret as the age identity, a string',
    });
  }
  for (const bucket of deployment.buckets) {
    await clients.s3.send(new CreateBucketCommand({ Bucket: bucket })).catch((err: Error) => {
      if (err.name !== "BucketAlreadyOwnedByYou" && err.name !== "BucketAlreadyExists") throw err;
    });
  }
  for (const table of deployment.tables) {
    await clients.dynamodb
      .send(
        new CreateTableCommand({
          TableName: table.name,
          KeySchema: table.keySchema.map((k) => ({ AttributeName: k.AttributeName, KeyType: k.KeyType as "HASH" })),
          AttributeDefinitions: table.attributes.map((a) => ({
            AttributeName: a.AttributeName,
            AttributeType: a.AttributeType as "S",
          })),
          BillingMode: "PAY_PER_REQUEST",
        }),
      )
      .catch((err: unknown) => {
        if (!(err instanceof ResourceInUseException)) throw err;
      });
  }
  for (const topic of deployment.topics) {
    const created = await clients.sns.send(new CreateTopicCommand({ Name: topic.name }));
    if (created.TopicArn !== topic.arn) {
      throw new Error(
        `the SNS stand-in named the topic ${created.TopicArn}, the template ${topic.arn}: set AWS_REGION`,
      );
    }
  }
  for (const p of deployment.parameters) {
    await clients.ssm.send(new PutParameterCommand({ Name: p.name, Value: p.value, Type: "String", Overwrite: true }));
  }
  for (const arn of deployment.secretArns) {
    const value = secretValues[arn] as RdsSecret | string;
    const SecretString = typeof value === "string" ? value : JSON.stringify(value);
    const { name } = secretArnOf(arn);
    await clients.secrets.send(new CreateSecretCommand({ Name: name, SecretString })).catch(async (err: unknown) => {
      if (!(err instanceof ResourceExistsException)) throw err;
      await clients.secrets.send(new PutSecretValueCommand({ SecretId: name, SecretString }));
    });
  }
}
