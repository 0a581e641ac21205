import { writeFile } from "node:fs/promises";
import * as path from "node:path";
import { Readable } from "node:stream";
import {
  BatchWriteItemCommand,
  DeleteItemCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  UpdateItemCommand,
} from "@aws-sdk/client-dynamodb";
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { clientConfigFromEnv } from "#core/aws-env.ts";
import { AccessDeniedError } from "#core/errors.ts";
import { newBackupId, objectKey } from "#core/keys.ts";
import { getBytes } from "#core/store/object-store.ts";
import { S3Store, s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import {
  type Deployment,
  type LambdaFunction,
  readDeployment,
  type TaskDefinition,
} from "../../infra/sim/deployment.ts";
import { IamEnforcement } from "../../infra/sim/iam-enforcement.ts";
import type { ResolvedResource } from "../../infra/sim/iam-policies.ts";
import { provision, simClients } from "../../infra/sim/provision.ts";
import { dynamoClient } from "../helpers/dynamo.ts";
import { identityFile } from "../helpers/fixture.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * The IAM gateway of npm run sim, in front of the rig's moto and DynamoDB Local, with the
 * policies of a synthesized template. Each principal calls through it with the SDK, as
 * the functions and tasks do, with the credentials and endpoints the sim gives them; what
 * the gateway refuses never reaches the stand-in, and what it forwards does.
 */
const ACCOUNT = "123456789012";
const ARN = `arn:aws:secretsmanager:us-east-1:${ACCOUNT}:secret`;
const ADMIN = `arn:aws:iam::${ACCOUNT}:role/test-admin`;

let deployment: Deployment;
let iam: IamEnforcement;
let storeUrl: string;
let auditTable: string;
let catalogTable: string;

/** A role with every DynamoDB and S3 action, added beside the template's: the table's own policy must still hold. */
const admin: ResolvedResource = {
  logicalId: "TestAdmin",
  type: "AWS::IAM::Role",
  ref: "test-admin",
  arn: ADMIN,
  properties: {
    Policies: [
      {
        PolicyName: "everything",
        PolicyDocument: {
          Version: "2012-10-17",
          Statement: [{ Effect: "Allow", Action: ["dynamodb:*", "s3:*"], Resource: "*" }],
        },
      },
    ],
  },
};

beforeAll(async () => {
  process.env.AWS_ENDPOINT_URL_SNS = inject("s3Endpoint");
  process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = inject("s3Endpoint");
  process.env.AWS_ENDPOINT_URL_SSM = inject("s3Endpoint");
  const key = await identityFile();
  const rds = { host: "127.0.0.1", port: 5432, username: "u", password: "p", dbname: "d" };
  const secrets = {
    [`${ARN}:iam/identity-AbCdEf`]: key.identity,
    [`${ARN}:iam/shop-AbCdEf`]: rds,
    [`${ARN}:iam/billing-AbCdEf`]: rds,
  };
  const configFile = path.join(await tempDir("strongroom-iam-"), "sim.config.json");
  await writeFile(
    configFile,
    JSON.stringify({
      // Unique per run: the stand-ins are shared with the rest of the suite.
      name: `iam${process.pid}`,
      prefix: "pg",
      bucket: { create: true },
      recipients: [key.recipient],
      identitySecretArn: `${ARN}:iam/identity-AbCdEf`,
      network: { create: true },
      databases: [
        { id: "shop", secretArn: `${ARN}:iam/shop-AbCdEf`, secretHas: ["host", "port", "dbname"] },
        { id: "billing", secretArn: `${ARN}:iam/billing-AbCdEf`, secretHas: ["host", "port", "dbname"] },
      ],
      sim: { secrets },
    }),
  );
  deployment = readDeployment(configFile, { account: ACCOUNT, region: process.env.AWS_REGION ?? "us-east-1" });
  await provision(deployment, simClients(), secrets, configFile);
  iam = await IamEnforcement.start(
    { ...deployment, resources: [...deployment.resources, admin] },
    { s3: inject("s3Endpoint"), dynamodb: inject("dynamodbEndpoint") },
    process.env.AWS_ACCESS_KEY_ID ?? "test",
  );
  storeUrl = fn("retention-prune").environment.STORE_URL as string;
  auditTable = deployment.tables.find((t) => t.name.includes("Audit"))?.name as string;
  catalogTable = deployment.tables.find((t) => t.name.includes("Catalog"))?.name as string;
}, 120_000);

afterAll(async () => {
  await iam?.stop();
});

function fn(name: string): LambdaFunction {
  const found = [...deployment.functions.values()].find((f) => f.name === name);
  expect(found, name).toBeDefined();
  return found as LambdaFunction;
}

/** The task definition of a duty (`backup`, `restore`, `verify`) for a database: family `<stack>_<duty>_<db>`. */
function taskDefinition(duty: string, databaseId: string): TaskDefinition {
  const family = new RegExp(`:task-definition/[^/:]*_${duty}_${databaseId}:\\d+$`);
  const found = [...deployment.taskDefinitions.values()].find((d) => family.test(d.arn));
  expect(found, `${duty} ${databaseId}`).toBeDefined();
  return found as TaskDefinition;
}

/** What a task of the definition runs with: the sim's environment, then its task role's. */
function taskEnv(duty: string, databaseId: string): NodeJS.ProcessEnv {
  const arn = `arn:aws:ecs:us-east-1:${ACCOUNT}:task/cluster/${duty}${databaseId}0123456789`;
  return { ...process.env, ...iam.taskEnv(taskDefinition(duty, databaseId), arn) };
}

function s3As(env: NodeJS.ProcessEnv): S3Client {
  return new S3Client(s3ClientConfigFromEnv(env));
}

function dynamoAs(env: NodeJS.ProcessEnv): DynamoDBClient {
  return new DynamoDBClient(clientConfigFromEnv(env, "DYNAMODB"));
}

/** The store as the rig's own client reaches it, past the gateway. */
function adminStore(): S3Store {
  return new S3Store(storeUrl, { client: new S3Client(s3ClientConfigFromEnv()) });
}

describe("the backup task's role, as the IAM gateway enforces it", () => {
  const backupId = newBackupId(new Date());
  const bucket = () => new URL(storeUrl).host;

  it("puts a backup (a multipart upload) and its manifest with If-None-Match, and lists its own backups", async () => {
    const store = new S3Store(storeUrl, { client: s3As(taskEnv("backup", "shop")) });
    const dump = Buffer.alloc(9 * 1024 * 1024, 7);
    // 9 MiB in 8 MiB parts: CreateMultipartUpload, two UploadParts, Complete.
    await store.put(objectKey("shop", backupId, "dump"), Readable.from([dump]), { expectedBytes: dump.length });
    await store.putIfAbsent(objectKey("shop", backupId, "manifest"), "{}");
    expect((await store.list(`shop/backups/${backupId}/`)).objects.map((o) => o.key).sort()).toEqual([
      objectKey("shop", backupId, "dump"),
      objectKey("shop", backupId, "manifest"),
    ]);
    expect(Buffer.from(await getBytes(adminStore(), objectKey("shop", backupId, "dump"))).equals(dump)).toBe(true);
    const denied = iam.calls.filter((c) => c.decision !== "Allowed");
    expect(denied).toEqual([]);
    expect(iam.calls.filter((c) => c.action === "s3:PutObject").length).toBeGreaterThanOrEqual(4);
  });

  it("cannot delete a backup: 403 AccessDenied, and the object is still there", async () => {
    const store = new S3Store(storeUrl, { client: s3As(taskEnv("backup", "shop")) });
    const key = objectKey("shop", backupId, "dump");
    await expect(store.delete(key)).rejects.toBeInstanceOf(AccessDeniedError);
    expect(iam.calls.at(-1)).toMatchObject({
      action: "s3:DeleteObject",
      resource: `arn:aws:s3:::${bucket()}/pg/${key}`,
      decision: "ImplicitlyDenied",
      message: expect.stringMatching(/because no identity-based policy allows the s3:DeleteObject action$/),
    });
    expect((await adminStore().list(`shop/backups/${backupId}/`)).objects.length).toBe(2);
  });

  it("cannot write under <db>/verifications/, nor a probe or an audit object", async () => {
    const s3 = s3As(taskEnv("backup", "shop"));
    for (const key of [
      `pg/shop/verifications/${backupId}/20260101T000000000Z-abcdef.json`,
      "pg/.strongroom/probe/x",
      "pg/.strongroom/audit/db-shop/000000000001.json",
    ]) {
      const put = s3.send(new PutObjectCommand({ Bucket: bucket(), Key: key, Body: "{}" }));
      await expect(put, key).rejects.toMatchObject({ name: "AccessDenied", $metadata: { httpStatusCode: 403 } });
      expect(iam.calls.at(-1)).toMatchObject({ action: "s3:PutObject", decision: "ImplicitlyDenied" });
    }
    expect((await adminStore().list("shop/verifications/")).objects).toEqual([]);
  });

  it("cannot overwrite a manifest: a put without If-None-Match is refused by the bucket policy's explicit deny", async () => {
    const s3 = s3As(taskEnv("backup", "shop"));
    const Key = `pg/${objectKey("shop", backupId, "manifest")}`;
    await expect(s3.send(new PutObjectCommand({ Bucket: bucket(), Key, Body: "forged" }))).rejects.toMatchObject({
      name: "AccessDenied",
    });
    expect(iam.calls.at(-1)).toMatchObject({
      decision: "ExplicitlyDenied",
      message: expect.stringMatching(/with an explicit deny in a resource-based policy$/),
    });
    // With the header, IAM allows it and S3 itself refuses: the manifest exists.
    await expect(
      s3.send(new PutObjectCommand({ Bucket: bucket(), Key, Body: "forged", IfNoneMatch: "*" })),
    ).rejects.toMatchObject({ $metadata: { httpStatusCode: 412 } });
    expect(iam.calls.at(-1)).toMatchObject({ decision: "Allowed", context: { "s3:if-none-match": "*" } });
    expect(new TextDecoder().decode(await getBytes(adminStore(), objectKey("shop", backupId, "manifest")))).toBe("{}");
  });

  it("cannot touch another database's prefix: each database's backup task has a role of its own", async () => {
    expect(taskDefinition("backup", "shop").taskRoleArn).not.toBe(taskDefinition("backup", "billing").taskRoleArn);
    const s3 = s3As(taskEnv("backup", "shop"));
    const Key = `pg/billing/backups/${backupId}/dump.pgc.zst.age`;
    await expect(s3.send(new PutObjectCommand({ Bucket: bucket(), Key, Body: "x" }))).rejects.toMatchObject({
      name: "AccessDenied",
    });
    expect(iam.calls.at(-1)).toMatchObject({ action: "s3:PutObject", decision: "ImplicitlyDenied" });
    // billing's own task may.
    await s3As(taskEnv("backup", "billing")).send(new PutObjectCommand({ Bucket: bucket(), Key, Body: "x" }));
    // Listing is bounded to strongroom's prefix either way.
    await expect(s3.send(new ListObjectsV2Command({ Bucket: bucket(), Prefix: "elsewhere/" }))).rejects.toMatchObject({
      name: "AccessDenied",
    });
    expect(iam.calls.at(-1)).toMatchObject({ action: "s3:ListBucket", context: { "s3:prefix": "elsewhere/" } });
  });

  it("the restore task's role reads a backup and writes nothing", async () => {
    const s3 = s3As(taskEnv("restore", "shop"));
    const Key = `pg/${objectKey("shop", backupId, "manifest")}`;
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket(), Key }));
    expect(await got.Body?.transformToString()).toBe("{}");
    await expect(
      s3.send(new PutObjectCommand({ Bucket: bucket(), Key: `pg/shop/backups/${backupId}/x`, Body: "x" })),
    ).rejects.toMatchObject({ name: "AccessDenied" });
  });
});

describe("the tables, as the IAM gateway enforces them", () => {
  it("the retention function reads the audit log, and cannot put a catalog item", async () => {
    const dynamo = dynamoAs({ ...process.env, ...iam.functionEnv(fn("retention-prune")) });
    await dynamo.send(
      new QueryCommand({
        TableName: auditTable,
        KeyConditionExpression: "pk = :pk",
        ExpressionAttributeValues: { ":pk": { S: "db#shop" } },
      }),
    );
    expect(iam.calls.at(-1)).toMatchObject({
      action: "dynamodb:Query",
      decision: "Allowed",
      context: { "dynamodb:LeadingKeys": ["db#shop"] },
    });
    const put = dynamo.send(
      new PutItemCommand({ TableName: catalogTable, Item: { pk: { S: "db#shop" }, sk: { S: "backup#x" } } }),
    );
    await expect(put).rejects.toMatchObject({ name: "AccessDeniedException" });
  });

  it("the retention function cannot put an audit row (only audit-append writes the audit log)", async () => {
    const dynamo = dynamoAs({ ...process.env, ...iam.functionEnv(fn("retention-prune")) });
    const put = dynamo.send(
      new PutItemCommand({
        TableName: auditTable,
        Item: { pk: { S: "db#iam-test" }, sk: { S: "000000000001" } },
        ConditionExpression: "attribute_not_exists(sk)",
      }),
    );
    await expect(put).rejects.toMatchObject({ name: "AccessDeniedException" });
  });

  it("the audit table's own policy refuses UpdateItem, DeleteItem and BatchWriteItem even to a role with dynamodb:*", async () => {
    const dynamo = dynamoAs({ ...process.env, ...iam.gateway.envFor(iam.authorizer.credentialsFor(ADMIN, "admin")) });
    const Key = { pk: { S: `db#iam${process.pid}` }, sk: { S: "000000000001" } };
    await dynamo.send(new PutItemCommand({ TableName: auditTable, Item: { ...Key, event: { S: "backup.ok" } } }));
    // The put went through the gateway to the rig's DynamoDB Local, under the rig's key.
    const row = await dynamoClient().send(new GetItemCommand({ TableName: auditTable, Key }));
    expect(row.Item?.event).toEqual({ S: "backup.ok" });
    for (const write of [
      new UpdateItemCommand({
        TableName: auditTable,
        Key,
        UpdateExpression: "SET event = :e",
        ExpressionAttributeValues: { ":e": { S: "backup.fail" } },
      }),
      new DeleteItemCommand({ TableName: auditTable, Key }),
      new BatchWriteItemCommand({ RequestItems: { [auditTable]: [{ DeleteRequest: { Key } }] } }),
    ]) {
      await expect(dynamo.send(write as never)).rejects.toMatchObject({ name: "AccessDeniedException" });
      expect(iam.calls.at(-1)).toMatchObject({
        principal: `arn:aws:sts::${ACCOUNT}:assumed-role/test-admin/admin`,
        decision: "ExplicitlyDenied",
        message: expect.stringMatching(/with an explicit deny in a resource-based policy$/),
      });
    }
    expect((await dynamoClient().send(new GetItemCommand({ TableName: auditTable, Key }))).Item?.event).toEqual({
      S: "backup.ok",
    });
  });
});

describe("callers the gateway does not know", () => {
  const unknown = { AWS_ACCESS_KEY_ID: "UNKNOWNKEY0000000000", AWS_SECRET_ACCESS_KEY: "x" };

  it("refuses an unknown access key as each service does, and records it", async () => {
    const env = { ...process.env, ...iam.functionEnv(fn("retention-prune")), ...unknown };
    const s3 = s3As(env);
    await expect(s3.send(new ListObjectsV2Command({ Bucket: new URL(storeUrl).host }))).rejects.toMatchObject({
      name: "InvalidAccessKeyId",
      $metadata: { httpStatusCode: 403 },
    });
    expect(iam.calls.at(-1)).toMatchObject({ principal: `unknown access key ${unknown.AWS_ACCESS_KEY_ID}` });
    await expect(
      dynamoAs(env).send(new GetItemCommand({ TableName: auditTable, Key: { pk: { S: "x" }, sk: { S: "y" } } })),
    ).rejects.toMatchObject({ name: "UnrecognizedClientException" });
  });

  it("refuses an unsigned request: S3 evaluates it as anonymous against the bucket policy, DynamoDB wants a signature", async () => {
    const s3 = iam.gateway.endpoints.s3 as string;
    const res = await fetch(`${s3}/${new URL(storeUrl).host}?list-type=2`);
    expect(res.status).toBe(403);
    expect(await res.text()).toContain("<Code>AccessDenied</Code>");
    expect(iam.calls.at(-1)).toMatchObject({ principal: "anonymous", action: "s3:ListBucket" });
    const dynamo = await fetch(iam.gateway.endpoints.dynamodb as string, {
      method: "POST",
      headers: { "x-amz-target": "DynamoDB_20120810.ListTables", "content-type": "application/x-amz-json-1.0" },
      body: "{}",
    });
    expect(dynamo.status).toBe(400);
    expect(await dynamo.json()).toMatchObject({
      __type: expect.stringContaining("MissingAuthenticationTokenException"),
    });
  });
});

describe("what the flows and ECS ask IAM, decided in-process", () => {
  /** A task RunTask would create in the flow's cluster. */
  const taskIn = (cluster: string) => `${cluster.replace(":cluster/", ":task/")}/0123456789abcdef`;
  const taskArn = `arn:aws:ecs:us-east-1:${ACCOUNT}:task/cluster/0123456789abcdef`;

  it("BackupFlow may run its backup task, and may not invoke RestoreFlow's plan (Lambda.AWSLambdaException)", async () => {
    const flow = deployment.flows.get("BackupFlow");
    expect(flow).toBeDefined();
    if (!flow) return;
    const runTask = Object.values(flow.definition.States).find((s) => String(s.Resource).endsWith("runTask.sync"));
    const Cluster = (runTask?.Parameters as { Cluster?: string } | undefined)?.Cluster as string;
    await iam.authorizeRunTask(
      flow,
      { Cluster, PropagateTags: "TASK_DEFINITION" },
      taskDefinition("backup", "shop"),
      taskIn(Cluster),
    );
    // Tagging a task outside the flow's cluster is not RunTask's to do.
    await expect(
      iam.authorizeRunTask(
        flow,
        { Cluster, PropagateTags: "TASK_DEFINITION" },
        taskDefinition("backup", "shop"),
        taskArn,
      ),
    ).rejects.toMatchObject({ name: "ECS.AccessDeniedException", message: expect.stringContaining("ecs:TagResource") });
    await expect(iam.authorizeInvoke(flow, fn("plan-restore"))).rejects.toMatchObject({
      name: "Lambda.AWSLambdaException",
      message: expect.stringMatching(
        /is not authorized to perform: lambda:InvokeFunction on resource: .*\(Service: AWSLambda; Status Code: 403; Error Code: AccessDeniedException;/,
      ),
    });
  });

  it("a backup task's execution role reads its database's secret, never the age identity", async () => {
    await iam.authorizeSecret(taskDefinition("backup", "shop"), `${ARN}:iam/shop-AbCdEf`, taskArn);
    await expect(
      iam.authorizeSecret(taskDefinition("backup", "shop"), `${ARN}:iam/identity-AbCdEf`, taskArn),
    ).rejects.toThrow(/AccessDeniedException: User: .* is not authorized to perform: secretsmanager:GetSecretValue/);
    await expect(
      iam.authorizeSecret(taskDefinition("backup", "shop"), `${ARN}:iam/billing-AbCdEf`, taskArn),
    ).rejects.toThrow(/not authorized/);
  });
});
