import { Readable } from "node:stream";
import { GetItemCommand } from "@aws-sdk/client-dynamodb";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { unmarshall } from "@aws-sdk/util-dynamodb";
import { beforeAll, describe, expect, it } from "vitest";
import { verifyChain } from "#core/audit/audit-chain.ts";
import { readAll } from "#core/audit/audit-log.ts";
import { DynamoAuditLog } from "#core/audit/dynamo-audit-log.ts";
import { ERROR_NAMES } from "#core/errors.ts";
import { StaticSettings } from "#core/flows/flow-settings.ts";
import {
  BACKUP_DURATION_SECONDS,
  BACKUP_RECORDED,
  BACKUP_STORED_BYTES,
  databaseDimensions,
  METRICS_NAMESPACE,
  VERIFY_STORAGE_EXCEEDED,
} from "#core/flows/metrics.ts";
import { objectKey } from "#core/keys.ts";
import { listAll } from "#core/store/object-store.ts";
import { s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import { createHandler as auditAppend } from "../../functions/audit-append/handler.ts";
import { createHandler as catalogRecord } from "../../functions/catalog-record/handler.ts";
import { createHandler as destinationProbe } from "../../functions/destination-probe/handler.ts";
import { createHandler as readiness } from "../../functions/readiness/handler.ts";
import { createHandler as retentionPrune } from "../../functions/retention-prune/handler.ts";
import { createHandler as verificationRecord } from "../../functions/verification-record/handler.ts";
import { RecordingMetrics, type SimRecord } from "../../infra/sim/local-tasks.ts";
import { manifestSha256, writeBackup, writeVerification } from "../helpers/backups.ts";
import { createTable, dynamoClient } from "../helpers/dynamo.ts";
import { newStore, type StoreUnderTest } from "../helpers/fixture.ts";
import { lambdaContext } from "../helpers/lambda.ts";

const context = lambdaContext;

const NOW = new Date("2026-11-21T12:00:00Z");
let auditTable: string;
let catalogTable: string;
let s3: S3Client;
let store: StoreUnderTest;

beforeAll(async () => {
  const ddb = dynamoClient();
  [auditTable, catalogTable, store] = await Promise.all([
    createTable(ddb, "audit"),
    createTable(ddb, "catalog"),
    newStore("s3"),
  ]);
  s3 = new S3Client(s3ClientConfigFromEnv());
});

/** Invalid input fails with a typed error naming the field, and the name is in the stable list. */
async function expectInvalid(run: Promise<unknown>, field: RegExp, name = "InvalidInputError"): Promise<void> {
  const err = (await run.then(
    () => undefined,
    (e: unknown) => e,
  )) as Error;
  expect(err?.name).toBe(name);
  expect(err.message).toMatch(field);
  expect(ERROR_NAMES).toContain(err.name);
}

describe("audit-append handler", () => {
  const handler = () => auditAppend({ dynamodb: dynamoClient(), tableName: auditTable, now: () => NOW });

  it("appends a verifying row to the database's chain", async () => {
    const out = await handler()(
      { event: "backup.start", actor: "backup-flow", databaseId: "shop", details: { schedule: "daily" } },
      context,
    );
    expect(out.seq).toBe("000000000001");
    const rows = await readAll(new DynamoAuditLog(dynamoClient(), auditTable, "db#shop"));
    expect(rows[0]).toMatchObject({ event: "backup.start", at: NOW.toISOString(), actor: "backup-flow" });
    expect(verifyChain(rows).ok).toBe(true);
  });

  it("appends many rows only for retention's deletions: a backup.ok or verify.ok in bulk is refused, and nothing is written", async () => {
    for (const event of ["backup.ok", "verify.ok", "verify.inconclusive"] as const) {
      await expectInvalid(
        handler()(
          { event, actor: "x", databaseId: "bulk", rows: [{ backupId: "20261121T020000Z-abc234", details: {} }] },
          context,
        ),
        /rows is for retain\.delete and gc\.delete only/,
      );
    }
    expect(await readAll(new DynamoAuditLog(dynamoClient(), auditTable, "db#bulk"))).toEqual([]);
  });

  it("rejects unknown fields and unknown events", async () => {
    await expectInvalid(
      handler()({ event: "backup.ok", actor: "x", evil: 1 } as never, context),
      /must NOT have additional properties 'evil'/,
    );
    await expectInvalid(
      handler()({ event: "backup.deleted", actor: "x" } as never, context),
      /\/event must be equal to one of the allowed values/,
    );
  });
});

describe("catalog-record handler", () => {
  const handler = () => catalogRecord({ s3, dynamodb: dynamoClient(), storeUrl: store.url, tableName: catalogTable });

  it("writes the catalog item built from the manifest", async () => {
    const backupId = await writeBackup(store.store, "shop", NOW);
    const key = await handler()({ databaseId: "shop", backupId }, context);
    // The manifest's SHA-256 goes on to the flow's backup.ok row, which commits the backup.
    expect(key).toEqual({
      pk: "db#shop",
      sk: `backup#${backupId}`,
      manifestSha256: await manifestSha256(store.store, "shop", backupId),
    });
    const item = await dynamoClient().send(
      new GetItemCommand({ TableName: catalogTable, Key: { pk: { S: "db#shop" }, sk: { S: `backup#${backupId}` } } }),
    );
    expect(unmarshall(item.Item ?? {})).toMatchObject({
      backupId,
      databaseId: "shop",
      serverVersion: "15.18",
      storedBytes: 9,
    });
  });

  it("emits the backup's stored bytes and duration with its DatabaseId and service, as the dashboard reads them", async () => {
    const record: SimRecord = { published: [], metrics: [] };
    const handler = catalogRecord({
      s3,
      dynamodb: dynamoClient(),
      storeUrl: store.url,
      tableName: catalogTable,
      metrics: new RecordingMetrics(record, METRICS_NAMESPACE),
    });
    const backupId = await writeBackup(store.store, "cmetrics", NOW, { tookMs: 95_500 });
    await handler({ databaseId: "cmetrics", backupId }, context);
    // Three objects of 3 bytes each; 95.5 s from the manifest's startedAt to its finishedAt.
    const dimensions = databaseDimensions("cmetrics");
    expect(record.metrics).toEqual([
      { namespace: METRICS_NAMESPACE, name: BACKUP_RECORDED, value: 1, dimensions },
      { namespace: METRICS_NAMESPACE, name: BACKUP_STORED_BYTES, value: 9, dimensions },
      { namespace: METRICS_NAMESPACE, name: BACKUP_DURATION_SECONDS, value: 95.5, dimensions },
    ]);
  });

  it("warns the day of the backup when no verify task's storage can hold it: VerifyStorageExceeded, for the deployment's alarm", async () => {
    const record: SimRecord = { published: [], metrics: [] };
    const handler = catalogRecord({
      s3,
      dynamodb: dynamoClient(),
      storeUrl: store.url,
      tableName: catalogTable,
      metrics: new RecordingMetrics(record, METRICS_NAMESPACE),
    });
    // 100 GB fits ephemeral storage; 400 GB, an EBS volume: neither warns.
    for (const [i, databaseBytes] of [100e9, 400e9].entries()) {
      const fits = await writeBackup(store.store, "sized", new Date(NOW.getTime() + i * 3_600_000), { databaseBytes });
      await handler({ databaseId: "sized", backupId: fits }, context);
    }
    expect(record.metrics.map((m) => m.name)).not.toContain(VERIFY_STORAGE_EXCEEDED);
    // 20 TB: more than the largest gp3 volume (16 TiB) holds.
    const tooLarge = await writeBackup(store.store, "sized", new Date(NOW.getTime() + 86_400_000), {
      databaseBytes: 20e12,
    });
    await handler({ databaseId: "sized", backupId: tooLarge }, context);
    expect(record.metrics.filter((m) => m.name === VERIFY_STORAGE_EXCEEDED)).toEqual([
      // Without DatabaseId: the one alarm watches the deployment.
      { namespace: METRICS_NAMESPACE, name: VERIFY_STORAGE_EXCEEDED, value: 1, dimensions: { service: "strongroom" } },
    ]);
  });

  it("never catalogues a payload without a manifest", async () => {
    const backupId = await writeBackup(store.store, "shop", new Date(NOW.getTime() - 3_600_000));
    await store.store.delete(objectKey("shop", backupId, "manifest"));
    const err = await handler()({ databaseId: "shop", backupId }, context).catch((e: Error) => e);
    expect((err as Error).name).toBe("BackupNotFoundError");
    const item = await dynamoClient().send(
      new GetItemCommand({ TableName: catalogTable, Key: { pk: { S: "db#shop" }, sk: { S: `backup#${backupId}` } } }),
    );
    expect(item.Item).toBeUndefined();
  });

  it("rejects input with a missing or malformed id", async () => {
    await expectInvalid(handler()({ databaseId: "shop" } as never, context), /must have required property 'backupId'/);
    await expectInvalid(
      handler()({ databaseId: "shop", backupId: "../etc" }, context),
      /\/backupId must match pattern/,
    );
  });
});

describe("retention-prune handler", () => {
  const pruneFor = (url: string) =>
    retentionPrune({ s3, dynamodb: dynamoClient(), storeUrl: url, auditTable, now: () => NOW });
  const append = () => auditAppend({ dynamodb: dynamoClient(), tableName: auditTable, now: () => NOW });
  const backups = async (n: number, databaseId: string) => {
    const own = await newStore("s3");
    const audit = new DynamoAuditLog(dynamoClient(), auditTable, `db#${databaseId}`);
    const ids: string[] = [];
    for (let d = 0; d < n; d++)
      ids.push(await writeBackup(own.store, databaseId, new Date(NOW.getTime() - d * 86_400_000 - 60_000), { audit }));
    return { own, ids, audit };
  };
  const manifestKeys = async (own: StoreUnderTest, databaseId: string) => {
    const keys: string[] = [];
    for await (const o of listAll(own.store, `${databaseId}/backups/`))
      if (o.key.endsWith("/manifest.json")) keys.push(o.key);
    return keys;
  };

  it("plans without writing, and deletes exactly the backups audit-append retired, as BackupFlow runs them", async () => {
    const { own, ids, audit } = await backups(20, "orders");
    const prune = pruneFor(own.url);
    const plan = await prune(
      { databaseId: "orders", step: "plan", policy: { daily: 3, weekly: 0, monthly: 0 } },
      context,
    );
    if (plan.step !== "plan") throw new Error("expected the plan step's output");
    expect(plan.kept.sort()).toEqual(ids.slice(0, 3).sort());
    expect(plan.retire.map((r) => r.backupId)).toEqual(ids.slice(3).reverse());
    expect(plan.retire[0]?.details).toEqual({ storedBytes: expect.any(Number), objects: expect.any(Number) });
    // Planning wrote nothing: no audit row, no object deleted.
    expect((await readAll(audit)).filter((r) => r.event === "retain.delete")).toEqual([]);
    expect(await manifestKeys(own, "orders")).toHaveLength(20);

    // The flow's next state: audit-append writes the rows, before anything is deleted.
    const appended = await append()(
      { event: "retain.delete", actor: "BackupFlow", databaseId: "orders", rows: plan.retire },
      context,
    );
    expect(appended.appended).toBe(17);
    const deleted = await prune({ databaseId: "orders", step: "delete" }, context);
    if (deleted.step !== "delete") throw new Error("expected the delete step's output");
    expect(deleted.deleted.sort()).toEqual(ids.slice(3).sort());
    expect((await manifestKeys(own, "orders")).sort()).toEqual(
      ids
        .slice(0, 3)
        .map((id) => `orders/backups/${id}/manifest.json`)
        .sort(),
    );
    const rows = await readAll(audit);
    expect(rows.filter((r) => r.event === "retain.delete").map((r) => r.backupId)).toEqual(ids.slice(3).reverse());
    expect(rows.filter((r) => r.event === "retain.delete").every((r) => r.actor === "BackupFlow")).toBe(true);
    expect(verifyChain(rows).ok).toBe(true);
  });

  it("deletes nothing that no retain.delete row retired, whatever the plan said", async () => {
    const { own } = await backups(6, "unaudited");
    const prune = pruneFor(own.url);
    const plan = await prune(
      { databaseId: "unaudited", step: "plan", policy: { daily: 2, weekly: 0, monthly: 0 } },
      context,
    );
    expect(plan.step === "plan" && plan.retire).toHaveLength(4);
    // The audit step never ran (it failed, or a caller skipped it): the delete step has no authority.
    const out = await prune({ databaseId: "unaudited", step: "delete" }, context);
    expect(out).toEqual({ step: "delete", deleted: [], bases: null, garbage: [] });
    expect(await manifestKeys(own, "unaudited")).toHaveLength(6);
  });

  it("finishes a retirement an interrupted run left, and a manifest planted under a retired id is neither deleted nor counted", async () => {
    const { own, ids, audit } = await backups(4, "resumed");
    const [newest, , , oldest] = ids as [string, string, string, string];
    await append()(
      {
        event: "retain.delete",
        actor: "BackupFlow",
        databaseId: "resumed",
        rows: [{ backupId: oldest, details: { storedBytes: 1, objects: 1 } }],
      },
      context,
    );
    // A store writer replaces a retired backup's manifest before the delete step runs.
    const third = ids[2] as string;
    await appendRetire(third);
    await own.store.put(objectKey("resumed", third, "manifest"), Readable.from([Buffer.from("{}")]));
    const prune = pruneFor(own.url);
    const out = await prune({ databaseId: "resumed", step: "delete" }, context);
    expect(out).toMatchObject({ step: "delete", deleted: [oldest] });
    expect(await manifestKeys(own, "resumed")).toContain(`resumed/backups/${third}/manifest.json`);
    // The next plan halts on the planted manifest, deleting nothing.
    await expect(
      prune({ databaseId: "resumed", step: "plan", policy: { daily: 1, weekly: 0, monthly: 0 } }, context),
    ).rejects.toMatchObject({ name: "PruneHaltedError", message: expect.stringContaining(third) });
    expect(await manifestKeys(own, "resumed")).toContain(`resumed/backups/${newest}/manifest.json`);
    expect(verifyChain(await readAll(audit)).ok).toBe(true);

    async function appendRetire(backupId: string) {
      await append()(
        { event: "retain.delete", actor: "BackupFlow", databaseId: "resumed", rows: [{ backupId }] },
        context,
      );
    }
  });

  it("prunes the logical backups when a base manifest cannot even be read (a store writer's, in another storage class): the bases halt, say why, and the delete step fails after deleting what was retired", async () => {
    const { own, ids } = await backups(4, "glacier");
    const url = new URL(own.url);
    const key = `${url.pathname.slice(1)}/glacier/base/20261203T000000Z-aaaaaa/manifest.json`;
    await s3.send(
      new PutObjectCommand({ Bucket: url.hostname, Key: key, Body: "{}", StorageClass: "GLACIER", IfNoneMatch: "*" }),
    );
    const prune = pruneFor(own.url);
    const bases = { signers: ["srsigner1AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] };
    const policy = { daily: 1, weekly: 0, monthly: 0 };
    const plan = await prune({ databaseId: "glacier", step: "plan", policy, bases }, context);
    if (plan.step !== "plan") throw new Error("expected the plan step's output");
    expect(plan.retire.map((r) => r.backupId)).toEqual(ids.slice(1).reverse());
    expect(plan.basesHalted).toMatch(/glacier\/base\/20261203T000000Z-aaaaaa\/manifest\.json cannot be read/);
    expect(plan.wal).toBeNull();
    await append()({ event: "retain.delete", actor: "BackupFlow", databaseId: "glacier", rows: plan.retire }, context);
    await expect(
      prune(
        { databaseId: "glacier", step: "delete", policy, bases, wal: plan.wal, basesHalted: plan.basesHalted },
        context,
      ),
    ).rejects.toMatchObject({ name: "PruneHaltedError", message: expect.stringContaining("cannot be read") });
    expect(await manifestKeys(own, "glacier")).toEqual([`glacier/backups/${ids[0]}/manifest.json`]);
  });

  it("rejects an unknown policy field and an impossible policy", async () => {
    const handler = retentionPrune({ s3, dynamodb: dynamoClient(), storeUrl: store.url, auditTable, now: () => NOW });
    await expectInvalid(
      handler({ databaseId: "x", step: "plan", policy: { yearly: 3 } } as never, context),
      /\/policy must NOT have additional properties 'yearly'/,
    );
    await expectInvalid(
      handler({ databaseId: "x", step: "plan", policy: { daily: 0 } }, context),
      /daily must be at least 1/,
      "InvalidPolicyError",
    );
    await expectInvalid(
      handler({ databaseId: "x", step: "plan", policy: { timeZone: "Mars/Olympus" } }, context),
      /unknown time zone "Mars\/Olympus"/,
      "InvalidPolicyError",
    );
  });
});

describe("destination-probe handler", () => {
  it("probes the configured store", async () => {
    const out = await destinationProbe({ s3, storeUrl: store.url })({}, context);
    expect(out.ok).toBe(true);
    expect(out.steps.map((s) => s.step)).toContain("protection");
  });

  it("rejects a store that is not an s3 URL", async () => {
    await expectInvalid(
      destinationProbe({ s3, storeUrl: store.url })({ store: "file:///etc" }, context),
      /\/store must match pattern/,
    );
  });
});

describe("verification-record handler", () => {
  it("puts the catalog item with the backup's newest verification and emits its outcome and restore time", async () => {
    const backupId = await writeBackup(store.store, "vrec", new Date("2026-11-20T02:00:00Z"));
    await writeVerification(store.store, "vrec", backupId, new Date("2026-11-20T05:00:00Z"), false);
    await writeVerification(store.store, "vrec", backupId, new Date("2026-11-21T05:00:00Z"), true);
    const record: SimRecord = { published: [], metrics: [] };
    const handler = verificationRecord({
      s3,
      dynamodb: dynamoClient(),
      storeUrl: store.url,
      tableName: catalogTable,
      metrics: new RecordingMetrics(record, "Strongroom"),
    });
    const manifest = await manifestSha256(store.store, "vrec", backupId);
    const out = await handler({ databaseId: "vrec", backupId, manifestSha256: manifest, ok: true }, context);
    expect(out).toMatchObject({ ok: true, at: "2026-11-21T05:00:00.000Z", restoreSeconds: 12.5 });
    const item = await dynamoClient().send(
      new GetItemCommand({
        TableName: catalogTable,
        Key: { pk: { S: "db#vrec" }, sk: { S: `backup#${backupId}` } },
      }),
    );
    expect(unmarshall(item.Item ?? {})).toMatchObject({
      lastVerifiedAt: "2026-11-21T05:00:00.000Z",
      lastVerifyOk: true,
      verifyRestoreSeconds: 12.5,
    });
    expect(record.metrics).toEqual([
      expect.objectContaining({
        name: "VerificationOk",
        value: 1,
        dimensions: expect.objectContaining({ DatabaseId: "vrec" }),
      }),
      expect.objectContaining({ name: "VerifyRestoreSeconds", value: 12.5 }),
      // Verified without exclusions: none left out.
      expect.objectContaining({ name: "VerifiedExclusions", value: 0 }),
    ]);
  });

  it("takes the verdict from the flow: a planted ok summary never turns a failed verification into a verified one", async () => {
    const backupId = await writeBackup(store.store, "vforged", new Date("2026-11-20T02:00:00Z"));
    await writeVerification(store.store, "vforged", backupId, new Date("2026-11-21T04:00:00Z"), false);
    // A store writer's summary, newer and ok.
    await writeVerification(store.store, "vforged", backupId, new Date("2026-11-21T05:00:00Z"), true);
    const record: SimRecord = { published: [], metrics: [] };
    const handler = verificationRecord({
      s3,
      dynamodb: dynamoClient(),
      storeUrl: store.url,
      tableName: catalogTable,
      metrics: new RecordingMetrics(record, "Strongroom"),
    });
    const sha = await manifestSha256(store.store, "vforged", backupId);
    const out = await handler({ databaseId: "vforged", backupId, manifestSha256: sha, ok: false }, context);
    expect(out).toMatchObject({ ok: false, at: "2026-11-21T04:00:00.000Z" });
    expect(record.metrics).toContainEqual(expect.objectContaining({ name: "VerificationOk", value: 0 }));
    const item = await dynamoClient().send(
      new GetItemCommand({
        TableName: catalogTable,
        Key: { pk: { S: "db#vforged" }, sk: { S: `backup#${backupId}` } },
      }),
    );
    expect(unmarshall(item.Item ?? {})).toMatchObject({ lastVerifyOk: false });
    await expectInvalid(
      handler({ databaseId: "vforged", backupId, manifestSha256: "0".repeat(64), ok: false }, context),
      /is not the one the verification was planned for/,
      "IntegrityError",
    );
  });

  it("refuses to record a backup that has no verification result (NotFoundError)", async () => {
    const backupId = await writeBackup(store.store, "vnone", new Date("2026-11-20T02:00:00Z"));
    const handler = verificationRecord({ s3, dynamodb: dynamoClient(), storeUrl: store.url, tableName: catalogTable });
    await expectInvalid(
      handler(
        {
          databaseId: "vnone",
          backupId,
          manifestSha256: await manifestSha256(store.store, "vnone", backupId),
          ok: true,
        },
        context,
      ),
      /has no verification result/,
      "NotFoundError",
    );
  });
});

describe("readiness handler", () => {
  it("emits each configured database's backup age, verification age and readiness", async () => {
    const now = new Date();
    const hoursAgo = (h: number) => new Date(now.getTime() - h * 3_600_000);
    const chain = (db: string) => new DynamoAuditLog(dynamoClient(), auditTable, `db#${db}`);
    const fresh = await writeBackup(store.store, "rfresh", hoursAgo(3), { audit: chain("rfresh") });
    await writeVerification(store.store, "rfresh", fresh, hoursAgo(2), true, "restore", chain("rfresh"));
    await writeBackup(store.store, "rnever", hoursAgo(30), { audit: chain("rnever") });
    const record: SimRecord = { published: [], metrics: [] };
    const database = (id: string) => ({
      id,
      backupTaskDefinition: "arn:b",
      restoreTaskDefinition: "arn:r",
      verifyTaskDefinition: "arn:v",
      retention: { daily: 7, weekly: 4, monthly: 12, timeZone: "UTC" },
      verify: { deep: false, maxAgeDays: 8 },
    });
    const handler = readiness({
      s3,
      dynamodb: dynamoClient(),
      auditTable,
      storeUrl: store.url,
      settings: new StaticSettings({ databases: [database("rfresh"), database("rnever")] }),
      now: () => now,
      metrics: new RecordingMetrics(record, "Strongroom"),
    });
    const out = await handler({}, context);
    expect(out).toEqual([
      { databaseId: "rfresh", ready: true, problems: [] },
      {
        databaseId: "rnever",
        ready: false,
        problems: ["newest backup is 30h old (limit 26h)", "no successful verification"],
      },
    ]);
    const of = (db: string) =>
      Object.fromEntries(record.metrics.filter((m) => m.dimensions.DatabaseId === db).map((m) => [m.name, m.value]));
    expect(of("rfresh")).toEqual({ NewestBackupAgeHours: 3, VerifiedAgeHours: 2, Ready: 1 });
    // Never verified: no VerifiedAgeHours at all, which the alarm counts as breaching.
    expect(of("rnever")).toEqual({ NewestBackupAgeHours: 30, Ready: 0 });
  });
});
