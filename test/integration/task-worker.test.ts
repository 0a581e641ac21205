import { readdir } from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, inject, it } from "vitest";
import { runCli } from "../helpers/cli.ts";
import { backedUpByCli, identityFile, newStore } from "../helpers/fixture.ts";
import { createDatabase, dbUrl, sql } from "../helpers/pg.ts";

/**
 * What the deployed flows ask of the worker in a Fargate task: the flow's backup id,
 * a restore that creates its target, and the identity from an environment variable
 * (ECS injects it from Secrets Manager; no file may hold it).
 */
describe("the worker as a flow's task runs it", () => {
  it("commits under the backup id it is given, and refuses that id a second time without touching the first", async () => {
    const db = await createDatabase(inject("pgUrl"), "taskid");
    await sql(db.url, "create table t as select 1 as x");
    const store = await newStore("file");
    const key = await identityFile();
    const env = { DATABASE_URL: db.url, STRONGROOM_STORE: store.url };
    const id = "20261121T020000Z-abcdef";
    const first = await runCli(["backup", "--recipient", key.recipient, "--backup-id", id], env);
    expect(first.code).toBe(0);
    expect(first.stdout).toBe(`${id}\n`);
    const dir = path.join(new URL(store.url).pathname, db.name, "backups", id);
    const before = await readdir(dir);

    const again = await runCli(["backup", "--recipient", key.recipient], { ...env, STRONGROOM_BACKUP_ID: id });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`backup ${db.name}/${id} already has objects in the store [AlreadyExistsError]`);
    expect(await readdir(dir)).toEqual(before);
    const list = await runCli(["list", "--json"], env);
    expect(JSON.parse(list.stdout).backups.map((b: { backupId: string }) => b.backupId)).toEqual([id]);
  });

  it("refuses a malformed --backup-id as a usage error", async () => {
    const store = await newStore("file");
    const r = await runCli(["backup", "--recipient", (await identityFile()).recipient, "--backup-id", "../x"], {
      DATABASE_URL: dbUrl(inject("pgUrl"), "postgres"),
      STRONGROOM_STORE: store.url,
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--backup-id must look like 20260421T020000Z-abc234, got "../x"');
  });

  it("restores with --create into a database that does not exist yet, reading the identity from STRONGROOM_IDENTITY", async () => {
    const { store, key } = await backedUpByCli(
      inject("pgUrl"),
      "create",
      "create table t as select g from generate_series(1, 10) g",
    );
    // A name that needs quoting: the create must not be built by pasting it into SQL.
    const name = `new "db" ${process.pid}`;
    const target = dbUrl(inject("pgUrl"), encodeURIComponent(name));
    const r = await runCli(["restore", "--create", "--json"], {
      STRONGROOM_STORE: store.url,
      STRONGROOM_TARGET_URL: target,
      STRONGROOM_IDENTITY: key.identity,
      STRONGROOM_IDENTITY_FILE: undefined,
    });
    expect(r.stderr).not.toContain(key.identity);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ tables: 1, rows: 10 });
    expect(await sql(target, "select count(*)::int as n from t")).toEqual([{ n: 10 }]);

    // --create on an existing, non-empty database does not skip the emptiness check.
    const again = await runCli(["restore", "--create"], {
      STRONGROOM_STORE: store.url,
      STRONGROOM_TARGET_URL: target,
      STRONGROOM_IDENTITY: key.identity,
    });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("[TargetNotEmptyError]");
  });

  it("says how to make a restore's missing target database: createdb, quoted for a shell, or --create; nothing is written", async () => {
    const { store, key } = await backedUpByCli(inject("pgUrl"), "notarget", "create table t as select 1 as x");
    for (const [name, shown] of [
      [`shop_copy_${process.pid}`, `createdb shop_copy_${process.pid}`],
      [`it's a copy ${process.pid}`, `createdb 'it'\\''s a copy ${process.pid}'`],
    ]) {
      const r = await runCli(["restore"], {
        STRONGROOM_STORE: store.url,
        STRONGROOM_TARGET_URL: dbUrl(inject("pgUrl"), encodeURIComponent(name as string)),
        STRONGROOM_IDENTITY: key.identity,
      });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`database ${name} does not exist`);
      expect(r.stderr).toContain(`create it (${shown}) or pass --create`);
      const exists = await sql(
        inject("pgUrl"),
        `select count(*)::int as n from pg_database where datname = '${(name as string).replaceAll("'", "''")}'`,
      );
      expect(exists).toEqual([{ n: 0 }]);
    }
  });

  it("asks for --identity, naming both variables, when neither it nor STRONGROOM_IDENTITY is given", async () => {
    const r = await runCli(["restore", "--json"], {
      STRONGROOM_STORE: "file:///nonexistent",
      STRONGROOM_TARGET_URL: dbUrl(inject("pgUrl"), "postgres"),
      STRONGROOM_IDENTITY: "",
      STRONGROOM_IDENTITY_FILE: undefined,
    });
    expect(r.code).toBe(2);
    const doc = JSON.parse(r.stdout);
    expect(doc.error.name).toBe("UsageError");
    expect(doc.error.message).toContain("STRONGROOM_IDENTITY_FILE");
    expect(doc.error.hint).toContain("STRONGROOM_IDENTITY");
  });
});
