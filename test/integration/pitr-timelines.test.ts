import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { chown, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey, parseSigningKey } from "#core/audit/row-signature.ts";
import type { PitrVerification } from "#core/pitr/pitr-verification.ts";
import { decodeWalHeader, encodeWalHeader, signWalRecord, WAL_FORMAT } from "#core/pitr/wal-record.ts";
import type { WalVerifyReport } from "#core/pitr/wal-verify.ts";
import { getBytes } from "#core/store/object-store.ts";
import { openStore } from "#core/store/open-store.ts";
import { freePort } from "#worker/service-process.ts";
import { runCli } from "../helpers/cli.ts";
import { sql } from "../helpers/pg.ts";
import {
  commandLine,
  type PitrRig,
  queryWhenUp,
  startPitrRig,
  stopRecovered,
  switchAndArchive,
  waitFor,
  walVerify,
} from "../helpers/pitr-rig.ts";
import { readAll } from "../helpers/streams.ts";

/**
 * Repeated point-in-time recoveries, each on a new timeline (docs/pitr.md, Timelines): a
 * recovered server that takes the source's place archives its timeline into the same
 * archive, and a later recovery follows its signed history across the switch, to a
 * timeline no one has used. A real PostgreSQL 15 archiving through `wal-push`.
 */
let rig: PitrRig;
const started: string[] = [];

interface Recovered {
  baseId: string;
  timeline: { target: number; path: number[] };
  started: { port: number; timeline: number; stoppedAt?: string };
}

const pitr = (dir: string, ...more: string[]) =>
  runCli(["restore", "--pitr", ...rig.fetchArgs(), "--pgdata", dir, "--start", "--json", ...more]);

async function now(url: string): Promise<string> {
  const [{ t }] = (await sql<{ t: string }>(url, "select now()::text as t")) as [{ t: string }];
  // Commits after it land in a later microsecond than the time itself.
  await new Promise((r) => setTimeout(r, 50));
  return t;
}

beforeAll(async () => {
  rig = await startPitrRig("timelines");
}, 120_000);

afterAll(async () => {
  if (rig) await stopRecovered(rig, started);
  await rig?.stop();
});

describe("repeated point-in-time recovery across timelines", () => {
  let t1: string;
  let t2: string;

  it("a recovered server with --archive archives its timeline's signed history and its own WAL into the same archive", async () => {
    const b = await runCli(
      ["basebackup", ...rig.pushArgs()],
      { DATABASE_URL: rig.cluster.url },
      rig.owner ? { user: rig.owner } : {},
    );
    expect(b.code, b.stderr).toBe(0);
    await sql(rig.cluster.url, "create table tl (n int)");
    await sql(rig.cluster.url, "insert into tl values (1)");
    t1 = await now(rig.cluster.url);
    await sql(rig.cluster.url, "insert into tl values (2)");
    await switchAndArchive(rig.cluster.url);

    const dir = path.join(rig.work, "takes-over");
    started.push(dir);
    const r = await pitr(
      dir,
      "--to-time",
      t1,
      "--archive",
      "--recipient",
      rig.key.recipient,
      "--signing-key",
      rig.signingKeyFile,
    );
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as Recovered;
    expect(result.started.timeline).toBe(2);
    expect(result.timeline).toEqual({ target: 1, path: [1] });
    const url = rig.urlOn(result.started.port);
    expect(await queryWhenUp<{ n: number }>(url, "select n from tl order by n")).toEqual([{ n: 1 }]);

    // The history, archived at promotion and signed, names where timeline 1 ended: in the clear.
    const store = await openStore(rig.storeUrl);
    const history = await waitFor("00000002.history archived", async () => {
      const got = await store.get(`${rig.databaseId}/wal/00000002.history`).catch(() => undefined);
      return got ? readAll(got) : undefined;
    });
    const { record } = decodeWalHeader(history, "00000002.history");
    expect(record).toMatchObject({
      kind: "history",
      timeline: 2,
      history: [{ timeline: 1 }],
      signature: { signer: rig.signer },
    });
    await sql(url, "insert into tl values (3)");
    t2 = await now(url);
    await sql(url, "insert into tl values (4)");
    // The switch segment starts as a copy of timeline 1's: its first page says timeline 1, and it archives.
    const onTwo = await switchAndArchive(url).catch(async (err: Error) => {
      throw new Error(
        `${err.message}; the server's log:\n${await readFile(path.join(dir, "strongroom-recovery.log"), "utf8")}`,
      );
    });
    expect(onTwo.slice(0, 8)).toBe("00000002");
  }, 240_000);

  it("wal verify follows the base's window across the switch, and restore --pitr replays timeline 1 then 2 to a time on 2, promoting to timeline 3", async () => {
    const v = await walVerify(rig);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    const report = JSON.parse(v.stdout) as WalVerifyReport;
    expect(report.bases).toHaveLength(1);
    expect(report.bases[0]).toMatchObject({ timelines: [1, 2], recoverable: true });
    expect(report.bases[0]?.through.segment.slice(0, 8)).toBe("00000002");

    const dir = path.join(rig.work, "second");
    started.push(dir);
    const r = await pitr(dir, "--to-time", t2);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as Recovered;
    expect(result.timeline).toEqual({ target: 2, path: [1, 2] });
    // Timeline 2 is taken (its history is archived): the new one is 3, no collision.
    expect(result.started.timeline).toBe(3);
    expect(result.started.stoppedAt).toMatch(/^recovery stopping before commit/);
    expect(await queryWhenUp<{ n: number }>(rig.urlOn(result.started.port), "select n from tl order by n")).toEqual([
      { n: 1 },
      { n: 3 },
    ]);
  }, 240_000);

  it("recovers the original line with --timeline 1: timeline 1's own WAL past the switch point, which timeline 2 does not hold", async () => {
    // The old primary went on writing on timeline 1 after the recovered copy took its place.
    await sql(rig.cluster.url, "insert into tl values (5)");
    await switchAndArchive(rig.cluster.url);
    const dir = path.join(rig.work, "original-line");
    started.push(dir);
    const r = await pitr(dir, "--to-latest", "--timeline", "1");
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as Recovered;
    expect(result.timeline).toEqual({ target: 1, path: [1] });
    expect(await queryWhenUp<{ n: number }>(rig.urlOn(result.started.port), "select n from tl order by n")).toEqual([
      { n: 1 },
      { n: 2 },
      { n: 5 },
    ]);
  }, 240_000);

  it("wal verify also follows the line the old primary went on with, and names a gap there that the newest timeline does not have", async () => {
    const verify = () => walVerify(rig);
    const before = JSON.parse((await verify()).stdout) as WalVerifyReport;
    expect(before.bases[0]?.otherLines).toEqual([expect.objectContaining({ timeline: 1 })]);
    expect(before.bases[0]?.otherLines?.[0]?.gap).toBeUndefined();
    // Two more segments on timeline 1 only; the first goes missing.
    await sql(rig.cluster.url, "insert into tl values (7)");
    const victim = await switchAndArchive(rig.cluster.url);
    await sql(rig.cluster.url, "insert into tl values (8)");
    await switchAndArchive(rig.cluster.url);
    const store = await openStore(rig.storeUrl);
    const key = `${rig.databaseId}/wal/${victim}`;
    const bytes = await readAll(await store.get(key));
    await store.delete(key);
    try {
      const r = await verify();
      expect(r.code).toBe(1);
      const after = JSON.parse(r.stdout) as WalVerifyReport;
      expect(after.bases[0]?.gap).toBeUndefined();
      expect(after.bases[0]?.otherLines?.[0]).toMatchObject({ timeline: 1, gap: victim });
    } finally {
      await store.putIfAbsent(key, bytes);
    }
  }, 120_000);

  it("refuses, before writing anything, when a store writer planted the next timeline's history: the server could not promote", async () => {
    const store = await openStore(rig.storeUrl);
    const forger = parseSigningKey(generateSigningKey().secret);
    const plant = "00000003.history";
    const text = "1\t0/3000000\tforged\n2\t0/9000000\tforged\n";
    await store.putIfAbsent(
      `${rig.databaseId}/wal/${plant}`,
      encodeWalHeader(
        signWalRecord(
          {
            format: WAL_FORMAT,
            databaseId: rig.databaseId,
            name: plant,
            kind: "history",
            timeline: 3,
            plainBytes: text.length,
            plainSha256: "0".repeat(64),
            pushedAt: new Date().toISOString(),
            history: [
              { timeline: 1, switchLsn: "0/3000000" },
              { timeline: 2, switchLsn: "0/9000000" },
            ],
          },
          forger,
        ),
      ),
    );
    try {
      const dir = path.join(rig.work, "blocked");
      const r = await pitr(dir, "--to-latest");
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("00000003.history no trusted signer signed");
      await expect(readdir(dir)).rejects.toMatchObject({ code: "ENOENT" });
      // Nor does it steer the window: wal verify still follows timeline 2, and names the planted file.
      const v = await walVerify(rig);
      const report = JSON.parse(v.stdout) as WalVerifyReport;
      expect(report.untrusted).toContain(plant);
      expect(report.bases[0]?.timelines).toEqual([1, 2]);
    } finally {
      await store.delete(`${rig.databaseId}/wal/${plant}`);
    }
  }, 120_000);

  it("names a deleted history file and refuses to recover or verify short of the timeline it started, rather than lose what was written there", async () => {
    const store = await openStore(rig.storeUrl);
    const key = `${rig.databaseId}/wal/00000002.history`;
    const saved = await getBytes(store, key);
    await store.delete(key);
    try {
      const v = await walVerify(rig);
      expect(v.code).toBe(1);
      const report = JSON.parse(v.stdout) as WalVerifyReport;
      expect(report.ok).toBe(false);
      expect(report.bases[0]).toMatchObject({ timelines: [1], missingHistory: [2] });
      const dir = path.join(rig.work, "short");
      const r = await pitr(dir, "--to-latest");
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("timeline 2's WAL is archived, but no trusted 00000002.history is");
      expect(r.stderr).toContain("--timeline 1");
      await expect(readdir(dir)).rejects.toMatchObject({ code: "ENOENT" });
      const verify = await runCli(["verify", "--pitr", ...rig.fetchArgs(), "--json"]);
      expect(verify.code).toBe(1);
      const wal = (JSON.parse(verify.stdout) as PitrVerification).checks.find((c) => c.name === "wal");
      expect(wal).toMatchObject({ ok: false });
      expect(wal?.detail).toContain("00000002.history");
    } finally {
      await store.putIfAbsent(key, saved);
      // Put back by root: the server's user (whose restore_command reads it later) must own it again.
      if (rig.owner) await chown(path.join(fileURLToPath(rig.storeUrl), key), rig.owner.uid, rig.owner.gid);
    }
  }, 180_000);

  it("a promoted standby archives its last timeline-1 segment as a .partial, which wal-fetch never serves for the full segment, and takes the next free timeline", async () => {
    const dir = path.join(rig.work, "standby");
    await mkdir(dir, { mode: 0o700 });
    if (rig.owner) await chown(dir, rig.owner.uid, rig.owner.gid);
    const primary = new URL(rig.cluster.url);
    const password = decodeURIComponent(primary.password);
    const copy = await asServer(
      "pg_basebackup",
      ["-D", dir, "-X", "stream", "-R", "-h", "127.0.0.1", "-p", primary.port, "-U", "postgres"],
      { PGPASSWORD: password },
    );
    expect(copy.code, copy.output).toBe(0);
    const port = await freePort();
    const setting = (k: string, v: string) => `${k} = '${v.replaceAll("'", "''")}'`;
    // It streams from the primary; promoted, it archives as the primary does and asks the archive which timelines are taken.
    await writeFile(
      path.join(dir, "postgresql.auto.conf"),
      [
        setting("port", String(port)),
        setting("archive_mode", "on"),
        setting("archive_command", commandLine(["wal-push", "%p", ...rig.pushArgs()])),
        setting("restore_command", commandLine(["wal-fetch", "%f", "%p", ...rig.fetchArgs()])),
        // It follows its primary's timeline 1, which went on after timeline 2 forked from it.
        setting("recovery_target_timeline", "current"),
        setting("primary_conninfo", `host=127.0.0.1 port=${primary.port} user=postgres password=${password}`),
        "",
      ].join("\n"),
      { flag: "a" },
    );
    started.push(dir);
    const up = await asServer("pg_ctl", [
      "start",
      "-D",
      dir,
      "-l",
      path.join(dir, "standby.log"),
      "-W",
      "-o",
      `-k ${dir}`,
    ]);
    expect(up.code, up.output).toBe(0);
    const standby = rig.urlOn(port);
    let lastError = "";
    await sql(rig.cluster.url, "create table promoted (n int); insert into promoted values (1)");
    const [{ lsn, segment }] = (await sql<{ lsn: string; segment: string }>(
      rig.cluster.url,
      "select pg_current_wal_insert_lsn()::text as lsn, pg_walfile_name(pg_current_wal_insert_lsn()) as segment",
    )) as [{ lsn: string; segment: string }];
    await waitFor(
      "the standby to replay the insert",
      async () => {
        try {
          const [r] = await sql<{ caught: boolean }>(standby, `select pg_last_wal_replay_lsn() >= '${lsn}' as caught`);
          return r?.caught ? true : undefined;
        } catch (err) {
          lastError = (err as Error).message;
          return undefined;
        }
      },
      60_000,
    ).catch(async (err: Error) => {
      throw new Error(
        `${err.message} (${lastError}); its log:\n${await readFile(path.join(dir, "standby.log"), "utf8")}`,
      );
    });
    await sql(standby, "select pg_promote()");
    const store = await openStore(rig.storeUrl);
    const partialKey = `${rig.databaseId}/wal/${segment}.partial`;
    const partial = await waitFor(
      `${segment}.partial archived`,
      async () => {
        const got = await store.get(partialKey).catch(() => undefined);
        return got ? readAll(got) : undefined;
      },
      60_000,
    );
    const { record } = decodeWalHeader(partial, partialKey);
    expect(record).toMatchObject({ kind: "partial", timeline: 1, signature: { signer: rig.signer } });
    // Timeline 2's history is archived; 3's is not (the copy that took 3 does not archive): 3 is free, and taken.
    const [{ now }] = (await sql<{ now: string }>(standby, "select pg_walfile_name(pg_current_wal_lsn()) as now")) as [
      { now: string },
    ];
    expect(now.slice(0, 8)).toBe("00000003");
    // The primary has not switched from that segment: the full one is not archived, and the partial never stands in.
    const dest = path.join(rig.work, "fetched-full");
    const missing = await runCli(["wal-fetch", segment, dest, ...rig.fetchArgs()]);
    expect(missing.code, missing.stderr).toBe(1);
    expect(missing.stderr).toContain("[WalFileMissingError]");
    await switchAndArchive(rig.cluster.url);
    const full = await runCli(["wal-fetch", segment, dest, ...rig.fetchArgs()]);
    expect(full.code, full.stderr).toBe(0);
    expect(
      createHash("sha256")
        .update(await readFile(dest))
        .digest("hex"),
    ).not.toBe(record.plainSha256);
  }, 240_000);
});

/** Runs one of the cluster's programs as the server's OS user (initdb refuses root; so does a data directory). */
async function asServer(program: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(path.join(rig.cluster.binDir, program), args, {
    ...(rig.owner ? { uid: rig.owner.uid, gid: rig.owner.gid } : {}),
    env: { PATH: process.env.PATH, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  for (const stream of [child.stdout, child.stderr]) stream.on("data", (b: Buffer) => (output += b.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", resolve);
  });
  return { code, output };
}
