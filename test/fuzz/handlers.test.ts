import { S3Client } from "@aws-sdk/client-s3";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { ERROR_NAMES, StrongroomError } from "#core/errors.ts";
import { StaticSettings } from "#core/flows/flow-settings.ts";
import { s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import { createHandler as auditAppend } from "../../functions/audit-append/handler.ts";
import { createHandler as catalogRecord } from "../../functions/catalog-record/handler.ts";
import { createHandler as destinationProbe } from "../../functions/destination-probe/handler.ts";
import { createHandler as planBackup } from "../../functions/plan-backup/handler.ts";
import { createHandler as planRestore } from "../../functions/plan-restore/handler.ts";
import { createHandler as planVerify } from "../../functions/plan-verify/handler.ts";
import { createHandler as readiness } from "../../functions/readiness/handler.ts";
import { createHandler as retentionPrune } from "../../functions/retention-prune/handler.ts";
import { createHandler as verificationRecord } from "../../functions/verification-record/handler.ts";
import { manifestSha256, writeBackup } from "../helpers/backups.ts";
import { createTable, dynamoClient } from "../helpers/dynamo.ts";
import { newStore } from "../helpers/fixture.ts";
import { lambdaContext } from "../helpers/lambda.ts";
import { type Json, mutated } from "./mutate.ts";

/**
 * Every handler, fed random events and mutations of valid ones, against real moto and
 * DynamoDB Local: it answers, or fails with a StrongroomError whose name Step Functions
 * can match. Never a TypeError, never an SDK exception under its own name.
 */
type Handler = (event: unknown, context: typeof lambdaContext) => Promise<unknown>;
const NOW = new Date("2026-11-21T12:00:00Z");
const handlers: Record<string, { handler: Handler; valid: Json }> = {};

beforeAll(async () => {
  const ddb = dynamoClient();
  const [auditTable, catalogTable, store] = await Promise.all([
    createTable(ddb, "audit"),
    createTable(ddb, "catalog"),
    newStore("s3"),
  ]);
  const backupId = await writeBackup(store.store, "shop", new Date("2026-11-20T02:00:00Z"));
  const s3 = new S3Client(s3ClientConfigFromEnv());
  const as = (h: unknown) => h as Handler;
  handlers["audit-append"] = {
    handler: as(auditAppend({ dynamodb: ddb, tableName: auditTable, now: () => NOW })),
    valid: { event: "backup.start", actor: "backup-flow", databaseId: "shop", details: { n: 1 } },
  };
  handlers["catalog-record"] = {
    handler: as(catalogRecord({ s3, dynamodb: ddb, storeUrl: store.url, tableName: catalogTable })),
    valid: {
      databaseId: "shop",
      backupId,
      manifestSha256: await manifestSha256(store.store, "shop", backupId),
      ok: true,
    },
  };
  handlers["retention-prune"] = {
    handler: as(retentionPrune({ s3, dynamodb: ddb, storeUrl: store.url, auditTable, now: () => NOW })),
    valid: { databaseId: "shop", step: "plan", policy: { daily: 7, weekly: 4, monthly: 12, timeZone: "UTC" } },
  };
  handlers["destination-probe"] = {
    handler: as(destinationProbe({ s3, storeUrl: store.url })),
    valid: { store: store.url },
  };
  const settings = new StaticSettings({
    databases: [
      {
        id: "shop",
        backupTaskDefinition: "arn:b",
        restoreTaskDefinition: "arn:r",
        verifyTaskDefinition: "arn:v",
        retention: { daily: 7, weekly: 4, monthly: 12, timeZone: "UTC" },
        verify: { deep: false, maxAgeDays: 8 },
      },
    ],
  });
  handlers["plan-backup"] = { handler: as(planBackup({ settings, now: () => NOW })), valid: { databaseId: "shop" } };
  handlers["plan-restore"] = {
    handler: as(planRestore({ s3, dynamodb: ddb, storeUrl: store.url, auditTable, settings, now: () => NOW })),
    valid: { databaseId: "shop", backupId: "latest", target: { database: "shop_copy" } },
  };
  handlers["plan-verify"] = {
    handler: as(planVerify({ s3, dynamodb: ddb, storeUrl: store.url, auditTable, settings, now: () => NOW })),
    valid: { databaseId: "shop", backupId: "latest" },
  };
  handlers["verification-record"] = {
    handler: as(verificationRecord({ s3, dynamodb: ddb, storeUrl: store.url, tableName: catalogTable })),
    valid: { databaseId: "shop", backupId },
  };
  handlers.readiness = {
    handler: as(readiness({ s3, dynamodb: ddb, auditTable, storeUrl: store.url, settings, now: () => NOW })),
    valid: {},
  };
});

describe.for([
  "audit-append",
  "catalog-record",
  "retention-prune",
  "destination-probe",
  "plan-backup",
  "plan-restore",
  "plan-verify",
  "verification-record",
  "readiness",
])("%s handler", (name) => {
  it("answers random and mutated events, or fails with a typed error", async () => {
    const { handler, valid } = handlers[name] as { handler: Handler; valid: Json };
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.jsonValue(), mutated(valid), mutated(valid)), async (event) => {
        const error = await handler(event, lambdaContext).then(
          () => undefined,
          (err: unknown) => err,
        );
        if (error === undefined) return;
        if (!(error instanceof StrongroomError)) throw new Error(`untyped error: ${String(error)}`, { cause: error });
        expect(ERROR_NAMES).toContain(error.name);
      }),
      { numRuns: 60 },
    );
  });
});

describe("what a console user can make VerifyFlow do", () => {
  // VerifyFlow's input is the console's: skipping an extension (verified with exclusions)
  // or sizing the task's storage is the deployed config's to say, never an execution's.
  it.for([{ skipExtensions: ["postgis"] }, { ephemeralStorageGiB: 21 }, { command: ["verify", "--deep"] }])(
    "plan-verify refuses %j beside the database and backup",
    async (extra) => {
      const { handler } = handlers["plan-verify"] as { handler: Handler };
      const error = await handler({ databaseId: "shop", backupId: "latest", ...extra }, lambdaContext).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(error).toMatchObject({ name: "InvalidInputError" });
      expect((error as Error).message).toContain("must NOT have additional properties");
    },
  );
});
