/**
 * npm run bench:startup — how long the CLI takes to start, from the checkout (Node's type
 * stripping) and as the image runs it (the esbuild bundle), against bare `node -e 0` in
 * the same run: `--help`, and `list` on an empty file store (a real command: its action
 * loads what it uses). Medians of BENCH_RUNS (default 9).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";
import { WORKER_BUNDLE } from "../scripts/build.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 9);
const checkout = path.resolve(import.meta.dirname, "../containers/worker/bin/strongroom.mjs");
const bundle = path.resolve(import.meta.dirname, "../dist/bench/strongroom.mjs");
await build({ ...WORKER_BUNDLE, outfile: bundle });
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

try {
  const base = median(["-e", "0"]);
  const rows: Array<[string, number]> = [
    ["node -e 0 (baseline)", base],
    ["checkout: strongroom --help", median([checkout, "--help"])],
    ["checkout: strongroom list (empty store)", median([checkout, "list"])],
    ["bundle:   strongroom --help", median([bundle, "--help"])],
    ["bundle:   strongroom list (empty store)", median([bundle, "list"])],
  ];
  console.log(`\nstart-up, median of ${RUNS}`);
  for (const [what, ms] of rows) {
    console.log(
      `  ${what.padEnd(42)} ${(ms / 1000).toFixed(3)} s   ${(ms / base).toFixed(1)}x node   ${ms <= 350 ? "" : "(over 0.35 s)"}`,
    );
  }
} finally {
  rmSync(store, { recursive: true, force: true });
}
