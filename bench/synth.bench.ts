/**
 * npm run bench:synth — how long synth takes (cdk-nag included, assets not bundled) and
 * how big the deployment is, for 1, 50 and 200 databases, against the example config's 2
 * in the same run. Each size in a fresh process (a cold `cdk synth`), median of
 * BENCH_RUNS (default 3).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { exampleConfig, generatedConfig } from "../test/helpers/stack.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const dir = mkdtempSync(path.join(tmpdir(), "strongroom-synth-bench-"));
const template = path.resolve(import.meta.dirname, "../infra/sim/template.ts");

/** One cold synth in its own process: its seconds, and the stacks' resource counts. */
function synthOnce(file: string): { seconds: number; stacks: number[]; roles: number } {
  const script = `
    import { synthesize } from ${JSON.stringify(template)};
    const t0 = performance.now();
    const s = synthesize(${JSON.stringify(file)});
    const seconds = (performance.now() - t0) / 1000;
    const all = [s.template, ...s.nested.values()];
    const stacks = all.map((t) => Object.keys(t.Resources).length);
    const roles = all.flatMap((t) => Object.values(t.Resources)).filter((r) => r.Type === "AWS::IAM::Role").length;
    process.stdout.write(JSON.stringify({ seconds, stacks, roles }));`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as { seconds: number; stacks: number[]; roles: number };
}

const sizes: Array<[string, unknown]> = [
  ["example (2)", exampleConfig()],
  ["1", generatedConfig(1)],
  ["50", generatedConfig(50)],
  ["200", generatedConfig(200)],
];
let baseline = 0;
for (const [name, config] of sizes) {
  const file = path.join(dir, `${name.replace(/\W/g, "")}.json`);
  writeFileSync(file, JSON.stringify(config));
  const runs = Array.from({ length: RUNS }, () => synthOnce(file));
  const seconds = runs.map((r) => r.seconds).sort((a, b) => a - b)[Math.floor(RUNS / 2)] as number;
  const { stacks, roles } = runs[0] as { stacks: number[]; roles: number };
  if (baseline === 0) baseline = seconds;
  const total = stacks.reduce((a, b) => a + b, 0);
  console.log(
    `${name.padEnd(12)} synth ${seconds.toFixed(1)} s (${(seconds / baseline).toFixed(2)}× the example) · ${total} resources in ${stacks.length} stacks, largest ${Math.max(...stacks)} · ${roles} roles`,
  );
}
rmSync(dir, { recursive: true, force: true });
