import { chmod, rm, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { readAll } from "#core/audit/audit-log.ts";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { runCli } from "../helpers/cli.ts";
import { identityFile, newStore, type StoreUnderTest } from "../helpers/fixture.ts";
import { createDatabase, sql } from "../helpers/pg.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * An extension no verifier can have (as RDS's aws_s3 is for every self-run server):
 * `verify --skip-extension` restores without it and without everything the archive
 * records as depending on it, runs every check on the rest, and the result is "verified
 * with exclusions", listing them. The extension here is one of our own, installed on the
 * rig's PostgreSQL 15 for the backup and removed before the verify, so that no server
 * here has it, exactly as aws_s3 is on the source and nowhere else. It has what aws_s3
 * has: a type, functions, and a configuration table whose rows pg_dump dumps.
 */
const pgUrl = inject("pgUrl");
const share = "/usr/share/postgresql/15/extension";
const ext = `strongroom_rds_only_${process.pid}`;
const files = [path.join(share, `${ext}.control`), path.join(share, `${ext}--1.0.sql`)];

type Key = Awaited<ReturnType<typeof identityFile>>;
let b: { store: StoreUnderTest; key: Key; backupId: string };

const exec = (url: string, statements: string[]) => sql(url, statements.join(";\n"));

async function verify(...args: string[]) {
  const scratchDir = await tempDir("strongroom-scratch-");
  await chmod(scratchDir, 0o755);
  const r = await runCli(["verify", "--identity", b.key.file, "--scratch-dir", scratchDir, "--json", ...args], {
    STRONGROOM_STORE: b.store.url,
  });
  return { ...r, result: r.stdout.trim() ? JSON.parse(r.stdout) : undefined };
}

beforeAll(async () => {
  await writeFile(files[0] as string, `default_version = '1.0'\nrelocatable = false\nschema = public\n`);
  await writeFile(
    files[1] as string,
    [
      "CREATE TYPE s3_uri AS (bucket text, key text);",
      "CREATE FUNCTION s3_import(u s3_uri) RETURNS int LANGUAGE sql AS 'select 1';",
      "CREATE TABLE s3_settings (name text primary key, value text);",
      "SELECT pg_catalog.pg_extension_config_dump('s3_settings', '');",
    ].join("\n"),
  );
  const db = await createDatabase(pgUrl, "rdsonly");
  await exec(db.url, [
    `create extension ${ext}`,
    // The user's row in the extension's configuration table: dumped as data whose table
    // is the extension's, which a restore without the extension must leave out.
    "insert into s3_settings values ('region', 'eu-west-1')",
    "create table imports (id int primary key, source s3_uri)",
    "insert into imports select g, row('bucket', 'key' || g)::s3_uri from generate_series(1, 20) g",
    "create view import_calls as select id, s3_import(source) as n from imports",
    "create function import_one(u s3_uri) returns int language sql as 'select 1'",
    // Unrelated, and checked: a table with rows, a view, an index, a foreign key.
    "create table customers (id int primary key, name text)",
    "insert into customers select g, 'c' || g from generate_series(1, 30) g",
    "create table orders (id int primary key, customer int references customers, total numeric)",
    "insert into orders select g, 1 + g % 30, g * 1.5 from generate_series(1, 200) g",
    "create index on orders (total)",
    "create view big_orders as select * from orders where total > 100",
  ]);
  const store = await newStore("file");
  const key = await identityFile();
  const r = await runCli(["backup", "--recipient", key.recipient, "--database-id", "rdsonly"], {
    DATABASE_URL: db.url,
    STRONGROOM_STORE: store.url,
  });
  expect(r.code, r.stderr).toBe(0);
  b = { store, key, backupId: r.stdout.trim() };
  // From here on, no server on this machine has the extension.
  await Promise.all(files.map((f) => rm(f, { force: true })));
}, 120_000);

afterAll(async () => {
  await Promise.all(files.map((f) => rm(f, { force: true })));
});

describe("verify --skip-extension", () => {
  it("without it, the extension no verifier has makes the verification inconclusive", async () => {
    const r = await verify("--jobs", "1");
    expect(r.code, r.stderr).toBe(3);
    expect(r.result.missing).toEqual([expect.objectContaining({ kind: "extension", name: ext })]);
  }, 180_000);

  for (const jobs of ["1", "2"]) {
    it(`restores without the extension and its dependents, checks the rest and is verified with exclusions (--jobs ${jobs})`, async () => {
      const r = await verify("--skip-extension", ext, "--jobs", jobs);
      expect(r.code, JSON.stringify(r.result?.checks)).toBe(0);
      expect(r.result).toMatchObject({ ok: true, outcome: "verified", excluded: { extensions: [ext] } });
      const left = (r.result.excluded.entries as Array<{ desc: string; schema: string; name: string }>).map(
        (e) => `${e.desc} ${e.schema}.${e.name}`,
      );
      // What depends on it, by the archive's dependency data: the extension, the table
      // with a column of its type (and that table's rows and key), the view calling its
      // function, the function taking its type, and the rows of its configuration table.
      expect(left).toEqual(
        expect.arrayContaining([
          `EXTENSION .${ext}`,
          "TABLE public.imports",
          "TABLE DATA public.imports",
          "CONSTRAINT public.imports imports_pkey",
          "VIEW public.import_calls",
          "FUNCTION public.import_one(public.s3_uri)",
          "TABLE DATA public.s3_settings",
        ]),
      );
      expect(r.result.excluded.objects).toBe(left.length);
      // Nothing unrelated is left out.
      expect(left.filter((e) => /customers|orders/.test(e))).toEqual([]);
      // Every check ran on the rest, and passed.
      expect(
        r.result.checks.map((c: { name: string; ok: boolean; skipped?: boolean }) => [
          c.name,
          c.ok,
          c.skipped ?? false,
        ]),
      ).toEqual([
        ["preflight", true, false],
        ["restore", true, false],
        ["row-counts", true, false],
        ["schema", true, false],
        ["constraints", true, false],
      ]);
      const detail = (name: string) => r.result.checks.find((c: { name: string }) => c.name === name).detail as string;
      expect(detail("restore")).toContain(`without 1 extension (${ext})`);
      expect(detail("row-counts")).toMatch(/\b2 tables\b.*\b230 rows\b|\b230 rows\b.*\b2 tables\b/);
      expect(r.result.rto.jobs).toBe(Number(jobs));
      // The audit row says what was left out (extension names and a count; no tables).
      const rows = (await readAll(new StoreAuditLog(b.store.store, "db#rdsonly"))).filter((row) =>
        row.event.startsWith("verify."),
      );
      expect(rows.at(-1)).toMatchObject({
        event: "verify.ok",
        details: { excluded: [ext], excludedObjects: left.length },
      });
      expect(JSON.stringify(rows.at(-1))).not.toContain("imports");
    }, 180_000);
  }

  it("shows in status as verified with exclusions, and counts as verified", async () => {
    const status = await runCli(["status", "--database-id", "rdsonly"], { STRONGROOM_STORE: b.store.url });
    expect(status.stdout).toContain(`verified with exclusions (without ${ext})`);
    const json = await runCli(["status", "--json", "--database-id", "rdsonly"], { STRONGROOM_STORE: b.store.url });
    const [db] = JSON.parse(json.stdout);
    expect(db.newestVerified).toMatchObject({ backupId: b.backupId, excluded: [ext] });
    expect(db.lastVerification).toMatchObject({ outcome: "verified", excluded: [ext] });
  }, 60_000);

  it("ignores a name the backup does not hold: one list serves every database", async () => {
    const r = await verify("--skip-extension", "aws_s3", "--skip-extension", ext, "--jobs", "1");
    expect(r.code, r.stderr).toBe(0);
    expect(r.result.excluded.extensions).toEqual([ext]);
  }, 180_000);
});
