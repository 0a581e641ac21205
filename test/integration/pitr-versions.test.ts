import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { PitrVerification } from "#core/pitr/pitr-verification.ts";
import { embeddedServerBinDir } from "#worker/pg/scratch-cluster.ts";
import { runCli } from "../helpers/cli.ts";
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
 * Point-in-time recovery on other majors than the system's 15: PostgreSQL 14 and 17 from
 * the embedded packages archive through wal-push. 14 is backed up by Debian's
 * pg_basebackup 15 (a newer client takes an older server), recovered and verified by its
 * own server; 17 archives, and basebackup refuses it clearly (no pg_basebackup 17 here).
 */
const rigs: PitrRig[] = [];
const started: Array<{ rig: PitrRig; dir: string }> = [];

afterAll(async () => {
  for (const { rig, dir } of started) await stopRecovered(rig, [dir]);
  for (const rig of rigs) await rig.stop();
});

describe("PostgreSQL 14", () => {
  it("archives, takes a base backup, recovers to the end of the archive and verifies a random point", async () => {
    const rig = await startPitrRig("pg14", "shop", { binDir: await embeddedServerBinDir(14) });
    rigs.push(rig);
    const b = await runCli(
      ["basebackup", ...rig.pushArgs(), "--json"],
      { DATABASE_URL: rig.cluster.url },
      rig.owner ? { user: rig.owner } : {},
    );
    expect(b.code, b.stderr).toBe(0);
    expect((JSON.parse(b.stdout) as { server: { major: number } }).server.major).toBe(14);
    await sql(rig.cluster.url, "create table v (n int); insert into v select generate_series(1, 1000)");
    await switchAndArchive(rig.cluster.url);
    await sql(rig.cluster.url, "insert into v values (1001)");
    await switchAndArchive(rig.cluster.url);
    const dir = path.join(rig.work, "recovered");
    started.push({ rig, dir });
    const port = await restoreLatest(rig, dir);
    const [row] = await queryWhenUp<{ n: string; v: string }>(
      rig.urlOn(port),
      "select count(*)::text as n, current_setting('server_version_num') as v from v",
    );
    expect(row?.n).toBe("1001");
    expect(row?.v.slice(0, 2)).toBe("14");
    const v = await runCli(["verify", "--pitr", ...rig.fetchArgs(), "--json"]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    const result = JSON.parse(v.stdout) as PitrVerification;
    expect(result.scratch?.serverVersion.startsWith("14.")).toBe(true);
    expect(result.checks.every((c) => c.ok)).toBe(true);
  }, 300_000);
});

describe("a non-default wal_segment_size", () => {
  it("archives 1 MB segments (4096 to a log id, not 256), recovers to a time between two commits, and verifies a random point", async () => {
    const rig = await startPitrRig("segsize", "shop", { initdbArgs: ["--wal-segsize=1"] });
    rigs.push(rig);
    const [size] = await sql<{ s: string }>(rig.cluster.url, "select current_setting('wal_segment_size') as s");
    expect(size?.s).toBe("1MB");
    const b = await runCli(
      ["basebackup", ...rig.pushArgs(), "--json"],
      { DATABASE_URL: rig.cluster.url },
      rig.owner ? { user: rig.owner } : {},
    );
    expect(b.code, b.stderr).toBe(0);
    expect((JSON.parse(b.stdout) as { server: { walSegmentBytes: number } }).server.walSegmentBytes).toBe(1024 * 1024);
    // Several segments of rows, so the window spans many 1 MB files.
    await sql(
      rig.cluster.url,
      "create table v (n int, pad text); insert into v select g, repeat('x', 200) from generate_series(1, 20000) g",
    );
    await sql(rig.cluster.url, "insert into v values (-1, 'one')");
    const [{ t }] = (await sql<{ t: string }>(rig.cluster.url, "select now()::text as t")) as [{ t: string }];
    await new Promise((r) => setTimeout(r, 1100));
    await sql(rig.cluster.url, "insert into v values (-2, 'two')");
    const last = await switchAndArchive(rig.cluster.url);
    const wal = await walVerify(rig);
    expect(wal.code, wal.stderr).toBe(0);
    const report = JSON.parse(wal.stdout) as { bases: Array<{ through: { segment: string }; gap?: string }> };
    expect(report.bases[0]?.gap).toBeUndefined();
    expect(report.bases[0]?.through.segment).toBe(last);
    const dir = path.join(rig.work, "recovered");
    started.push({ rig, dir });
    const r = await runCli([
      "restore",
      "--pitr",
      ...rig.fetchArgs(),
      "--to-time",
      t,
      "--pgdata",
      dir,
      "--start",
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const port = (JSON.parse(r.stdout) as { started: { port: number } }).started.port;
    const marks = await queryWhenUp<{ n: number }>(rig.urlOn(port), "select n from v where n < 0 order by n desc");
    expect(marks.map((m) => m.n)).toEqual([-1]);
    const v = await runCli(["verify", "--pitr", ...rig.fetchArgs(), "--json"]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    const verified = JSON.parse(v.stdout) as PitrVerification;
    expect(verified.checks.every((c) => c.ok)).toBe(true);
    expect(verified.wal.bytes).toBe(verified.wal.files * 1024 * 1024);
  }, 300_000);
});

describe("PostgreSQL 17", () => {
  it("archives through wal-push, signed with its system identifier, and basebackup says clearly what it lacks", async () => {
    const rig = await startPitrRig("pg17", "shop", { binDir: await embeddedServerBinDir(17) });
    rigs.push(rig);
    await sql(rig.cluster.url, "create table v (n int); insert into v values (1)");
    const name = await switchAndArchive(rig.cluster.url);
    const fetched = path.join(rig.work, "fetched");
    const f = await runCli(["wal-fetch", name, fetched, ...rig.fetchArgs()]);
    expect(f.code, f.stderr).toBe(0);
    const b = await runCli(
      ["basebackup", ...rig.pushArgs()],
      { DATABASE_URL: rig.cluster.url },
      rig.owner ? { user: rig.owner } : {},
    );
    expect(b.code).toBe(1);
    expect(b.stderr).toContain("no suitable pg_basebackup for a base backup of PostgreSQL 17");
    expect(b.stderr).toContain("postgresql-client-17");
    expect(b.stderr).not.toMatch(/at .*\.ts:\d+/);
  }, 300_000);
});
