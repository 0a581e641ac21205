import { existsSync } from "node:fs";
import { mkdir, readdir } from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openStore } from "#core/store/open-store.ts";
import { CLI, type CliResult, startCli } from "../helpers/cli.ts";
import { sql } from "../helpers/pg.ts";
import { type PitrRig, startPitrRig, waitFor } from "../helpers/pitr-rig.ts";

/**
 * A busy server's archiving: `strongroom wal-archiver` pushes what PostgreSQL has ready,
 * in parallel, from one process, and archive_command is its shell client
 * (bin/strongroom-wal-wait), which exits 0 once the archiver has stored the file and runs
 * wal-push itself when no archiver is alive. A real PostgreSQL 15 archiving through both.
 */
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
    archiveCommand: (push) => quoted([WAIT, spool, "30", "%f", "--", process.execPath, CLI, "wal-push", "%p", ...push]),
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
    archiver = startCli(
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
    await waitFor("the archiver's pid file", async () =>
      existsSync(path.join(spool, "archiver.pid")) ? true : undefined,
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
    expect(existsSync(path.join(spool, "archiver.pid"))).toBe(false);
  }, 300_000);

  it("goes on archiving through wal-push when no archiver runs: nothing is marked that is not stored, and no WAL is dropped", async () => {
    const names = await burst(3, "busy");
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
});
