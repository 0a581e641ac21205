import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openStore } from "#core/store/open-store.ts";
import { CLI, type CliResult, runCli, startCli } from "../helpers/cli.ts";
import { sql } from "../helpers/pg.ts";
import { type PitrRig, queryWhenUp, restoreLatest, startPitrRig, stopRecovered, waitFor } from "../helpers/pitr-rig.ts";

/**
 * A busy server's archiving: `strongroom wal-archiver` pushes what PostgreSQL has ready,
 * in parallel, from one process, and archive_command is its shell client
 * (bin/strongroom-wal-wait), which exits 0 once the archiver has stored the file and runs
 * wal-push itself when no archiver is alive. A real PostgreSQL 15 archiving through both.
 */
const execFileAsync = promisify(execFile);
const WAIT = path.resolve(import.meta.dirname, "../../containers/worker/bin/strongroom-wal-wait");
let rig: PitrRig;
let spool: string;
let archiver: { child: ReturnType<typeof startCli>["child"]; result: Promise<CliResult> } | undefined;

const quoted = (words: string[]) => words.map((w) => (w === "%f" || w === "%p" ? w : `'${w}'`)).join(" ");

beforeAll(async () => {
  rig = await startPitrRig("archiver", "shop", {
    prepare: async (work, forServer) => {
      spool = path.join(work, "spool");
      await mkdir(spool, { mode: 0o755 });
      await forServer(spool);
    },
    archiveCommand: (push) =>
      quoted([WAIT, spool, "30", "%f", "%p", "--", process.execPath, CLI, "wal-push", "%p", ...push]),
  });
}, 120_000);

afterAll(async () => {
  archiver?.child.kill("SIGKILL");
  await rig?.stop();
});

/** Switches `n` times, each in its own transaction after a write, without waiting: a burst of segments. */
async function burst(n: number, table: string): Promise<string[]> {
  const names: string[] = [];
  for (let i = 0; i < n; i++) {
    await sql(rig.cluster.url, `insert into ${table} select generate_series(1, 1000)`);
    const [{ name }] = (await sql<{ name: string }>(
      rig.cluster.url,
      "select pg_walfile_name(pg_switch_wal()) as name",
    )) as [{ name: string }];
    names.push(name);
  }
  return names;
}

async function archived(names: string[]): Promise<void> {
  const last = names.at(-1) as string;
  await waitFor(
    `${last} archived`,
    async () => {
      const [s] = await sql<{ last: string | null }>(
        rig.cluster.url,
        "select last_archived_wal as last from pg_stat_archiver",
      );
      return (s?.last ?? "") >= last ? true : undefined;
    },
    90_000,
  );
}

describe("strongroom wal-archiver with strongroom-wal-wait as archive_command", () => {
  it("archives a burst of segments from one process, in parallel, each marked stored only once the store holds it; the client consumes every marker", async () => {
    archiver = startArchiver();
    await waitFor("the archiver's heartbeat", async () =>
      existsSync(path.join(spool, "archiver.alive")) ? true : undefined,
    );
    await sql(rig.cluster.url, "create table busy (n int)");
    const names = await burst(8, "busy");
    await archived(names);
    const store = await openStore(rig.storeUrl);
    const stored = new Set((await store.list(`${rig.databaseId}/wal/`)).objects.map((o) => path.posix.basename(o.key)));
    for (const name of names) expect(stored.has(name), name).toBe(true);
    // Every marker was consumed by archive_command (or cleared once PostgreSQL was done with its file).
    await waitFor("the spool to empty", async () => {
      const left = (await readdir(spool)).filter((f) => f.endsWith(".stored"));
      return left.length === 0 ? true : undefined;
    });
    archiver.child.kill("SIGTERM");
    const r = await archiver.result;
    expect(r.code, r.stderr).toBe(0);
    // The archiver pushed them, not a wal-push per segment: its log names each.
    for (const name of names) expect(r.stderr).toContain(name);
    expect(r.stdout).toMatch(/stopped: \d+ archived/);
    expect(existsSync(path.join(spool, "archiver.alive"))).toBe(false);
  }, 300_000);

  it("goes on archiving through wal-push when no archiver runs: nothing is marked that is not stored, and no WAL is dropped", async () => {
    // A marker for the segment about to be switched from, standing for other content (a
    // spool shared with another cluster, or left over): never taken for this file.
    await sql(rig.cluster.url, "insert into busy values (0)");
    const [{ current }] = (await sql<{ current: string }>(
      rig.cluster.url,
      "select pg_walfile_name(pg_current_wal_insert_lsn()) as current",
    )) as [{ current: string }];
    await writeFile(path.join(spool, `${current}.stored`), `${"0".repeat(64)}\n`);
    const names = await burst(3, "busy");
    expect(names[0]).toBe(current);
    await archived(names);
    const store = await openStore(rig.storeUrl);
    const stored = new Set((await store.list(`${rig.databaseId}/wal/`)).objects.map((o) => path.posix.basename(o.key)));
    for (const name of names) expect(stored.has(name), name).toBe(true);
    const [s] = await sql<{ failed: string }>(
      rig.cluster.url,
      "select failed_count::text as failed from pg_stat_archiver",
    );
    expect(s?.failed).toBe("0");
  }, 180_000);
  it("keeps up with pgbench writing while it archives: a recovery to the end of the archive has consistent balances", async () => {
    archiver = startArchiver();
    const base = await runCli(
      ["basebackup", ...rig.pushArgs()],
      { DATABASE_URL: rig.cluster.url },
      rig.owner ? { user: rig.owner } : {},
    );
    expect(base.code, base.stderr).toBe(0);
    const url = new URL(rig.cluster.url);
    const env = { PGPASSWORD: decodeURIComponent(url.password), PATH: process.env.PATH };
    const pgbench = (args: string[]) =>
      execFileAsync(
        path.join(rig.cluster.binDir, "pgbench"),
        ["-h", "127.0.0.1", "-p", url.port, "-U", "postgres", ...args, "postgres"],
        { env },
      );
    await pgbench(["-i", "-s", "2", "-q"]);
    // Four clients for 15 s, the archiver pushing behind them.
    await pgbench(["-c", "4", "-j", "2", "-T", "15", "-n"]);
    const [{ name }] = (await sql<{ name: string }>(
      rig.cluster.url,
      "select pg_walfile_name(pg_switch_wal()) as name",
    )) as [{ name: string }];
    await archived([name]);
    const dir = path.join(rig.work, "after-load");
    try {
      const port = await restoreLatest(rig, dir);
      const [sums] = await queryWhenUp<{ a: string; b: string; t: string; h: string; n: string }>(
        rig.urlOn(port),
        "select (select sum(abalance) from pgbench_accounts)::text as a, (select sum(bbalance) from pgbench_branches)::text as b, (select sum(tbalance) from pgbench_tellers)::text as t, (select coalesce(sum(delta), 0) from pgbench_history)::text as h, (select count(*) from pgbench_history)::text as n",
      );
      // Every transaction's three updates and its history row, or none of them.
      expect(Number(sums?.n)).toBeGreaterThan(100);
      expect([sums?.b, sums?.t, sums?.h]).toEqual([sums?.a, sums?.a, sums?.a]);
    } finally {
      await stopRecovered(rig, [dir]);
    }
    archiver.child.kill("SIGTERM");
    expect((await archiver.result).code).toBe(0);
  }, 300_000);
});

function startArchiver() {
  return startCli(
    [
      "wal-archiver",
      "--pgdata",
      path.join(rig.cluster.dir, "data"),
      "--spool",
      spool,
      ...rig.pushArgs(),
      "--parallel",
      "4",
    ],
    { STRONGROOM_LOG_FORMAT: "json" },
    { ...(rig.owner ? { user: rig.owner } : {}), timeoutMs: 300_000 },
  );
}
