import { DeleteObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StaticSettings } from "#core/flows/flow-settings.ts";
import { walPrefix } from "#core/keys.ts";
import { listAll } from "#core/store/object-store.ts";
import { s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import {
  AGE_NOT_FOUND_MINUTES,
  type Readiness,
  createHandler as readiness,
  type WalAgeReading,
} from "../../functions/readiness/handler.ts";
import { RecordingMetrics, type SimRecord } from "../../infra/sim/local-tasks.ts";
import { runCli } from "../helpers/cli.ts";
import { createTable, dynamoClient } from "../helpers/dynamo.ts";
import { newStore, type StoreUnderTest } from "../helpers/fixture.ts";
import { lambdaContext } from "../helpers/lambda.ts";
import { sql } from "../helpers/pg.ts";
import { type PitrRig, startPitrRig, switchAndArchive } from "../helpers/pitr-rig.ts";

/**
 * The deployed readiness of a database whose host archives its WAL into the bucket
 * (`"walArchiving": true`): a real PostgreSQL 15 archives through `wal-push` into S3
 * (moto) and takes a base backup; `verify --pitr` writes its rows into the audit table
 * (DynamoDB Local); the readiness function then judges only what the host signed, and
 * emits what the WalGap, WalUntrusted and WalArchiveAge alarms watch.
 */
let rig: PitrRig;
let store: StoreUnderTest;
let auditTable: string;
let firstBase: string;
const s3 = new S3Client(s3ClientConfigFromEnv());

beforeAll(async () => {
  store = await newStore("s3");
  auditTable = await createTable(dynamoClient(), "audit");
  rig = await startPitrRig("pready", "shop", { s3StoreUrl: store.url });
  await sql(rig.cluster.url, "create table t (id int primary key, note text)");
  const base = await runCli(["basebackup", ...rig.pushArgs(), "--json"], { DATABASE_URL: rig.cluster.url });
  expect(base.code, base.stderr).toBe(0);
  firstBase = (JSON.parse(base.stdout) as { baseId: string }).baseId;
  for (let i = 1; i <= 3; i++) {
    await sql(rig.cluster.url, `insert into t values (${i}, 'row ${i}')`);
    await switchAndArchive(rig.cluster.url);
  }
}, 180_000);

afterAll(async () => {
  await rig?.stop();
});

async function readinessRun(
  maxAgeMinutes?: number,
  now = new Date(),
  o: { s3?: S3Client; also?: string[]; walAgeOnly?: boolean } = {},
): Promise<{
  out: Readiness[];
  metrics: Record<string, Record<string, number>>;
}> {
  const record: SimRecord = { published: [], metrics: [] };
  const database = (id: string) => ({
    id,
    backupTaskDefinition: "arn:b",
    restoreTaskDefinition: "arn:r",
    verifyTaskDefinition: "arn:v",
    retention: { daily: 7, weekly: 4, monthly: 12, timeZone: "UTC" },
    verify: { deep: false, maxAgeDays: 2 },
    wal: { signers: [rig.signer], ...(maxAgeMinutes !== undefined ? { maxAgeMinutes } : {}) },
  });
  const handler = readiness({
    s3: o.s3 ?? s3,
    dynamodb: dynamoClient(),
    auditTable,
    storeUrl: store.url,
    settings: new StaticSettings({ databases: ["shop", ...(o.also ?? [])].map(database) }),
    now: () => now,
    metrics: new RecordingMetrics(record, "Strongroom"),
  });
  const out = (await handler(o.walAgeOnly ? { walAgeOnly: true } : {}, lambdaContext)) as Readiness[];
  const metrics: Record<string, Record<string, number>> = {};
  for (const m of record.metrics) {
    const db = m.dimensions.DatabaseId as string;
    metrics[db] = { ...metrics[db], [m.name]: m.value };
  }
  return { out, metrics };
}

/** The readiness of shop alone, and its metrics. */
async function readinessNow(maxAgeMinutes?: number, now = new Date()) {
  const { out, metrics } = await readinessRun(maxAgeMinutes, now);
  return { out: out.find((o) => o.databaseId === "shop"), metrics: metrics.shop ?? {} };
}

/** The archived segment names under shop/wal/, oldest first. */
async function segments(): Promise<string[]> {
  const names: string[] = [];
  for await (const o of listAll(store.store, walPrefix("shop"))) {
    const name = o.key.slice(walPrefix("shop").length);
    if (/^[0-9A-F]{24}$/.test(name)) names.push(name);
  }
  return names.sort();
}

describe("readiness of a database whose host archives its WAL", () => {
  it("emits the archive's age, no gap, no untrusted object and the base's age; not PITR-ready until a verify --pitr is in the audit table", async () => {
    const { out, metrics } = await readinessNow(30);
    expect(out?.pitr?.problems).toEqual(["no successful verify --pitr"]);
    expect(metrics.WalGaps).toBe(0);
    expect(metrics.WalUntrustedObjects).toBe(0);
    expect(metrics.WalArchiveAgeMinutes).toBeGreaterThanOrEqual(0);
    expect(metrics.WalArchiveAgeMinutes).toBeLessThan(10);
    expect(metrics.NewestBaseAgeHours).toBeLessThan(1);
    expect(metrics.PitrReady).toBe(0);
    expect(metrics.PitrVerifiedAgeHours).toBeUndefined();
    // No logical backup either: the database is not ready, and says why in both halves.
    expect(out?.ready).toBe(false);
    expect(metrics.Ready).toBe(0);
  });

  it("counts a verify --pitr only from the audit table, and is then PITR-ready", async () => {
    const verify = await runCli([
      "verify",
      "--pitr",
      ...rig.fetchArgs(),
      "--audit-table",
      auditTable,
      "--signing-key",
      rig.signingKeyFile,
      "--json",
    ]);
    expect(verify.code, verify.stderr).toBe(0);
    const { out, metrics } = await readinessNow(30);
    expect(out?.pitr).toEqual({ ready: true, problems: [] });
    expect(metrics.PitrReady).toBe(1);
    expect(metrics.PitrVerifiedAgeHours).toBeLessThan(1);
  }, 180_000);

  it("gates on maxWalAgeMinutes only when it is set: an archive older than the limit is a problem", async () => {
    // The same archive judged five minutes on, with nothing archived since (the signed pushedAt decides, not the store's clock).
    const later = new Date(Date.now() + 5 * 60_000);
    const limited = await readinessNow(2, later);
    expect(limited.out?.pitr?.problems).toEqual([
      expect.stringMatching(/^newest archived WAL is [56]m old \(limit 2m\)$/),
    ]);
    expect(limited.metrics.WalArchiveAgeMinutes).toBeGreaterThan(4.9);
    expect(limited.metrics.PitrReady).toBe(0);
    const unlimited = await readinessNow(undefined, later);
    expect(unlimited.out?.pitr?.ready).toBe(true);
    expect(unlimited.metrics.WalArchiveAgeMinutes).toBeGreaterThan(4.9);
  });

  it("asks for the newest base to be verified once it has had a verify interval: a verification of an older base does not stand for it", async () => {
    const second = await runCli(["basebackup", ...rig.pushArgs(), "--json"], { DATABASE_URL: rig.cluster.url });
    expect(second.code, second.stderr).toBe(0);
    const newest = (JSON.parse(second.stdout) as { baseId: string }).baseId;
    // Today the last verification (of the first base) is fresh and the new base is young: nothing to say.
    expect((await readinessNow(30)).out?.pitr?.problems).toEqual([]);
    const later = await readinessNow(undefined, new Date(Date.now() + 3 * 86_400_000));
    expect(later.out?.pitr?.problems).toContain(
      `the newest base backup ${newest} has not been verified by verify --pitr (the last verified is ${firstBase})`,
    );
  });

  it("judges every other database when one's objects cannot be read: that one is not ready, and says why", async () => {
    // The same moto, with a fault on one database's prefix: what an object under a foreign KMS key, or a policy, does.
    const faulty = new S3Client(s3ClientConfigFromEnv());
    faulty.middlewareStack.add(
      (next) => async (args) => {
        const input = args.input as { Prefix?: string; Key?: string };
        if (`${input.Prefix ?? ""}${input.Key ?? ""}`.includes("/ghost/")) {
          throw Object.assign(new Error("Access Denied"), { name: "AccessDenied", $metadata: { httpStatusCode: 403 } });
        }
        return next(args);
      },
      { step: "initialize" },
    );
    const { out, metrics } = await readinessRun(30, new Date(), { s3: faulty, also: ["ghost"] });
    expect(out.map((o) => o.databaseId)).toEqual(["ghost", "shop"]);
    expect(out[0]).toMatchObject({ ready: false, problems: [expect.stringMatching(/^readiness failed: \w+/)] });
    expect(out[1]?.pitr).toEqual({ ready: true, problems: [] });
    expect(metrics.ghost).toEqual({ PitrReady: 0, Ready: 0 });
    expect(metrics.shop?.PitrReady).toBe(1);
  });

  it("counts an object a store writer planted at the next segment's name as untrusted, never as archived WAL", async () => {
    const all = await segments();
    const last = all.at(-1) as string;
    const next = `${last.slice(0, 16)}${(Number.parseInt(last.slice(16), 16) + 1).toString(16).toUpperCase().padStart(8, "0")}`;
    const bucket = new URL(store.url).host;
    const key = `team/pg/${walPrefix("shop")}${next}`;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: "strongroom-wal/1 {} forged\n" }));
    try {
      const { out, metrics } = await readinessNow(30);
      expect(metrics.WalUntrustedObjects).toBe(1);
      expect(metrics.WalGaps).toBe(0);
      expect(metrics.PitrReady).toBe(0);
      expect(out?.pitr?.problems).toEqual([expect.stringContaining(`no trusted signer signed (${next})`)]);
    } finally {
      await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    }
  });

  it("every five minutes, reads the archive's age from a few requests, not every header: the hourly run's age, only that metric, and only where maxWalAgeMinutes is set", async () => {
    const now = new Date();
    const hourly = await readinessNow(30, now);
    const run = await readinessRun(30, now, { walAgeOnly: true, also: ["ghost"] });
    const readings = run.out as unknown as WalAgeReading[];
    const reading = readings.find((r) => r.databaseId === "shop");
    const ghost = readings.find((r) => r.databaseId === "ghost");
    expect(reading?.databaseId).toBe("shop");
    // The newest segment (or the .backup file beside it, a base's, archived with it).
    expect(reading?.newest?.slice(0, 24)).toBe((await segments()).at(-1));
    expect(Object.keys(run.metrics.shop ?? {})).toEqual(["WalArchiveAgeMinutes"]);
    expect(run.metrics.shop?.WalArchiveAgeMinutes).toBeCloseTo(hourly.metrics.WalArchiveAgeMinutes as number, 1);
    // Listing bases, reading the newest manifest, walking one timeline and log id, one header.
    expect(reading?.requests).toBeLessThanOrEqual(8);
    // A database with nothing archived reports an age past any limit, not silence: the alarm fires at once.
    expect(ghost).toMatchObject({ databaseId: "ghost" });
    expect(run.metrics.ghost).toEqual({ WalArchiveAgeMinutes: AGE_NOT_FOUND_MINUTES });
    const unlimited = await readinessRun(undefined, now, { walAgeOnly: true });
    expect(unlimited.out).toEqual([]);
    expect(unlimited.metrics).toEqual({});
  });

  it("every five minutes, passes over a name a store writer planted past the real ones, and never takes it for archived WAL", async () => {
    const all = await segments();
    const last = all.at(-1) as string;
    const past = `${last.slice(0, 16)}${(Number.parseInt(last.slice(16), 16) + 40).toString(16).toUpperCase().padStart(8, "0")}`;
    const bucket = new URL(store.url).host;
    const key = `team/pg/${walPrefix("shop")}${past}`;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: "strongroom-wal/1 {} forged\n" }));
    try {
      const run = await readinessRun(30, new Date(), { walAgeOnly: true });
      const [reading] = run.out as unknown as WalAgeReading[];
      expect(reading?.newest?.slice(0, 24)).toBe(last);
      expect(run.metrics.shop?.WalArchiveAgeMinutes).toBeLessThan(10);
    } finally {
      await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    }
  });

  it("names a segment removed from the middle of the archive as a gap", async () => {
    const all = await segments();
    const removed = all.at(-2) as string;
    const bucket = new URL(store.url).host;
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: `team/pg/${walPrefix("shop")}${removed}` }));
    const { out, metrics } = await readinessNow(30);
    expect(metrics.WalGaps).toBeGreaterThanOrEqual(1);
    expect(metrics.PitrReady).toBe(0);
    expect(out?.pitr?.problems.join("\n")).toContain(`the archived WAL has a gap at ${removed}`);
  });
});
