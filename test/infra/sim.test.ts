import { readFile, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { QueryCommand } from "@aws-sdk/client-dynamodb";
import { S3Client } from "@aws-sdk/client-s3";
import { PutSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { SNSClient, SubscribeCommand } from "@aws-sdk/client-sns";
import { unmarshall } from "@aws-sdk/util-dynamodb";
import { Ajv } from "ajv";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { DynamoAuditLog } from "#core/audit/dynamo-audit-log.ts";
import { readManifestRecord } from "#core/backup-index.ts";
import { newBackupId, objectKey } from "#core/keys.ts";
import { type Manifest, serializeManifest } from "#core/manifest.ts";
import { getBytes } from "#core/store/object-store.ts";
import { S3Store, s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import { listVerifications } from "#core/verification.ts";
import { freePort } from "#worker/service-process.ts";
import { schema as probeInputSchema } from "../../functions/destination-probe/handler.ts";
import { schema as readinessInputSchema } from "../../functions/readiness/handler.ts";
import type { IamCall } from "../../infra/sim/iam-authorizer.ts";
import { type NamedPolicy, statements } from "../../infra/sim/iam-policies.ts";
import { type ExecutionResult, Sim } from "../../infra/sim/sim.ts";
import { writeBackup } from "../helpers/backups.ts";
import { dynamoClient } from "../helpers/dynamo.ts";
import { identityFile } from "../helpers/fixture.ts";
import { contentDigest, createDatabase, dbConfig, dbUrl, sql } from "../helpers/pg.ts";
import { runCommand } from "../helpers/run.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * npm run sim: the state machines `cdk synth` makes, run by aws-local-stepfunctions
 * against moto (S3, Secrets Manager, SNS) and DynamoDB Local, with the real handler
 * modules and the worker CLI as the ECS task. Nothing here is mocked: a backup goes
 * from the test cluster through the BackupFlow's task into moto, and back out through
 * the RestoreFlow's task into a new database.
 */
const root = path.resolve(import.meta.dirname, "../..");
const ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret";
const secretArn = (name: string) => `${ARN}:sim/${name}-AbCdEf`;

let sim: Sim;
let configFile: string;
let source: { name: string; url: string };
let stackName: string;
let subscriber: Server;
const delivered: string[] = [];

/** Every call the executions of the flows' tests made that IAM denied: none may be. */
const deniedInFlows: IamCall[] = [];
/** Every action the flows' tests asked IAM about, by any principal. */
const actionsInFlows = new Set<string>();

/** `sim.run`, keeping the denied calls for the last test of the flows. */
async function run(flow: string, input: unknown): Promise<ExecutionResult> {
  const result = await sim.run(flow, input);
  expect(result.calls, "IAM is enforced").toBeDefined();
  deniedInFlows.push(...(result.calls ?? []).filter((c) => c.decision !== "Allowed"));
  for (const c of result.calls ?? []) actionsInFlows.add(c.action);
  return result;
}

/** What the sim's tasks logged, line by line. */
const simLog: string[] = [];

/** The "broken" database's name on the test cluster. */
let brokenName: string;

type AuditItem = {
  seq: string;
  event: string;
  actor: string;
  backupId?: string;
  details?: Record<string, unknown>;
};

async function auditRows(databaseId: string): Promise<AuditItem[]> {
  const table = sim.deployment.tables.find((t) => t.name.includes("Audit"))?.name as string;
  const out = await dynamoClient().send(
    new QueryCommand({
      TableName: table,
      KeyConditionExpression: "pk = :pk",
      ExpressionAttributeValues: { ":pk": { S: `db#${databaseId}` } },
    }),
  );
  return (out.Items ?? []).map((i) => unmarshall(i) as AuditItem);
}

function store(): S3Store {
  const url = [...sim.deployment.functions.values()].find((f) => f.environment.STORE_URL)?.environment
    .STORE_URL as string;
  return new S3Store(url, { client: new S3Client(s3ClientConfigFromEnv()) });
}

/** The input a flow is started with by a database's schedule, as the template declares it. */
function scheduledInput(databaseId: string, flowName = "BackupFlow"): unknown {
  const flow = sim.deployment.flows.get(flowName);
  const schedule = sim.deployment.schedules.find(
    (s) => s.targetArn === flow?.arn && (s.input as { databaseId?: string }).databaseId === databaseId,
  );
  expect(schedule, `a schedule starts ${flowName} for ${databaseId}`).toBeDefined();
  return schedule?.input;
}

/** The states a BackupFlow passes through when its task fails: recorded, notified, failed. */
const BACKUP_FAILED_STATES = [
  "Plan backup",
  "Audit backup.start",
  "Run backup task",
  "Audit backup.fail",
  "Notify failure",
  "BackupFlow failed",
];

beforeAll(async () => {
  // One moto serves S3, SNS and Secrets Manager, as the sim would start it.
  process.env.AWS_ENDPOINT_URL_SNS = inject("s3Endpoint");
  process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = inject("s3Endpoint");
  process.env.AWS_ENDPOINT_URL_SSM = inject("s3Endpoint");
  source = await createDatabase(inject("pgUrl"), "simsrc");
  await sql(
    source.url,
    `create table orders (id int primary key, note text);
     insert into orders select g, 'note ' || g || E' \\n"quoted" ✓' from generate_series(1, 500) g;`,
  );
  const broken = await createDatabase(inject("pgUrl"), "simbroken");
  brokenName = broken.name;
  await sql(
    broken.url,
    `create table limits(max int); insert into limits values (10);
     create function under_limit(v int) returns boolean language sql as 'select v <= (select max from limits)';
     create table items(v int check (under_limit(v))); insert into items values (5);`,
  );
  const pg = new URL(inject("pgUrl"));
  const key = await identityFile();
  const dir = await tempDir("strongroom-sim-");
  // Unique per run: the stand-ins are shared with the rest of the suite.
  stackName = `sim${process.pid}`;
  // As RDS writes a managed master secret: username and password, nothing else.
  const managed = {
    username: decodeURIComponent(pg.username),
    password: decodeURIComponent(pg.password),
  };
  const downPort = await freePort();
  configFile = path.join(dir, "sim.config.json");
  await writeFile(
    configFile,
    JSON.stringify({
      name: stackName,
      prefix: "pg",
      bucket: { create: true },
      recipients: [key.recipient],
      identitySecretArn: secretArn("identity"),
      network: { create: true },
      defaults: { schedule: "cron(0 2 * * ? *)", timeZone: "Europe/Berlin" },
      databases: [
        { id: "shop", secretArn: secretArn("shop"), host: pg.hostname, port: Number(pg.port), dbname: source.name },
        // Its host and port point at a port nothing listens on.
        { id: "down", secretArn: secretArn("down"), host: pg.hostname, port: downPort, dbname: "nothing" },
        // pg_dump dumps it, but it does not restore: its verification fails. Its secret
        // holds the whole connection (Secrets Manager's RDS format), and says so.
        // Its verify tasks run on an EBS volume (verify.storage "ebs"), as a database too
        // large for ephemeral storage does: the volume branch of VerifyFlow, in the sandbox.
        {
          id: "broken",
          secretArn: secretArn("broken"),
          secretHas: ["host", "port", "dbname"],
          verify: { storage: "ebs" },
        },
      ],
      sim: {
        secrets: {
          [secretArn("identity")]: key.identity,
          [secretArn("shop")]: managed,
          [secretArn("down")]: managed,
          [secretArn("broken")]: { ...managed, host: pg.hostname, port: Number(pg.port), dbname: broken.name },
        },
      },
    }),
  );
  sim = await Sim.start({ configFile, log: (line) => simLog.push(line) });
  // An HTTP subscriber on the alarm topic: moto delivers to it as SNS would to e-mail.
  subscriber = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => {
      body += c.toString();
    });
    req.on("end", () => {
      delivered.push(body);
      res.end();
    });
  });
  await new Promise<void>((resolve) => subscriber.listen(0, "127.0.0.1", resolve));
  const { port } = subscriber.address() as AddressInfo;
  await new SNSClient({}).send(
    new SubscribeCommand({
      TopicArn: sim.deployment.topics[0]?.arn,
      Protocol: "http",
      Endpoint: `http://127.0.0.1:${port}/alarm`,
    }),
  );
}, 120_000);

afterAll(async () => {
  await sim?.stop();
  subscriber?.close();
});

describe("npm run sim runs the synthesized flows", () => {
  it("BackupFlow commits a backup, catalogs it, audits backup.start and backup.ok, prunes and emits the staleness metric", async () => {
    // A committed backup two years old: outside every retention window of the defaults.
    const auditTable = sim.deployment.tables.find((t) => t.name.includes("Audit"))?.name as string;
    const expired = await writeBackup(store(), "shop", new Date(Date.now() - 730 * 86_400_000), {
      audit: new DynamoAuditLog(dynamoClient(), auditTable, "db#shop"),
    });
    const result = await run("BackupFlow", scheduledInput("shop"));
    expect(result, JSON.stringify(result)).toMatchObject({ flow: "BackupFlow", status: "SUCCEEDED" });
    expect(result.states).toEqual([
      "Plan backup",
      "Audit backup.start",
      "Run backup task",
      "Record in catalog",
      "Audit backup.ok",
      "Plan retention",
      "Audit retain.delete",
      "Delete retired",
      "Audit gc.delete",
      "Backed up",
    ]);
    const output = result.output as {
      plan: { backupId: string };
      prune: { kept: string[] };
      pruned: { deleted: string[] };
      task: { stopCode: string };
    };
    const backupId = output.plan.backupId;
    expect(output.task.stopCode).toBe("EssentialContainerExited");
    expect(output.prune.kept).toContain(backupId);
    // Retention ran as the template allows it, IAM enforced: the function that deletes
    // cannot write the audit table, so audit-append wrote the retain.delete row, first.
    expect(output.pruned.deleted).toEqual([expired]);
    expect((await store().list(`shop/backups/${expired}/`)).objects).toEqual([]);
    const retired = (await auditRows("shop")).filter((r) => r.backupId === expired);
    expect(retired.map((r) => [r.event, r.actor])).toEqual([
      ["backup.ok", "test"],
      ["retain.delete", "BackupFlow"],
    ]);

    const { manifest, sha256 } = await readManifestRecord(store(), { databaseId: "shop", backupId });
    expect(manifest.backupId).toBe(backupId);

    const catalogTable = sim.deployment.tables.find((t) => t.name.includes("Catalog"))?.name as string;
    const catalog = await dynamoClient().send(
      new QueryCommand({
        TableName: catalogTable,
        KeyConditionExpression: "pk = :pk",
        ExpressionAttributeValues: { ":pk": { S: "db#shop" } },
      }),
    );
    expect((catalog.Items ?? []).map((i) => unmarshall(i).backupId)).toContain(backupId);

    const rows = (await auditRows("shop")).filter((r) => r.backupId === backupId);
    expect(rows.map((r) => r.event)).toEqual(["backup.start", "backup.ok"]);
    // backup.ok records exactly the manifest the task committed: that is what makes it count.
    expect(rows[1]?.details?.manifestSha256).toBe(sha256);
    expect(rows[0]?.details?.execution).toMatch(/^arn:aws:states:us-east-1:123456789012:execution:/);
    expect(result.metrics).toContainEqual(
      expect.objectContaining({
        name: "BackupRecorded",
        value: 1,
        dimensions: expect.objectContaining({ DatabaseId: "shop" }),
      }),
    );
    expect(result.published).toEqual([]);
  }, 120_000);

  it("RestoreFlow of latest, started as from the console, restores into a new database equal to the source", async () => {
    // A target name that must survive quoting on its way through the flow and the task.
    const target = `restored "sim" ✓ ${process.pid}`;
    const result = await run("RestoreFlow", {
      databaseId: "shop",
      backupId: "latest",
      target: { database: target },
    });
    expect(result, JSON.stringify(result)).toMatchObject({ status: "SUCCEEDED" });
    expect(result.states).toEqual([
      "Check and plan restore",
      "Audit restore.start",
      "Run restore task",
      "Audit restore.ok",
      "Restored",
    ]);
    const restored = dbUrl(inject("pgUrl"), encodeURIComponent(target));
    expect(await contentDigest(restored)).toEqual(await contentDigest(source.url));
    const events = (await auditRows("shop")).map((r) => r.event);
    expect(events.slice(-2)).toEqual(["restore.start", "restore.ok"]);
  }, 120_000);

  // Each name went wrong on its way from the console to the database: `a=b` and
  // `sales/2026` were percent-encoded and never decoded (and `=` made pg_restore read the
  // name as a connection string); `..` was resolved away as a dot segment, which left the
  // task's own PGDATABASE, the source database.
  it.each(["a=b", "sales/2026", `it's "ü" \\ ✓ -x`, ".."])(
    "RestoreFlow restores into the database named %j, exactly as the input names it",
    async (database) => {
      const result = await run("RestoreFlow", { databaseId: "shop", backupId: "latest", target: { database } });
      expect(result, JSON.stringify(result)).toMatchObject({ status: "SUCCEEDED" });
      const named = await sql(inject("pgUrl"), "select datname from pg_database where datname = $1", [database]);
      expect(named).toEqual([{ datname: database }]);
      expect(await contentDigest(dbConfig(inject("pgUrl"), database))).toEqual(await contentDigest(source.url));
    },
    120_000,
  );

  it("VerifyFlow, started by the verify schedule, verifies the newest backup in a scratch cluster inside its task", async () => {
    const result = await run("VerifyFlow", scheduledInput("shop", "VerifyFlow"));
    expect(result, JSON.stringify(result)).toMatchObject({ status: "SUCCEEDED" });
    expect(result.states).toEqual([
      "Plan verify",
      "Audit verify.start",
      "Storage?",
      "Run verify task",
      "Record verification",
      "Audit verify.ok",
      "Verified",
    ]);
    const backupId = (result.output as { plan: { backupId: string } }).plan.backupId;
    // The catalog item now carries the verification, and its outcome and RTO are metrics.
    const catalogTable = sim.deployment.tables.find((t) => t.name.includes("Catalog"))?.name as string;
    const item = await dynamoClient().send(
      new QueryCommand({
        TableName: catalogTable,
        KeyConditionExpression: "pk = :pk and sk = :sk",
        ExpressionAttributeValues: { ":pk": { S: "db#shop" }, ":sk": { S: `backup#${backupId}` } },
      }),
    );
    expect(unmarshall(item.Items?.[0] ?? {})).toMatchObject({ lastVerifyOk: true, lastVerifiedAt: expect.any(String) });
    expect(result.metrics.map((m) => m.name).sort()).toEqual([
      "VerificationOk",
      "VerifiedExclusions",
      "VerifyRestoreSeconds",
    ]);
    // Nothing was left out of this restore, so the dashboard's "left out" counts zero.
    expect(result.metrics.find((m) => m.name === "VerifiedExclusions")).toMatchObject({ value: 0 });
    const [summary] = (await listVerifications(store(), "shop")).filter((v) => v.backupId === backupId);
    expect(summary).toMatchObject({ kind: "restore", ok: true });
    expect(summary?.checks.map((c) => c.name)).toEqual(["preflight", "restore", "row-counts", "schema", "constraints"]);
    const rows = (await auditRows("shop")).filter((r) => r.event.startsWith("verify."));
    expect(rows.map((r) => r.event)).toEqual(["verify.start", "verify.ok"]);
    expect(rows.every((r) => r.backupId === backupId)).toBe(true);
  }, 120_000);

  it("VerifyFlow of a backup that does not restore records the failed result, then verify.fail and the alarm message", async () => {
    expect((await run("BackupFlow", scheduledInput("broken"))).status).toBe("SUCCEEDED");
    const logged = simLog.length;
    const result = await run("VerifyFlow", scheduledInput("broken", "VerifyFlow"));
    expect(result.status).toBe("FAILED");
    expect(result.states).toEqual([
      "Plan verify",
      "Audit verify.start",
      "Storage?",
      "Run verify task on a volume",
      "Record failed verification",
      "Inconclusive?",
      "Audit verify.fail",
      "Notify failure",
      "VerifyFlow failed",
    ]);
    expect(result.metrics).toContainEqual(expect.objectContaining({ name: "VerificationOk", value: 0 }));
    const rows = (await auditRows("broken")).filter((r) => r.event.startsWith("verify."));
    expect(rows.map((r) => r.event)).toEqual(["verify.start", "verify.fail"]);
    expect(rows[1]?.details).toMatchObject({ error: "States.TaskFailed", exitCode: 1 });
    const backupId = rows[1]?.backupId as string;
    const catalogTable = sim.deployment.tables.find((t) => t.name.includes("Catalog"))?.name as string;
    const item = await dynamoClient().send(
      new QueryCommand({
        TableName: catalogTable,
        KeyConditionExpression: "pk = :pk and sk = :sk",
        ExpressionAttributeValues: { ":pk": { S: "db#broken" }, ":sk": { S: `backup#${backupId}` } },
      }),
    );
    expect(unmarshall(item.Items?.[0] ?? {})).toMatchObject({ lastVerifyOk: false });
    expect(result.published).toHaveLength(1);
    // It failed where the backup does (the check during COPY), not for the volume: the
    // scratch cluster ran on the EBS volume ECS mounts root-owned at /mnt.
    const taskLog = simLog.slice(logged).filter((l) => l.startsWith("[Run verify task on a volume]"));
    expect(taskLog.join("\n")).toContain("under_limit");
  }, 120_000);

  it("VerifyFlow of a backup whose extension the verify task's server lacks is inconclusive: verify.inconclusive, its metric for the alarm, no failure, no VerifyFlowFailed", async () => {
    // The "broken" database, made restorable but with an extension version no server here has.
    await sql(
      dbUrl(inject("pgUrl"), brokenName),
      `drop function under_limit(int) cascade; drop table items, limits;
       create extension if not exists pg_trgm; update pg_extension set extversion = '99.0' where extname = 'pg_trgm';
       create table kept (n int); insert into kept values (1);`,
    );
    expect((await run("BackupFlow", scheduledInput("broken"))).status).toBe("SUCCEEDED");
    const result = await run("VerifyFlow", scheduledInput("broken", "VerifyFlow"));
    expect(result, JSON.stringify(result.error)).toMatchObject({ status: "SUCCEEDED" });
    expect(result.states).toEqual([
      "Plan verify",
      "Audit verify.start",
      "Storage?",
      "Run verify task on a volume",
      "Record failed verification",
      "Inconclusive?",
      "Audit verify.inconclusive",
      "Inconclusive",
    ]);
    // Its own metric, per database and for the deployment's alarm; no VerificationOk either way.
    expect(result.metrics.filter((m) => m.name === "VerificationInconclusive")).toEqual([
      expect.objectContaining({ value: 1, dimensions: expect.objectContaining({ DatabaseId: "broken" }) }),
      expect.objectContaining({ value: 1, dimensions: { service: "strongroom" } }),
    ]);
    expect(result.metrics.filter((m) => m.name === "VerificationOk")).toEqual([]);
    const rows = (await auditRows("broken")).filter((r) => r.event.startsWith("verify."));
    expect(rows.at(-1)).toMatchObject({ event: "verify.inconclusive", details: { exitCode: 3, kind: "restore" } });
    expect(rows.map((r) => r.event)).not.toContain("verify.ok");
    // No failure message: the execution succeeded; the alarm, not the flow, says so.
    expect(result.published).toEqual([]);
  }, 180_000);

  it("BackupFlow against an unreachable database ends FAILED: backup.fail with the exit code, an SNS message, no manifest", async () => {
    const result = await run("BackupFlow", scheduledInput("down"));
    expect(result.status).toBe("FAILED");
    expect(result.error).toBe("States.TaskFailed");
    expect(result.states).toEqual(BACKUP_FAILED_STATES);
    const task = JSON.parse(result.cause as string) as { Containers: Array<{ Name: string; ExitCode: number }> };
    expect(task.Containers).toEqual([expect.objectContaining({ Name: "worker", ExitCode: 1 })]);

    const rows = await auditRows("down");
    expect(rows.map((r) => r.event)).toEqual(["backup.start", "backup.fail"]);
    expect(rows[1]?.details).toMatchObject({
      error: "States.TaskFailed",
      exitCode: 1,
      stopCode: "EssentialContainerExited",
    });

    expect(result.published).toHaveLength(1);
    const message = JSON.parse(result.published[0]?.message as string);
    expect(message).toMatchObject({ flow: "BackupFlow", error: "States.TaskFailed" });
    // The message reached the topic's subscriber through the SNS stand-in (as the alarm
    // e-mail would), not only the sim's record.
    await expect.poll(() => delivered.map((d) => JSON.parse(d).Message)).toContain(result.published[0]?.message);

    expect((await store().list("down/")).objects).toEqual([]);
  }, 120_000);

  it("BackupFlow whose secret lost a key (replaced by another writer) fails as ECS does: TaskFailedToStart, no exit code, audited", async () => {
    const secrets = new SecretsManagerClient({});
    await secrets.send(
      new PutSecretValueCommand({ SecretId: "sim/down", SecretString: JSON.stringify({ username: "app" }) }),
    );
    const result = await run("BackupFlow", { databaseId: "down" });
    expect(result.status).toBe("FAILED");
    const task = JSON.parse(result.cause as string) as { StopCode: string; StoppedReason: string };
    expect(task.StopCode).toBe("TaskFailedToStart");
    expect(task.StoppedReason).toContain("has no key password");
    const backupId = (await auditRows("down")).at(-1)?.backupId;
    const rows = (await auditRows("down")).filter((r) => r.backupId === backupId);
    expect(rows.map((r) => r.event)).toEqual(["backup.start", "backup.fail"]);
    expect(rows[1]?.details).toMatchObject({ error: "States.TaskFailed", stopCode: "TaskFailedToStart" });
    expect(rows[1]?.details).not.toHaveProperty("exitCode");
  }, 60_000);

  it.each([
    ["a password", { databaseId: "shop", target: { database: "x", password: "hunter2" } }, "password"],
    ["an unknown field", { databaseId: "shop", target: { database: "x" }, force: true }, "'force'"],
    ["an unknown database", { databaseId: "nope", target: { database: "x" } }, "UnknownDatabaseError"],
  ])(
    "RestoreFlow refuses an input with %s before any task runs or any row is written",
    async (_, input, says) => {
      const before = (await auditRows("shop")).length;
      const result = await run("RestoreFlow", input);
      expect(result.status).toBe("FAILED");
      expect(result.states).toEqual(["Check and plan restore", "Notify failure", "RestoreFlow failed"]);
      expect(`${result.error} ${result.cause}`).toContain(says);
      expect(result.cause).not.toContain("hunter2");
      expect((await auditRows("shop")).length).toBe(before);
    },
    60_000,
  );

  it("RestoreFlow refuses clean over the source database without confirm, or with a wrong one, before any task runs or any row is written", async () => {
    const before = (await auditRows("shop")).length;
    const content = await contentDigest(source.url);
    for (const confirm of [undefined, source.name.toUpperCase(), `${source.name} `]) {
      const input = { databaseId: "shop", target: { database: source.name }, clean: true, confirm };
      const result = await run("RestoreFlow", input);
      expect(result.status).toBe("FAILED");
      expect(result.states).toEqual(["Check and plan restore", "Notify failure", "RestoreFlow failed"]);
      // What the console shows: the Lambda's error type and message.
      const cause = JSON.parse(result.cause as string) as { errorType: string; errorMessage: string };
      expect(cause.errorType).toBe("InvalidInputError");
      expect(cause.errorMessage).toContain(JSON.stringify(source.name));
      expect(cause.errorMessage).toMatch(confirm === undefined ? /add "confirm": / : /must equal it exactly$/);
    }
    expect((await auditRows("shop")).length).toBe(before);
    expect(await contentDigest(source.url)).toEqual(content);
  }, 60_000);

  it("a backup a store writer puts into the bucket is never planned, restored or verified, and stops the prune step naming it", async () => {
    const first = await run("BackupFlow", scheduledInput("shop"));
    expect(first.status, JSON.stringify(first)).toBe("SUCCEEDED");
    const genuine = (first.output as { plan: { backupId: string } }).plan.backupId;
    // The forger copies the newest backup under a later id, its manifest's ids and keys
    // rewritten to match, as anyone with the backup task's S3 rights could.
    const s3 = store();
    const forgedId = newBackupId(new Date(Date.now() + 1000));
    const { manifest } = await readManifestRecord(s3, { databaseId: "shop", backupId: genuine });
    for (const o of manifest.objects) {
      await s3.putIfAbsent(objectKey("shop", forgedId, o.role), await getBytes(s3, o.key));
    }
    const forged: Manifest = {
      ...manifest,
      backupId: forgedId,
      objects: manifest.objects.map((o) => ({ ...o, key: objectKey("shop", forgedId, o.role) })),
    };
    await s3.putIfAbsent(objectKey("shop", forgedId, "manifest"), serializeManifest(forged));
    try {
      const verified = await run("VerifyFlow", { databaseId: "shop" });
      expect(verified.status, JSON.stringify(verified)).toBe("SUCCEEDED");
      expect((verified.output as { plan: { backupId: string } }).plan.backupId).toBe(genuine);

      const restored = await run("RestoreFlow", {
        databaseId: "shop",
        backupId: forgedId,
        target: { database: `never_${process.pid}` },
      });
      expect(restored.status).toBe("FAILED");
      expect(restored.states).toEqual(["Check and plan restore", "Notify failure", "RestoreFlow failed"]);
      expect(`${restored.error} ${restored.cause}`).toContain("UncommittedBackupError");

      // The next backup commits (backup.ok before prune), then prune stops on the forgery.
      const next = await run("BackupFlow", scheduledInput("shop"));
      expect(next.status).toBe("FAILED");
      expect(next.states).toEqual([
        "Plan backup",
        "Audit backup.start",
        "Run backup task",
        "Record in catalog",
        "Audit backup.ok",
        "Plan retention",
        "Audit backup.fail",
        "Notify failure",
        "BackupFlow failed",
      ]);
      expect(`${next.error} ${next.cause}`).toContain("PruneHaltedError");
      expect(next.cause).toContain(forgedId);
      expect((await store().list(`shop/backups/${genuine}/`)).objects.length).toBeGreaterThan(0);
    } finally {
      for (const role of ["manifest", "dump", "roles", "stats"] as const)
        await s3.delete(objectKey("shop", forgedId, role));
    }
  }, 180_000);

  it("made every AWS call of the flows above as the principal the template says, and IAM allowed each", () => {
    expect(deniedInFlows).toEqual([]);
    // Each kind of principal was asked about: the functions' and tasks' calls through the
    // gateway, the flows' own, and ECS's for the tasks' secrets.
    expect([...actionsInFlows]).toEqual(
      expect.arrayContaining([
        "s3:PutObject",
        "s3:GetObject",
        "s3:ListBucket",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "lambda:InvokeFunction",
        "ecs:RunTask",
        "iam:PassRole",
        "ecs:TagResource",
        "secretsmanager:GetSecretValue",
        "sns:Publish",
      ]),
    );
    expect(
      [...actionsInFlows].some((a) => a.startsWith("ssm:Get")),
      "the plans read their settings as themselves",
    ).toBe(true);
  });

  it("wires every schedule to a flow or function in the template, with an input it accepts", () => {
    const flows = new Map([...sim.deployment.flows.values()].map((f) => [f.arn, f.name]));
    const functions = sim.deployment.functions;
    // A backup and a verify schedule per database, the probe and the hourly readiness.
    expect(sim.deployment.schedules.length).toBe(8);
    for (const schedule of sim.deployment.schedules) {
      const flow = flows.get(schedule.targetArn);
      const fn = functions.get(schedule.targetArn);
      expect(flow ?? fn?.name, `${schedule.name} targets ${schedule.targetArn}`).toBeDefined();
      if (flow) {
        expect(["BackupFlow", "VerifyFlow"]).toContain(flow);
        expect(["shop", "down", "broken"]).toContain((schedule.input as { databaseId: string }).databaseId);
      } else if (fn?.name === "readiness") {
        expect(new Ajv().validate(readinessInputSchema, schedule.input)).toBe(true);
      } else {
        expect(fn?.name).toBe("destination-probe");
        expect(new Ajv().validate(probeInputSchema, schedule.input)).toBe(true);
      }
    }
  });
});

describe("npm run sim enforces the template's IAM policies", () => {
  /** Runs `body` with the role's Allow statements that grant `action` taken away, then puts them back. */
  async function without<T>(roleArn: string, action: string, body: () => Promise<T>): Promise<T> {
    const authorizer = sim.iam?.authorizer;
    const policies = authorizer?.identityPolicies(roleArn);
    expect(policies, roleArn).toBeDefined();
    if (!authorizer || !policies) throw new Error("no IAM enforcement");
    const grants = (s: Record<string, unknown>) => s.Effect === "Allow" && [s.Action].flat().includes(action);
    const reduced: NamedPolicy[] = policies.map((p) => ({
      ...p,
      policy: { ...p.policy, Statement: statements(p.policy).filter((s) => !grants(s)) },
    }));
    expect(JSON.stringify(reduced), `${roleArn} has a statement granting ${action}`).not.toEqual(
      JSON.stringify(policies),
    );
    authorizer.setIdentityPolicies(roleArn, reduced);
    try {
      return await body();
    } finally {
      authorizer.setIdentityPolicies(roleArn, policies);
    }
  }

  function backupTaskRole(databaseId: string): string {
    // Each database's backup task definition is the family `<stack>_backup_<id>`.
    const definition = [...sim.deployment.taskDefinitions.values()].find((d) =>
      d.arn.endsWith(`_backup_${databaseId}:1`),
    );
    expect(definition?.taskRoleArn).toBeDefined();
    return definition?.taskRoleArn as string;
  }

  it("a backup task role without s3:PutObject on backups fails BackupFlow: the task's put is denied, backup.fail is audited, no manifest", async () => {
    const before = new Set((await store().list("shop/backups/")).objects.map((o) => o.key));
    const result = await without(backupTaskRole("shop"), "s3:PutObject", () =>
      sim.run("BackupFlow", { databaseId: "shop" }),
    );
    expect(result.status).toBe("FAILED");
    expect(result.error).toBe("States.TaskFailed");
    expect(result.states).toEqual(BACKUP_FAILED_STATES);
    const denied = (result.calls ?? []).filter((c) => c.decision !== "Allowed");
    expect(denied.length).toBeGreaterThan(0);
    expect(denied[0]).toMatchObject({
      principal: expect.stringContaining("BackupTaskRoleshop"),
      action: "s3:PutObject",
      resource: expect.stringMatching(/\/pg\/shop\/backups\/[^/]+\/dump\.pgc\.zst\.age$/),
      decision: "ImplicitlyDenied",
    });
    const backupId = (await auditRows("shop")).at(-1)?.backupId as string;
    const rows = (await auditRows("shop")).filter((r) => r.backupId === backupId);
    expect(rows.map((r) => r.event)).toEqual(["backup.start", "backup.fail"]);
    expect(rows[1]?.details).toMatchObject({ error: "States.TaskFailed", exitCode: 1 });
    const after = (await store().list("shop/backups/")).objects.map((o) => o.key).filter((k) => !before.has(k));
    expect(after).toEqual([]);
  }, 120_000);

  it("a flow role without iam:PassRole fails BackupFlow at RunTask with ECS.AccessDeniedException, before any task starts", async () => {
    const flow = sim.flow("BackupFlow");
    const result = await without(flow.roleArn, "iam:PassRole", () => sim.run("BackupFlow", { databaseId: "shop" }));
    expect(result.status).toBe("FAILED");
    expect(result.error).toBe("ECS.AccessDeniedException");
    expect(result.cause).toMatch(/is not authorized to perform: iam:PassRole on resource: .*BackupTaskRoleshop/);
    expect(result.states).toEqual(BACKUP_FAILED_STATES);
    expect((result.calls ?? []).some((c) => c.principal.includes("BackupTaskRole"))).toBe(false);
  }, 120_000);

  it("an execution role that may not read the database's secret fails the task to start (TaskFailedToStart)", async () => {
    const definition = [...sim.deployment.taskDefinitions.values()].find((d) => d.arn.endsWith("_backup_shop:1"));
    const role = definition?.executionRoleArn as string;
    const result = await without(role, "secretsmanager:GetSecretValue", () =>
      sim.run("BackupFlow", { databaseId: "shop" }),
    );
    expect(result.status).toBe("FAILED");
    const task = JSON.parse(result.cause as string) as { StopCode: string; StoppedReason: string };
    expect(task.StopCode).toBe("TaskFailedToStart");
    expect(task.StoppedReason).toMatch(
      /^ResourceInitializationError: .*AccessDeniedException: User: .* is not authorized to perform: secretsmanager:GetSecretValue/,
    );
  }, 120_000);
});

describe("npm run sim on the command line", () => {
  /** `npm run sim -- …` as a user runs it: scripts/sim.ts in a child process. */
  async function npmRunSim(
    args: string[],
    env: NodeJS.ProcessEnv = process.env,
  ): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const r = await runCommand(process.execPath, [path.join(root, "scripts/sim.ts"), ...args], undefined, env);
    return { ...r, stdout: r.stdout.toString() };
  }

  it("starts its own stand-ins, prints one JSON line per execution in order, exits 1 when one failed, and stops what it started", async () => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("AWS_ENDPOINT_URL")));
    const r = await npmRunSim(
      [
        "--config",
        configFile,
        "--json",
        "BackupFlow",
        JSON.stringify({ databaseId: "shop" }),
        "RestoreFlow",
        JSON.stringify({ databaseId: "shop", backupId: "latest", target: { database: `cli_${process.pid}` } }),
        "RestoreFlow",
        JSON.stringify({ databaseId: "shop", target: { database: "x" }, clean: "yes" }),
      ],
      env,
    );
    const lines = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(
      lines.map((l) => [l.flow, l.status]),
      r.stderr,
    ).toEqual([
      ["BackupFlow", "SUCCEEDED"],
      ["RestoreFlow", "SUCCEEDED"],
      ["RestoreFlow", "FAILED"],
    ]);
    expect(Object.keys(lines[2])).toEqual(expect.arrayContaining(["flow", "status", "error", "cause", "states"]));
    // Each line carries the execution's AWS calls and IAM's decisions; none was denied.
    const calls = lines.flatMap((l) => l.calls as IamCall[]);
    expect(calls.map((c) => c.action)).toEqual(expect.arrayContaining(["s3:PutObject", "dynamodb:PutItem"]));
    expect(calls.filter((c) => c.decision !== "Allowed")).toEqual([]);
    expect(r.code).toBe(1);
    // The stand-ins it started, by the PIDs it reported, are gone.
    const pids = [...r.stderr.matchAll(/sim: started (?:moto|DynamoDB Local) on \S+ \(pid (\d+)\)/g)].map((m) =>
      Number(m[1]),
    );
    expect(pids).toHaveLength(2);
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow(/ESRCH/);
  }, 180_000);

  it("says in one line why an execution failed, names the flows when asked for one the template lacks, and refuses an unpaired argument (exit 2)", async () => {
    const unknown = await npmRunSim(["--config", configFile, "PruneFlow", "{}"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no flow "PruneFlow" in the synthesized template');
    expect(unknown.stderr).toContain("HINT: flows: BackupFlow, RestoreFlow, VerifyFlow");
    const refused = await npmRunSim([
      "--config",
      configFile,
      // Without IAM enforcement, as when measuring what it costs: the same answer.
      "--no-iam",
      "RestoreFlow",
      JSON.stringify({ databaseId: "shop", target: { database: "x", password: "hunter2" } }),
      // The source database holds the backup's tables: the worker refuses to restore over them.
      "RestoreFlow",
      JSON.stringify({ databaseId: "shop", target: { database: source.name } }),
    ]);
    expect(refused.code).toBe(1);
    const [planFailed, workerFailed] = refused.stdout.split("\n");
    expect(planFailed).toMatch(
      /^✗ RestoreFlow FAILED in [\d.]+ s \(InvalidInputError: the input has a field "target.password": a restore's input must never carry a password\): Check and plan restore → Notify failure → RestoreFlow failed$/,
    );
    // The worker's error, told in its logs only, and its hint in the terms of the flow's input.
    expect(workerFailed).toMatch(
      new RegExp(
        `^✗ RestoreFlow FAILED in [\\d.]+ s \\(States\\.TaskFailed: the worker exited 1 with TargetNotEmptyError: target database ${source.name} already holds \\d+ user objects; HINT: restore into a new, empty database, or pass "clean": true in the input to drop the backup's objects first\\): Check and plan restore → Audit restore\\.start → Run restore task → Audit restore\\.fail → Notify failure → RestoreFlow failed$`,
      ),
    );
    expect(refused.stdout.split("\n")).toHaveLength(3);
    expect(refused.stdout + refused.stderr).not.toContain("hunter2");
    const unpaired = await npmRunSim(["--config", configFile, "BackupFlow"]);
    expect(unpaired.code).toBe(2);
    expect(unpaired.stderr).toContain("executions come in pairs");
  }, 120_000);

  it("reports every problem of its config at once, one line each naming the file and the field, as cdk synth does, and exits 1", async () => {
    const raw = JSON.parse(await readFile(configFile, "utf8"));
    raw.alarmEmail = "ops";
    raw.databases[1].id = "shop";
    const bad = path.join(await tempDir("strongroom-sim-"), "sim.config.json");
    await writeFile(bad, JSON.stringify(raw));
    const r = await npmRunSim(["--config", bad, "BackupFlow", JSON.stringify({ databaseId: "shop" })]);
    expect(r.stderr).toBe(
      [
        `${bad}: alarmEmail: must be an email address`,
        `${bad}: databases[1].id: duplicate id "shop"`,
        "HINT: see strongroom.config.example.json and the README's Deploy section",
        "",
      ].join("\n"),
    );
    expect(r.code).toBe(1);
  });
});
