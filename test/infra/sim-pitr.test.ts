import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import * as path from "node:path";
import { Readable } from "node:stream";
import { QueryCommand } from "@aws-sdk/client-dynamodb";
import { S3Client } from "@aws-sdk/client-s3";
import { PutSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { unmarshall } from "@aws-sdk/util-dynamodb";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { readAll } from "#core/audit/audit-log.ts";
import { DynamoAuditLog } from "#core/audit/dynamo-audit-log.ts";
import { generateSigningKey } from "#core/audit/row-signature.ts";
import { baseKeys } from "#core/pitr/base-manifest.ts";
import { readPitrStatus } from "#core/pitr/pitr-status.ts";
import { listPitrSummaries } from "#core/pitr/pitr-verification.ts";
import { getBytes, listAll } from "#core/store/object-store.ts";
import { S3Store, s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import { type ExecutionResult, Sim } from "../../infra/sim/sim.ts";
import { runCli } from "../helpers/cli.ts";
import { dynamoClient } from "../helpers/dynamo.ts";
import { identityFile } from "../helpers/fixture.ts";
import { sql } from "../helpers/pg.ts";
import { type PitrRig, startPitrRig, switchAndArchive } from "../helpers/pitr-rig.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * npm run sim's VerifyFlow for a database whose host archives its WAL into the
 * deployment's bucket (`"walArchiving": true`): a real PostgreSQL 15 archives through
 * `wal-push` into moto and takes a base backup with the host's key; the synthesized
 * VerifyFlow, started by the database's own `kind: "pitr"` schedule, runs `verify --pitr`
 * as its Fargate task in the sim's sandbox, with IAM enforced.
 */
const ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret";
const secretArn = (name: string) => `${ARN}:sim/${name}-AbCdEf`;

let sim: Sim;
let rig: PitrRig;
let storeUrl: string;
let baseId: string;
const host = generateSigningKey();
const log: string[] = [];

const store = () => new S3Store(storeUrl, { client: new S3Client(s3ClientConfigFromEnv()) });

beforeAll(async () => {
  process.env.AWS_ENDPOINT_URL_SNS = inject("s3Endpoint");
  process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = inject("s3Endpoint");
  process.env.AWS_ENDPOINT_URL_SSM = inject("s3Endpoint");
  const pg = new URL(inject("pgUrl"));
  const key = await identityFile();
  const configFile = path.join(await tempDir("strongroom-simpitr-"), "sim.config.json");
  const managed = { username: decodeURIComponent(pg.username), password: decodeURIComponent(pg.password) };
  await writeFile(
    configFile,
    JSON.stringify({
      name: `simpitr${process.pid}`,
      prefix: "pg",
      bucket: { create: true },
      recipients: [key.recipient],
      identitySecretArn: secretArn("identity"),
      network: { create: true },
      databases: [
        // A server the team runs: its host archives WAL (signed); base backups come from its
        // host (signed) and from BackupFlow's task (mode both: unsigned, committed by the flow).
        // Its secret holds the connection: the rig's server, whose port is known only once it runs.
        {
          id: "ledger",
          secretArn: secretArn("ledger"),
          secretHas: ["host", "port", "dbname"],
          walArchiving: true,
          walSigners: [host.signer],
          mode: "both",
          // Today's newest only: each base BackupFlow takes retires the one before it.
          retention: { daily: 1, weekly: 0, monthly: 0 },
        },
        { id: "plain", secretArn: secretArn("plain"), host: pg.hostname, port: Number(pg.port), dbname: "postgres" },
      ],
      sim: {
        secrets: {
          [secretArn("identity")]: key.identity,
          [secretArn("plain")]: managed,
          [secretArn("ledger")]: { ...managed, host: "127.0.0.1", port: 1, dbname: "postgres" },
        },
      },
    }),
  );
  sim = await Sim.start({ configFile, log: (line) => log.push(line) });
  storeUrl = [...sim.deployment.functions.values()].find((f) => f.environment.STORE_URL)?.environment
    .STORE_URL as string;
  rig = await startPitrRig("simpitr", "ledger", { s3StoreUrl: storeUrl, key, signing: host });
  const server = new URL(rig.cluster.url);
  await new SecretsManagerClient({}).send(
    new PutSecretValueCommand({
      SecretId: "sim/ledger",
      SecretString: JSON.stringify({
        username: "postgres",
        password: decodeURIComponent(server.password),
        host: "127.0.0.1",
        port: Number(server.port),
        dbname: "postgres",
      }),
    }),
  );
  await sql(rig.cluster.url, "create table entries (id int primary key, amount numeric not null)");
  const base = await runCli(["basebackup", ...rig.pushArgs(), "--json"], { DATABASE_URL: rig.cluster.url });
  if (base.code !== 0) throw new Error(base.stderr);
  baseId = (JSON.parse(base.stdout) as { baseId: string }).baseId;
  for (let i = 1; i <= 3; i++) {
    await sql(rig.cluster.url, `insert into entries values (${i}, ${i * 10})`);
    await switchAndArchive(rig.cluster.url);
  }
}, 240_000);

afterAll(async () => {
  await rig?.stop();
  await sim?.stop();
});

/** The input the database's pitr verify schedule starts VerifyFlow with, as the template declares it. */
function pitrScheduleInput(databaseId: string): unknown {
  const flow = sim.deployment.flows.get("VerifyFlow");
  const schedule = sim.deployment.schedules.find(
    (s) =>
      s.targetArn === flow?.arn &&
      (s.input as { databaseId?: string; kind?: string }).databaseId === databaseId &&
      (s.input as { kind?: string }).kind === "pitr",
  );
  expect(schedule, `a schedule verifies ${databaseId}'s point-in-time recovery`).toBeDefined();
  return schedule?.input;
}

async function verifyRows(databaseId: string) {
  const table = sim.deployment.tables.find((t) => t.name.includes("Audit"))?.name as string;
  const out = await dynamoClient().send(
    new QueryCommand({
      TableName: table,
      KeyConditionExpression: "pk = :pk",
      ExpressionAttributeValues: { ":pk": { S: `db#${databaseId}` } },
    }),
  );
  return (out.Items ?? [])
    .map((i) => unmarshall(i) as { event: string; backupId?: string; details?: Record<string, unknown> })
    .filter((r) => r.event.startsWith("verify."));
}

const denied = (r: ExecutionResult) => (r.calls ?? []).filter((c) => c.decision !== "Allowed");

describe("npm run sim: VerifyFlow of a point-in-time recovery", () => {
  it("only a database with walArchiving has the daily pitr verify schedule", () => {
    expect(pitrScheduleInput("ledger")).toEqual({ databaseId: "ledger", kind: "pitr" });
    const flow = sim.deployment.flows.get("VerifyFlow");
    expect(
      sim.deployment.schedules.filter(
        (s) => s.targetArn === flow?.arn && (s.input as { kind?: string }).kind === "pitr",
      ),
    ).toHaveLength(1);
  });

  it("recovers the newest signed base to a random point inside its task: verify rows of kind pitr naming the manifest, the RTO as a metric, and readiness counts it", async () => {
    const result = await sim.run("VerifyFlow", pitrScheduleInput("ledger"));
    expect(result.status, `${result.error} ${JSON.stringify(result.worker)}\n${log.slice(-30).join("\n")}`).toBe(
      "SUCCEEDED",
    );
    expect(result.states).toEqual([
      "Plan verify",
      "Audit verify.start",
      "Storage?",
      "Run verify task",
      "Record verification",
      "Audit verify.ok",
      "Verified",
    ]);
    expect(denied(result)).toEqual([]);
    const manifestSha256 = createHash("sha256")
      .update(await getBytes(store(), baseKeys("ledger", baseId).manifest))
      .digest("hex");
    const plan = (result.output as { plan: { backupId: string; kind: string; command: string[] } }).plan;
    expect(plan).toMatchObject({ backupId: baseId, kind: "pitr" });
    expect(plan.command).toEqual(expect.arrayContaining(["--pitr", "--signer", host.signer]));
    const rows = await verifyRows("ledger");
    expect(rows.map((r) => r.event)).toEqual(["verify.start", "verify.ok"]);
    for (const r of rows) {
      expect(r.backupId).toBe(baseId);
      expect(r.details).toMatchObject({ kind: "pitr", manifestSha256 });
    }
    const metrics = Object.fromEntries(result.metrics.map((m) => [m.name, m.value]));
    expect(metrics.VerificationOk).toBe(1);
    expect(metrics.VerifyRestoreSeconds).toBeGreaterThan(0);
    const [summary] = await listPitrSummaries(store(), "ledger", baseId);
    expect(summary).toMatchObject({ outcome: "verified", manifestSha256, point: { chosen: "random" } });
    // The deployed status now counts it, from the audit table alone.
    const table = sim.deployment.tables.find((t) => t.name.includes("Audit"))?.name as string;
    const status = await readPitrStatus({
      store: store(),
      databaseId: "ledger",
      signers: new Set([host.signer]),
      audit: new DynamoAuditLog(dynamoClient(), table, "db#ledger"),
      now: new Date(),
      limits: { maxBaseAgeMs: 86_400_000, maxVerifyAgeMs: 86_400_000 },
      log: { debug() {}, info() {}, warn() {}, error() {} },
    });
    expect(status).toMatchObject({ ready: true, problems: [], newestVerified: { baseId } });
  }, 240_000);

  it("never plans a base a store writer put in the bucket: an unsigned copy named newer is passed over for the signed one", async () => {
    const s = store();
    const planted = "29991231T000000Z-aaaaaa";
    const signed = JSON.parse((await getBytes(s, baseKeys("ledger", baseId).manifest)).toString("utf8"));
    const { signature: _signature, ...unsigned } = signed;
    await s.put(
      baseKeys("ledger", planted).manifest,
      Readable.from([Buffer.from(JSON.stringify({ ...unsigned, baseId: planted }))]),
    );
    const result = await sim.run("VerifyFlow", pitrScheduleInput("ledger"));
    expect(result.status, `${result.error} ${JSON.stringify(result.worker)}`).toBe("SUCCEEDED");
    expect((result.output as { plan: { backupId: string } }).plan.backupId).toBe(baseId);
    expect((await verifyRows("ledger")).every((r) => r.backupId === baseId)).toBe(true);
    await s.delete(baseKeys("ledger", planted).manifest); // the halt it causes in retention is a later test's
  }, 240_000);

  it("refuses a pitr verification of a database without walArchiving at the plan, before any row or task", async () => {
    const result = await sim.run("VerifyFlow", { databaseId: "plain", kind: "pitr" });
    expect(result.status).toBe("FAILED");
    expect(result.states).not.toContain("Run verify task");
    expect(`${result.error} ${result.cause}`).toContain("InvalidInputError");
    expect(`${result.cause}`).toContain("has no point-in-time recovery to verify");
    expect(await verifyRows("plain")).toEqual([]);
    // And a console user's kind that is not one is refused by the plan's schema.
    const odd = await sim.run("VerifyFlow", { databaseId: "ledger", kind: "pitr; --keep" });
    expect(odd.status).toBe("FAILED");
    expect(`${odd.cause}`).toContain("InvalidInputError");
  }, 120_000);

  it("BackupFlow with kind base, started by the database's own schedule, takes a base backup inside its task over a replication connection: unsigned, committed by the flow's backup.ok row of kind base, then planned and verified", async () => {
    const flow = sim.deployment.flows.get("BackupFlow");
    const schedule = sim.deployment.schedules.find(
      (s) => s.targetArn === flow?.arn && (s.input as { kind?: string }).kind === "base",
    );
    expect(schedule?.input).toEqual({ databaseId: "ledger", kind: "base" });
    const result = await sim.run("BackupFlow", schedule?.input);
    expect(result.status, `${result.error} ${JSON.stringify(result.worker)}\n${log.slice(-30).join("\n")}`).toBe(
      "SUCCEEDED",
    );
    expect(denied(result)).toEqual([]);
    const plan = (result.output as { plan: { backupId: string; kind: string; command: string[] } }).plan;
    expect(plan.kind).toBe("base");
    expect(plan.command).toContain("--unsigned");
    const bytes = await getBytes(store(), baseKeys("ledger", plan.backupId).manifest);
    expect(JSON.parse(bytes.toString("utf8")).signature).toBeUndefined();
    const manifestSha256 = createHash("sha256").update(bytes).digest("hex");
    const table = sim.deployment.tables.find((t) => t.name.includes("Audit"))?.name as string;
    const rows = await readAll(new DynamoAuditLog(dynamoClient(), table, "db#ledger"));
    expect(rows.filter((r) => r.backupId === plan.backupId).map((r) => [r.event, r.details?.kind])).toEqual([
      ["backup.start", undefined],
      ["backup.ok", "base"],
    ]);
    expect(rows.find((r) => r.backupId === plan.backupId && r.event === "backup.ok")?.details?.manifestSha256).toBe(
      manifestSha256,
    );
    // Its own staleness metric: in mode both, base backups never stand in for logical ones.
    expect(result.metrics.find((m) => m.name === "BaseBackupRecorded")?.value).toBe(1);
    expect(result.metrics.find((m) => m.name === "BackupRecorded")).toBeUndefined();
    // Retention (today's newest only) retired the host's base, by rows before deletes: its
    // manifest, object and verify results are gone, and the WAL below the new base's first segment.
    const retired = rows.filter((r) => r.event === "retain.delete");
    expect(retired.map((r) => [r.backupId, r.details?.kind])).toEqual([
      [baseId, "base"],
      [undefined, "wal"],
    ]);
    const kept = JSON.parse(bytes.toString("utf8")) as { walSegments: { first: string } };
    expect(retired[1]?.details?.keptFrom).toBe(kept.walSegments.first);
    const left: string[] = [];
    for await (const o of listAll(store(), "ledger/")) left.push(o.key);
    expect(left.filter((k) => k.startsWith(`ledger/base/${baseId}/`))).toEqual([]);
    const wal = left.filter((k) => k.startsWith("ledger/wal/")).map((k) => k.slice("ledger/wal/".length));
    expect(wal.length).toBeGreaterThan(0);
    // Below the new base's first segment, at most the one PostgreSQL switched out as the
    // base started: archived after that start, it stays until a later base (another line's
    // WAL, for all retention can tell).
    const below = wal.filter((n) => !n.endsWith(".history") && n.slice(8, 24) < kept.walSegments.first.slice(8, 24));
    expect(below.length, below.join(" ")).toBeLessThanOrEqual(1);
    expect(retired[1]?.details?.objects).toBeGreaterThan(0);
    expect((result.output as { pruned: { bases: { wal: { deleted: number } } } }).pruned.bases.wal.deleted).toBe(
      retired[1]?.details?.objects,
    );
    // The next pitr verification plans the newest base, this one, and verifies it.
    const verified = await sim.run("VerifyFlow", pitrScheduleInput("ledger"));
    expect(verified.status, `${verified.error} ${JSON.stringify(verified.worker)}`).toBe("SUCCEEDED");
    expect((verified.output as { plan: { backupId: string } }).plan.backupId).toBe(plan.backupId);
  }, 240_000);

  it("halts retention of bases and WAL on a manifest a store writer planted: the base is committed, nothing of the bases or WAL deleted, and the flow fails with PruneHaltedError and alarms", async () => {
    const s = store();
    const planted = baseKeys("ledger", "29991231T000000Z-bbbbbb").manifest;
    await s.put(planted, Readable.from([Buffer.from("{}")]));
    const before: string[] = [];
    for await (const o of listAll(s, "ledger/")) before.push(o.key);
    const result = await sim.run("BackupFlow", { databaseId: "ledger", kind: "base" });
    expect(result.status).toBe("FAILED");
    expect(result.states.slice(-6)).toEqual([
      "Plan retention",
      "Audit retain.delete",
      "Delete retired",
      "Audit backup.fail",
      "Notify failure",
      "BackupFlow failed",
    ]);
    expect(denied(result)).toEqual([]);
    expect(`${result.error}`).toBe("PruneHaltedError");
    expect(`${result.cause}`).toContain("29991231T000000Z-bbbbbb");
    expect(result.published.map((p) => p.subject)).toEqual(["strongroom: BackupFlow failed"]);
    const plan = (result.output as { plan?: { backupId: string } } | undefined)?.plan;
    const after: string[] = [];
    for await (const o of listAll(s, "ledger/")) after.push(o.key);
    // Only the new base's objects came; nothing went.
    expect(before.filter((k) => !after.includes(k))).toEqual([]);
    const table = sim.deployment.tables.find((t) => t.name.includes("Audit"))?.name as string;
    const rows = await readAll(new DynamoAuditLog(dynamoClient(), table, "db#ledger"));
    const newBase = after.find((k) => !before.includes(k) && k.endsWith("/manifest.json")) as string;
    const newId = newBase.split("/")[2] as string;
    expect(plan === undefined || plan.backupId === newId).toBe(true);
    expect(rows.filter((r) => r.backupId === newId).map((r) => r.event)).toEqual([
      "backup.start",
      "backup.ok",
      "backup.fail",
    ]);
    expect(rows.filter((r) => r.event === "retain.delete")).toHaveLength(2); // the earlier test's only
    await s.delete(planted);
  }, 240_000);

  it("fails, never verifies, when a segment the recovery needs is gone: the failed result recorded, verify.fail of kind pitr, VerificationOk 0, and the alarm message", async () => {
    // The newest base's own first segment: no recovery from it can reach consistency.
    const manifests: string[] = [];
    for await (const o of listAll(store(), "ledger/base/")) {
      // Not the store writer's planted copy (an earlier test's), which nothing counts.
      if (/^ledger\/base\/[^/]+\/manifest\.json$/.test(o.key) && !o.key.includes("29991231")) manifests.push(o.key);
    }
    const newest = JSON.parse((await getBytes(store(), manifests.sort().at(-1) as string)).toString("utf8")) as {
      baseId: string;
      walSegments: { first: string };
    };
    baseId = newest.baseId;
    await store().delete(`ledger/wal/${newest.walSegments.first}`);
    const result = await sim.run("VerifyFlow", pitrScheduleInput("ledger"));
    expect(result.status).toBe("FAILED");
    expect(result.states).toEqual([
      "Plan verify",
      "Audit verify.start",
      "Storage?",
      "Run verify task",
      "Record failed verification",
      "Inconclusive?",
      "Audit verify.fail",
      "Notify failure",
      "VerifyFlow failed",
    ]);
    expect(denied(result)).toEqual([]);
    expect(result.worker?.name).toBe("VerificationFailedError");
    const rows = await verifyRows("ledger");
    expect(rows.at(-1)).toMatchObject({ event: "verify.fail", backupId: baseId, details: { kind: "pitr" } });
    expect(result.metrics.find((m) => m.name === "VerificationOk")?.value).toBe(0);
    expect(result.published.map((p) => p.subject)).toEqual(["strongroom: VerifyFlow failed"]);
    const failed = (await listPitrSummaries(store(), "ledger", baseId)).at(-1);
    expect(failed).toMatchObject({ outcome: "failed" });
    expect(failed?.checks.find((c) => c.name === "wal")).toMatchObject({ ok: false });
  }, 240_000);
});
