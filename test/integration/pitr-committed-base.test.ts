import { rm } from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readAll } from "#core/audit/audit-log.ts";
import { DynamoAuditLog } from "#core/audit/dynamo-audit-log.ts";
import { type BaseManifest, baseKeys } from "#core/pitr/base-manifest.ts";
import type { PitrVerification } from "#core/pitr/pitr-verification.ts";
import type { WalVerifyReport } from "#core/pitr/wal-verify.ts";
import { getBytes } from "#core/store/object-store.ts";
import { openStore } from "#core/store/open-store.ts";
import { runCli } from "../helpers/cli.ts";
import { createTable, dynamoClient } from "../helpers/dynamo.ts";
import { sql } from "../helpers/pg.ts";
import {
  type PitrRig,
  queryWhenUp,
  restoreLatest,
  startPitrRig,
  stopRecovered,
  switchAndArchive,
  walVerify,
} from "../helpers/pitr-rig.ts";

/**
 * A base backup taken where the database host's key is not (a backup server pulling over
 * a replication connection, as a deployed task will): `basebackup --audit-table` writes
 * its manifest unsigned and commits the SHA-256 of its bytes in the audit table. Every
 * reader given that table counts it; none counts it without, nor counts other bytes.
 * A real PostgreSQL 15 archiving through wal-push (signed by the host), DynamoDB Local.
 */
let rig: PitrRig;
let table: string;
let baseId: string;
const started: string[] = [];

/** basebackup's flags without the host's signing key. */
const keyless = () => ["--store", rig.storeUrl, "--database-id", rig.databaseId, "--recipient", rig.key.recipient];
beforeAll(async () => {
  rig = await startPitrRig("committed-base");
  table = await createTable(dynamoClient(), "audit");
  await sql(rig.cluster.url, "create table t (n int primary key)");
}, 120_000);

afterAll(async () => {
  if (rig) await stopRecovered(rig, started);
  await rig?.stop();
});

describe("a base backup committed by the audit table, not signed", () => {
  it("needs a signing key or an audit table, and says which where", async () => {
    const r = await runCli(["basebackup", ...keyless()], { DATABASE_URL: rig.cluster.url });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("got neither a signing key nor --audit-table");
  });

  it("is written unsigned and committed in the table: a backup.ok row of kind base naming its manifest's bytes", async () => {
    // As the server's user, as on a host: the file store is its.
    const r = await runCli(
      ["basebackup", ...keyless(), "--audit-table", table, "--json"],
      { DATABASE_URL: rig.cluster.url },
      rig.owner ? { user: rig.owner } : {},
    );
    expect(r.code, r.stderr).toBe(0);
    const manifest = JSON.parse(r.stdout) as BaseManifest;
    baseId = manifest.baseId;
    expect(manifest.signature).toBeUndefined();
    const rows = await readAll(new DynamoAuditLog(dynamoClient(), table, `db#${rig.databaseId}`));
    const bytes = await getBytes(await openStore(rig.storeUrl), baseKeys(rig.databaseId, baseId).manifest);
    const { createHash } = await import("node:crypto");
    expect(rows.map((row) => [row.event, row.backupId, row.details])).toEqual([
      ["backup.ok", baseId, { kind: "base", manifestSha256: createHash("sha256").update(bytes).digest("hex") }],
    ]);
    // A base's commit names no logical manifest: audit verify does not call it a lost backup.
    const audit = await runCli([
      "audit",
      "verify",
      "--store",
      rig.storeUrl,
      "--table",
      table,
      "--scope",
      `db#${rig.databaseId}`,
    ]);
    expect(audit.code, audit.stdout + audit.stderr).toBe(0);
  });

  it("never writes over a tar already at its id (a store writer's): the run fails with AlreadyExistsError, the tar stays as it was, and no manifest is written", async () => {
    const id = "20261203T000000Z-planta";
    const store = await openStore(rig.storeUrl);
    const { Readable } = await import("node:stream");
    await store.put(baseKeys(rig.databaseId, id).object, Readable.from([Buffer.from("a store writer's bytes")]));
    if (rig.owner) {
      const { execFileSync } = await import("node:child_process");
      const dir = path.dirname(new URL(`${rig.storeUrl}/${baseKeys(rig.databaseId, id).object}`).pathname);
      execFileSync("chown", ["-R", `${rig.owner.uid}:${rig.owner.gid}`, path.dirname(dir)]);
    }
    const r = await runCli(
      ["basebackup", ...keyless(), "--base-id", id, "--unsigned", "--json"],
      { DATABASE_URL: rig.cluster.url },
      rig.owner ? { user: rig.owner } : {},
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("AlreadyExistsError");
    expect((await getBytes(store, baseKeys(rig.databaseId, id).object)).toString()).toBe("a store writer's bytes");
    await expect(store.stat(baseKeys(rig.databaseId, id).manifest)).rejects.toThrow(/no such object/);
    await store.delete(baseKeys(rig.databaseId, id).object);
  });

  it("counts for wal verify and list only with the table: without it, it is an untrusted manifest", async () => {
    await sql(rig.cluster.url, "insert into t values (1)");
    await switchAndArchive(rig.cluster.url);
    const without = await walVerify(rig);
    expect(without.code).toBe(1);
    expect((JSON.parse(without.stdout) as WalVerifyReport).bases).toEqual([]);
    const withTable = await walVerify(rig, "--audit-table", table);
    expect(withTable.code, withTable.stderr).toBe(0);
    expect((JSON.parse(withTable.stdout) as WalVerifyReport).bases[0]).toMatchObject({ baseId, recoverable: true });
    const list = await runCli([
      "list",
      "--store",
      rig.storeUrl,
      "--database-id",
      rig.databaseId,
      "--signer",
      rig.signer,
      "--audit-table",
      table,
      "--json",
    ]);
    expect(list.code, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as { bases: BaseManifest[] }).bases.map((b) => b.baseId)).toEqual([baseId]);
  });

  it("recovers with restore --pitr and verifies with verify --pitr given the table, its rows of kind pitr in it", async () => {
    const dir = path.join(rig.work, "recovered");
    started.push(dir);
    const port = await restoreLatest(rig, dir, "--audit-table", table);
    expect(await queryWhenUp<{ n: number }>(rig.urlOn(port), "select n from t")).toEqual([{ n: 1 }]);
    const v = await runCli(["verify", "--pitr", ...rig.fetchArgs(), "--audit-table", table, "--json"]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    expect((JSON.parse(v.stdout) as PitrVerification).baseId).toBe(baseId);
    const rows = await readAll(new DynamoAuditLog(dynamoClient(), table, `db#${rig.databaseId}`));
    expect(rows.filter((r) => r.event === "verify.ok").map((r) => r.details?.kind)).toEqual(["pitr"]);
  }, 180_000);

  it("never counts other bytes under its id: a store writer's edited manifest is refused, and restore finds no base", async () => {
    const store = await openStore(rig.storeUrl);
    const key = baseKeys(rig.databaseId, baseId).manifest;
    const genuine = await getBytes(store, key);
    const edited = JSON.parse(genuine.toString("utf8")) as BaseManifest;
    await store.delete(key);
    await store.putIfAbsent(key, `${JSON.stringify({ ...edited, stoppedAt: new Date().toISOString() }, null, 2)}\n`);
    try {
      const report = JSON.parse((await walVerify(rig, "--audit-table", table)).stdout) as WalVerifyReport;
      expect(report.bases).toEqual([]);
      const dir = path.join(rig.work, "refused");
      const r = await runCli([
        "restore",
        "--pitr",
        ...rig.fetchArgs(),
        "--audit-table",
        table,
        "--pgdata",
        dir,
        "--to-latest",
      ]);
      expect(r.code).toBe(1);
      await expect(rm(dir)).rejects.toMatchObject({ code: "ENOENT" });
    } finally {
      await store.delete(key);
      await store.putIfAbsent(key, genuine);
    }
  }, 120_000);
});
