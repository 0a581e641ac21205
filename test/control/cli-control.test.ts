import { readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { QueryCommand } from "@aws-sdk/client-dynamodb";
import { describe, expect, inject, it } from "vitest";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { writeBackup } from "../helpers/backups.ts";
import { runCli } from "../helpers/cli.ts";
import { createTable, dynamoClient } from "../helpers/dynamo.ts";
import { identityFile, newStore } from "../helpers/fixture.ts";
import { createDatabase, sql } from "../helpers/pg.ts";

describe("control plane from the CLI, local mode", () => {
  it("records backup and restore in the store's audit chain, and verify names a tampered row", async () => {
    const { store, url } = await newStore("file");
    const key = await identityFile();
    const db = await createDatabase(inject("pgUrl"), "audited");
    await sql(db.url, "create table t as select g from generate_series(1, 10) g");
    expect(
      (
        await runCli(["backup", "--recipient", key.recipient, "--database-id", "audited"], {
          DATABASE_URL: db.url,
          STRONGROOM_STORE: url,
        })
      ).code,
    ).toBe(0);
    const target = await createDatabase(inject("pgUrl"), "audited_copy");
    expect(
      (await runCli(["restore", "--identity", key.file], { STRONGROOM_STORE: url, STRONGROOM_TARGET_URL: target.url }))
        .code,
    ).toBe(0);

    const shown = await runCli(["audit", "show", "--scope", "db#audited"], { STRONGROOM_STORE: url });
    expect(shown.stdout).toMatch(/^SEQ\s+AT\s+EVENT\s+ACTOR/m);
    expect([...shown.stdout.matchAll(/(backup|restore)\.(start|ok)/g)].map((m) => m[0])).toEqual([
      "backup.start",
      "backup.ok",
      "restore.start",
      "restore.ok",
    ]);
    const ok = await runCli(["audit", "verify", "--scope", "db#audited", "--json"], { STRONGROOM_STORE: url });
    expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, chains: [{ scope: "db#audited", ok: true, rows: 4 }] });

    // Someone edits the third row's details by hand.
    const file = path.join(fileURLToPath(url), new StoreAuditLog(store, "db#audited").keyOf("000000000003"));
    const row = JSON.parse(await readFile(file, "utf8"));
    row.details.jobs = 8;
    await writeFile(file, JSON.stringify(row));
    const bad = await runCli(["audit", "verify", "--scope", "db#audited"], { STRONGROOM_STORE: url });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(
      "strongroom: error: audit chain db#audited: broken at row 000000000003: edited (its content does not match its hash)",
    );
  });

  it("rebuilds the DynamoDB catalog from committed backups, skipping payloads without a manifest and manifests nothing commits", async () => {
    const { store, url } = await newStore("s3");
    const ids = [
      await writeBackup(store, "shop", new Date("2026-11-01T02:00:00Z")),
      await writeBackup(store, "shop", new Date("2026-11-02T02:00:00Z")),
    ];
    await store.putIfAbsent("shop/backups/20261103T020000Z-orphan/dump.pgc.zst.age", "payload without a manifest");
    await writeBackup(store, "shop", new Date("2026-11-04T02:00:00Z"), { commit: false });
    const table = await createTable(dynamoClient(), "catalog");
    const r = await runCli(["catalog", "rebuild", "--table", table], { STRONGROOM_STORE: url });
    expect(r.stdout).toBe("catalogued 2 backups\n");
    const items = await dynamoClient().send(
      new QueryCommand({
        TableName: table,
        KeyConditionExpression: "pk = :pk",
        ExpressionAttributeValues: { ":pk": { S: "db#shop" } },
      }),
    );
    expect(items.Items?.map((i) => i.backupId?.S)).toEqual(ids);
  });
});
