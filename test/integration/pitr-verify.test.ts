import { existsSync } from "node:fs";
import { chmod, chown, copyFile, readdir, readFile, utimes, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey, parseSigningKey } from "#core/audit/row-signature.ts";
import { parseLsn } from "#core/pitr/lsn.ts";
import type { PitrVerification } from "#core/pitr/pitr-verification.ts";
import { decodeWalHeader, encodeWalHeader, signWalRecord } from "#core/pitr/wal-record.ts";
import { openStore } from "#core/store/open-store.ts";
import { runCli } from "../helpers/cli.ts";
import { allKeys } from "../helpers/fixture.ts";
import { sql } from "../helpers/pg.ts";
import {
  type PitrRig,
  queryWhenUp,
  restoreLatest,
  startPitrRig,
  stopRecovered,
  switchAndArchive,
} from "../helpers/pitr-rig.ts";
import { readAll } from "../helpers/streams.ts";

/**
 * `verify --pitr`: a base backup and its archived WAL recovered into a scratch cluster to
 * a point in the window and checked there, on a real PostgreSQL 15 archiving through
 * `wal-push`. A good archive verifies at a random point and at a given time; one with a
 * segment planted or removed fails, never verifies; and the recovered databases' code
 * reaches neither the identity nor the verifier's environment.
 */
let rig: PitrRig;
/** Created only if code in the recovered cluster ran as the verifier's superuser. */
const SHADOW_MARK = `/tmp/strongroom-shadowed-${process.pid}`;
let baseId: string;
let t: string;
/** A position after the third insert, before its switch: inside the archive, with records after it. */
let late: string;
const kept: string[] = [];

type Result = PitrVerification & { stored: { full: string; summary: string }; kept?: string };

const verifyPitr = (...more: string[]) =>
  runCli(["verify", "--pitr", ...rig.fetchArgs(), "--signing-key", rig.signingKeyFile, "--json", ...more]);

beforeAll(async () => {
  rig = await startPitrRig("pitr-verify");
  // What the source's own roles and configuration may hold, which a verification must not obey:
  // a database owner's function shadowing amcheck's through the search_path it sets, a database
  // closed to connections, and (a superuser's) ALTER SYSTEM settings that would steer a recovery.
  await sql(rig.cluster.url, "create role app_owner login");
  await sql(rig.cluster.url, "create database app owner app_owner");
  const app = rig.cluster.url.replace(/\/postgres$/, "/app");
  await sql(app, "create schema evil authorization app_owner; create table public.accounts (id int primary key)");
  await sql(
    app,
    `create function evil.verify_heapam(oid) returns setof int language plpgsql as $$ begin
       execute 'copy (select 1) to program ''touch ${SHADOW_MARK}''';
       return;
     end $$`,
  );
  await sql(app, "alter function evil.verify_heapam(oid) owner to app_owner");
  await sql(rig.cluster.url, "alter database app set search_path = evil, public");
  await sql(rig.cluster.url, "create database closed");
  await sql(rig.cluster.url.replace(/\/postgres$/, "/closed"), "create table kept (id int primary key)");
  await sql(rig.cluster.url, "alter database closed allow_connections false");
  await sql(rig.cluster.url, "alter system set recovery_target = 'immediate'");
  await sql(
    rig.cluster.url,
    `alter system set recovery_end_command = 'echo "2026-01-01 00:00:00.000 UTC [1] LOG:  selected new timeline ID: 9" >&2'`,
  );
  const b = await runCli(
    ["basebackup", ...rig.pushArgs(), "--json"],
    { DATABASE_URL: rig.cluster.url },
    rig.owner ? { user: rig.owner } : {},
  );
  if (b.code !== 0) throw new Error(b.stderr);
  baseId = (JSON.parse(b.stdout) as { baseId: string }).baseId;
  // WAL after the base across several segments, so that the window has room for a point.
  await sql(rig.cluster.url, "create table ledger (n int primary key, note text)");
  for (let i = 1; i <= 3; i++) {
    await sql(
      rig.cluster.url,
      `insert into ledger select g, md5(g::text) from generate_series(${i * 1000}, ${i * 1000 + 999}) g`,
    );
    if (i === 2) {
      const [{ now }] = (await sql<{ now: string }>(rig.cluster.url, "select now()::text as now")) as [{ now: string }];
      t = now;
      await new Promise((r) => setTimeout(r, 50));
    }
    if (i === 3) {
      const [{ lsn }] = (await sql<{ lsn: string }>(
        rig.cluster.url,
        "select pg_current_wal_insert_lsn()::text as lsn",
      )) as [{ lsn: string }];
      late = lsn;
    }
    await switchAndArchive(rig.cluster.url);
  }
}, 180_000);

afterAll(async () => {
  if (rig) await stopRecovered(rig, kept);
  await rig?.stop();
});

describe("strongroom verify --pitr", () => {
  it("refuses a base whose manifest is not the one a plan resolved, before recovering or storing anything; and --manifest-sha256 needs --base", async () => {
    const before = await allKeys(await openStore(rig.storeUrl), `${rig.databaseId}/base/${baseId}/verifications/`);
    const r = await verifyPitr("--base", baseId, "--manifest-sha256", "0".repeat(64));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `the manifest of base backup ${rig.databaseId}/${baseId} is not the one the verification was planned for`,
    );
    expect(r.stderr).toContain("IntegrityError");
    expect(await allKeys(await openStore(rig.storeUrl), `${rig.databaseId}/base/${baseId}/verifications/`)).toEqual(
      before,
    );
    const usage = await verifyPitr("--manifest-sha256", "0".repeat(64));
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("give it with --base");
  });

  it("recovers the base and its WAL to a random point in the window, and PostgreSQL's log says it stopped there; amcheck passes; the result is stored beside the base", async () => {
    const r = await verifyPitr();
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const result = JSON.parse(r.stdout) as Result;
    expect(result).toMatchObject({ kind: "pitr", ok: true, outcome: "verified", baseId, timelines: [1] });
    expect(result.point).toMatchObject({ kind: "lsn", chosen: "random" });
    expect(parseLsn(result.reached?.lsn ?? "0/0")).toBeGreaterThanOrEqual(parseLsn(result.point.value ?? "FF/0"));
    expect(result.reached?.timeline).toBe(2);
    expect(result.checks.map((c) => [c.name, c.ok])).toEqual([
      ["wal", true],
      ["base", true],
      ["recovery", true],
      ["amcheck", true],
    ]);
    expect(result.wal.files).toBeGreaterThanOrEqual(2);
    // amcheck ran its own functions in every database, the closed one too, and none of the database's.
    const amcheck = result.checks.find((c) => c.name === "amcheck");
    expect(amcheck?.detail).toContain('"app"');
    expect(amcheck?.detail).toContain('"closed"');
    expect(existsSync(SHADOW_MARK)).toBe(false);
    // The base's recovery_target = 'immediate' was not obeyed: it reached the random point, past consistency.
    expect(result.reached?.stopped).toMatch(/^recovery stopping after WAL location/);
    expect(result.rto.replaySeconds).toBeGreaterThan(0);
    expect(result.scratch?.isolation).toBe(rig.owner ? "separate-user" : "same-user");
    const store = await openStore(rig.storeUrl);
    expect(result.stored.summary.startsWith(`${rig.databaseId}/base/${baseId}/verifications/`)).toBe(true);
    const summary = (await readAll(await store.get(result.stored.summary))).toString();
    expect(summary).not.toContain("detail");
    expect((await readAll(await store.get(result.stored.full))).subarray(0, 21).toString()).toBe(
      "age-encryption.org/v1",
    );
    // Audited as verify rows naming the base's manifest.
    const audit = await auditShow();
    expect(audit.stdout).toContain('"verify.ok"');
    expect(audit.stdout).toContain(result.manifestSha256);
  }, 180_000);

  it("recovers to a given time and runs the user's checks there: only what was committed before it", async () => {
    const checks = path.join(rig.work, "checks.sql");
    await writeFile(checks, "select count(*) = 2000 from ledger;\nselect max(n) = 2999 from ledger;\n");
    const r = await verifyPitr("--to-time", t, "--checks", checks);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as Result;
    expect(result.point).toEqual({ kind: "time", value: t, chosen: "given" });
    expect(result.reached?.stopped).toMatch(/^recovery stopping before commit/);
    expect(result.checks.find((c) => c.name === "user-sql")).toMatchObject({ ok: true });
    // The same checks against a later point fail: the check is real.
    await writeFile(checks, "select count(*) = 2000 from ledger;\n");
    const later = await verifyPitr("--checks", checks, "--to-lsn", late);
    expect(later.code).toBe(1);
    expect((JSON.parse(later.stdout) as Result).checks.find((c) => c.name === "user-sql")).toMatchObject({ ok: false });
  }, 240_000);

  it("gives the recovered databases' code neither the identity nor the verifier's environment: the server runs as another user, with an environment of its own, and never holds the key", async () => {
    if (!rig.owner) return;
    // An identity only root may read, as on a verifier.
    const identity = path.join(rig.work, "root-only-identity.txt");
    await copyFile(rig.key.file, identity);
    await chown(identity, 0, 0);
    await chmod(identity, 0o600);
    const r = await runCli(
      [
        "verify",
        "--pitr",
        ...rig.fetchArgs().map((a) => (a === rig.key.file ? identity : a)),
        "--keep",
        "--signing-key",
        rig.signingKeyFile,
        "--json",
      ],
      { STRONGROOM_SECRET_CANARY: "canary-value", AWS_SECRET_ACCESS_KEY: "aws-canary" },
    );
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as Result;
    const socket = /psql -h (\S+) -U (\S+)/.exec(result.kept ?? "");
    expect(socket).not.toBeNull();
    kept.push(path.join(path.dirname(socket?.[1] as string), "data"));
    const url = `postgres://${socket?.[2]}@/template1?host=${encodeURIComponent(socket?.[1] as string)}`;
    // As the superuser the recovered cluster's code may run as (a SECURITY DEFINER function, an index expression):
    await expect(sql(url, `select pg_read_file('${identity}')`)).rejects.toThrow(/permission denied/i);
    // Nor, on the database host, what its server's user holds: the signing key and the file store.
    await expect(sql(url, `select pg_read_file('${rig.signingKeyFile}')`)).rejects.toThrow(/permission denied/i);
    await expect(sql(url, `select pg_ls_dir('${new URL(rig.storeUrl).pathname}')`)).rejects.toThrow(
      /permission denied/i,
    );
    const [{ environ }] = (await sql<{ environ: string }>(
      url,
      "select encode(pg_read_binary_file('/proc/self/environ'), 'escape') as environ",
    )) as [{ environ: string }];
    expect(environ).not.toMatch(/canary|STRONGROOM|AWS_|AGE-SECRET/);
    // No WAL fetcher with a key in its configuration: restore_command copies from a directory.
    const [{ command }] = (await sql<{ command: string }>(
      url,
      "select current_setting('restore_command') as command",
    )) as [{ command: string }];
    expect(command).toMatch(/^cp /);
    expect(command).not.toContain("identity");
    expect(await readFile(identity, "utf8")).toContain("AGE-SECRET-KEY");
  }, 180_000);

  it("restore --pitr --to-latest replays the whole archive although the source's configuration says recovery_target = 'immediate'", async () => {
    const dir = path.join(rig.work, "restored-latest");
    kept.push(dir);
    const port = await restoreLatest(rig, dir);
    expect(await queryWhenUp<{ n: string }>(rig.urlOn(port), "select count(*)::text as n from ledger")).toEqual([
      { n: "3000" },
    ]);
    const auto = await readFile(path.join(dir, "postgresql.auto.conf"), "utf8");
    expect(auto).toContain("# disabled by strongroom restore --pitr: recovery_target = 'immediate'");
  }, 180_000);

  it("list shows the base backup a trusted signer signed, and without a signer says why it shows none", async () => {
    const r = await runCli([
      "list",
      "--store",
      rig.storeUrl,
      "--database-id",
      rig.databaseId,
      "--signer",
      rig.signer,
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const listed = JSON.parse(r.stdout) as { backups: unknown[]; bases: Array<{ baseId: string }> };
    expect(listed.backups).toEqual([]);
    expect(listed.bases.map((b) => b.baseId)).toEqual([baseId]);
    const text = await runCli([
      "list",
      "--store",
      rig.storeUrl,
      "--database-id",
      rig.databaseId,
      "--signer",
      rig.signer,
    ]);
    expect(text.stdout).toContain("base backups (point-in-time recovery):");
    expect(text.stdout).toContain(baseId);
    const unsigned = await runCli(["list", "--store", rig.storeUrl, "--database-id", rig.databaseId]);
    expect(unsigned.stderr).toContain("no --signer says whose count");
  }, 60_000);

  it("status shows the window, the archive's age and the last verify --pitr, and is ready; --max-wal-age gates on the archive's age", async () => {
    const args = ["status", "--store", rig.storeUrl, "--database-id", rig.databaseId, "--signer", rig.signer];
    const r = await runCli([...args, "--max-wal-age", "1h", "--json"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const [status] = JSON.parse(r.stdout) as Array<{
      ready: boolean;
      pitr: {
        newestBase: { baseId: string };
        window: { through: string };
        newestWal: { ageSeconds: number };
        lastVerification: { outcome: string };
      };
    }>;
    expect(status?.ready).toBe(true);
    expect(status?.pitr).toMatchObject({ newestBase: { baseId }, lastVerification: { outcome: "verified" } });
    const text = await runCli(args);
    expect(text.stdout).toContain("point-in-time recovery:");
    await new Promise((resolve) => setTimeout(resolve, 2100));
    // A store writer refreshing the objects' modification times does not make the archive fresh: its signed time counts.
    const walDir = path.join(new URL(rig.storeUrl).pathname, rig.databaseId, "wal");
    const now = new Date();
    for (const f of await readdir(walDir)) await utimes(path.join(walDir, f), now, now);
    const stale = await runCli([...args, "--max-wal-age", "1s"]);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toMatch(/point-in-time recovery: newest archived WAL is \d+s old \(limit 1s\)/);
  }, 120_000);

  it("fails, never verifies, when a WAL file in the window was planted (signed by another key) or removed", async () => {
    const store = await openStore(rig.storeUrl);
    const names = (await store.list(`${rig.databaseId}/wal/00000001`)).objects
      .map((o) => path.posix.basename(o.key))
      .filter((n) => /^[0-9A-F]{24}$/.test(n))
      .sort();
    const victim = names.at(-2) as string;
    const key = `${rig.databaseId}/wal/${victim}`;
    const genuine = await readAll(await store.get(key));
    const { record, bodyOffset } = decodeWalHeader(genuine, key);
    const forger = parseSigningKey(generateSigningKey().secret);
    await store.delete(key);
    await store.putIfAbsent(
      key,
      Buffer.concat([encodeWalHeader(signWalRecord(record, forger)), genuine.subarray(bodyOffset)]),
    );
    const planted = await verifyPitr("--to-lsn", late);
    expect(planted.code).toBe(1);
    const p = JSON.parse(planted.stdout) as Result;
    expect(p).toMatchObject({ ok: false, outcome: "failed" });
    expect(p.checks[0]).toMatchObject({ name: "wal", ok: false });
    // Its header is not signed by the host: it counts as missing, and the gap is named.
    expect(p.checks[0]?.detail).toContain(`gap at ${victim}`);
    expect(planted.stderr).toContain("[VerificationFailedError]");

    await store.delete(key);
    // An unsigned object at the missing name does not fill the gap either.
    await store.putIfAbsent(key, Buffer.from("not a WAL file\n"));
    const removed = await verifyPitr();
    expect(removed.code).toBe(1);
    const g = JSON.parse(removed.stdout) as Result;
    expect(g.ok).toBe(false);
    expect(g.checks[0]).toMatchObject({ name: "wal", ok: false });
    expect(g.checks[0]?.detail).toContain(`gap at ${victim}`);
    expect(g.checks.slice(1).every((c) => c.skipped)).toBe(true);
    const audit = await auditShow();
    expect(audit.stdout).toContain('"verify.fail"');
    // And status says so: the gap, and the failed verification.
    const status = await runCli([
      "status",
      "--store",
      rig.storeUrl,
      "--database-id",
      rig.databaseId,
      "--signer",
      rig.signer,
    ]);
    expect(status.code).toBe(1);
    expect(status.stderr).toContain(`gap at ${victim}`);
    expect(status.stderr).toContain("last verify --pitr");
  }, 240_000);
});

/** The database's audit chain, as `audit show` prints it, counting only rows the host signed. */
function auditShow() {
  return runCli([
    "audit",
    "show",
    "--store",
    rig.storeUrl,
    "--signer",
    rig.signer,
    "--scope",
    `db#${rig.databaseId}`,
    "--json",
  ]);
}
