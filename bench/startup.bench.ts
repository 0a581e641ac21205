/**
 * npm run bench:startup — how long the CLI takes to start, from the checkout (Node's type
 * stripping) and as the image runs it (the esbuild bundle), against bare `node -e 0` in
 * the same run: `--help`, `list` on an empty file store (a real command: its action
 * loads what it uses), and a backup's time to its first pg_dump (the moment a wrapper
 * pg_dump, found first through PG_BIN_DIRS, is executed for the dump itself).
 * Medians of BENCH_RUNS (default 9).
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import pg from "pg";
import { startCluster, systemBinDir } from "#worker/pg/scratch-cluster.ts";
import { buildWorker } from "../scripts/build.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 9);
const checkout = path.resolve(import.meta.dirname, "../containers/worker/bin/strongroom.mjs");
const bundle = path.resolve(import.meta.dirname, "../dist/bench/strongroom.mjs");
await buildWorker(path.dirname(bundle));
const store = mkdtempSync(path.join(tmpdir(), "strongroom-startup-"));

function median(args: string[]): number {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, args, {
      stdio: "ignore",
      env: { ...process.env, STRONGROOM_STORE: pathToFileURL(store).href },
    });
    if (r.status !== 0) throw new Error(`${args.join(" ")} exited ${r.status}`);
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)] as number;
}

/** A pg_dump that notes when it was run for the dump (not --version), then is the real one. */
function stampingBinDir(): { dir: string; stamp: string } {
  const dir = mkdtempSync(path.join(tmpdir(), "strongroom-startup-bin-"));
  const stamp = path.join(dir, "stamp");
  const real = systemBinDir();
  for (const tool of ["pg_dump", "pg_dumpall", "pg_restore"]) {
    const note = tool === "pg_dump" ? `[ "$1" = "--version" ] || date +%s%N > "${stamp}"\n` : "";
    writeFileSync(path.join(dir, tool), `#!/bin/sh\n${note}exec "${real}/${tool}" "$@"\n`);
    chmodSync(path.join(dir, tool), 0o755);
  }
  return { dir, stamp };
}

async function firstPgDump(cli: string, url: string, recipient: string): Promise<number> {
  const { dir, stamp } = stampingBinDir();
  const times: number[] = [];
  try {
    for (let i = 0; i < RUNS; i++) {
      const backups = mkdtempSync(path.join(tmpdir(), "strongroom-startup-store-"));
      const t0 = Date.now() * 1e6;
      const r = spawnSync(process.execPath, [cli, "backup", "--recipient", recipient, "--audit", "none"], {
        stdio: "ignore",
        env: { ...process.env, PG_BIN_DIRS: dir, DATABASE_URL: url, STRONGROOM_STORE: pathToFileURL(backups).href },
      });
      rmSync(backups, { recursive: true, force: true });
      if (r.status !== 0) throw new Error(`backup exited ${r.status}`);
      times.push((Number(readFileSync(stamp, "utf8").trim()) - t0) / 1e6);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)] as number;
}

const cluster = await startCluster(systemBinDir(), "startup");
try {
  const db = new pg.Client({ connectionString: cluster.url });
  await db.connect();
  await db.query("create table t as select 1 as x");
  await db.end();
  const recipient = await identityToRecipient(await generateX25519Identity());
  const base = median(["-e", "0"]);
  const rows: Array<[string, number]> = [
    ["node -e 0 (baseline)", base],
    ["checkout: strongroom --help", median([checkout, "--help"])],
    ["checkout: strongroom list (empty store)", median([checkout, "list"])],
    ["bundle:   strongroom --help", median([bundle, "--help"])],
    ["bundle:   strongroom list (empty store)", median([bundle, "list"])],
    ["checkout: backup, start to first pg_dump", await firstPgDump(checkout, cluster.url, recipient)],
    ["bundle:   backup, start to first pg_dump", await firstPgDump(bundle, cluster.url, recipient)],
  ];
  console.log(`\nstart-up, median of ${RUNS}`);
  for (const [what, ms] of rows) {
    console.log(
      `  ${what.padEnd(42)} ${(ms / 1000).toFixed(3)} s   ${(ms / base).toFixed(1)}x node   ${ms <= 350 ? "" : "(over 0.35 s)"}`,
    );
  }
} finally {
  await cluster.stop();
  rmSync(store, { recursive: true, force: true });
}
