/**
 * npm run bench:stages — our age and framed-zstd stages against the age and zstd
 * CLIs on the same 256 MiB of dump-like data, in one run. Each measurement runs in
 * its own process, reads the same page-cached file and discards its output (file
 * writes on this disk are slower and noisier than the stages); best of 3.
 *
 * Our stages run as shipped: bundled by esbuild, as in the worker image (running the
 * .ts through Node's type stripping adds ~30 MiB RSS and nothing else).
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, openSync, statSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import { build } from "esbuild";
import { writeRepeatedBlockFile } from "./data.ts";

const MiB = 1024 * 1024;
const SIZE = Number(process.env.BENCH_STAGE_MIB ?? 256) * MiB;
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const work = path.resolve("bench/.work");
mkdirSync(work, { recursive: true });
const plain = path.join(work, `stages-${SIZE / MiB}m.txt`);
if (!existsSync(plain) || statSync(plain).size !== SIZE) await writeRepeatedBlockFile(plain, SIZE);

const runner = path.join(work, "stage-runner.mjs");
await build({
  entryPoints: ["bench/stage-runner.ts"],
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node22",
  outfile: runner,
  external: ["@mongodb-js/zstd"],
  logLevel: "warning",
});

const identity = await generateX25519Identity();
const recipient = await identityToRecipient(identity);
const keyFile = path.join(work, "key.txt");
writeFileSync(keyFile, `${identity}\n`, { mode: 0o600 });

interface Run {
  seconds: number;
  maxRssMiB?: number;
  outBytes: number;
}

function ours(stage: string, input: string, key: string): Run {
  const r = spawnSync(process.execPath, [runner, stage, input, key], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${stage} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1) as string) as Run;
}

async function cli(command: string, args: string[], input: string, output = "/dev/null"): Promise<Run> {
  const started = performance.now();
  const child = spawn(command, args, { stdio: [openSync(input, "r"), openSync(output, "w"), "inherit"] });
  const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
  if (code !== 0) throw new Error(`${command} exited ${code}`);
  return { seconds: (performance.now() - started) / 1000, outBytes: statSync(output).size };
}

async function best(measure: () => Run | Promise<Run>): Promise<Run> {
  const runs: Run[] = [];
  for (let i = 0; i < RUNS; i++) runs.push(await measure());
  return runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
}

const mbps = (r: Run, bytes = SIZE) => bytes / 1e6 / r.seconds;
const out = (name: string) => path.join(work, name);

// Decrypt input: one ciphertext (made by the CLI, untimed) for both decryptors.
await cli("age", ["-r", recipient], plain, out("input.age"));
const ourEnc = await best(() => ours("encrypt", plain, recipient));
const cliEnc = await best(() => cli("age", ["-r", recipient], plain));
const ourDec = await best(() => ours("decrypt", out("input.age"), keyFile));
const cliDec = await best(() => cli("age", ["-d", "-i", keyFile], out("input.age")));
const ourZstd = await best(() => ours("zstd", plain, ""));
const cliZstd = await best(() => cli("zstd", ["-3", "-T2", "-q", "-c"], plain));
const cliZstdBytes = (await cli("zstd", ["-3", "-T2", "-q", "-c"], plain, out("cli.zst"))).outBytes;

const rows = [
  ["age encrypt", mbps(ourEnc), mbps(cliEnc), ourEnc.maxRssMiB],
  ["age decrypt", mbps(ourDec), mbps(cliDec), ourDec.maxRssMiB],
  ["zstd -3 (framed vs -T2)", mbps(ourZstd), mbps(cliZstd), ourZstd.maxRssMiB],
] as const;
console.log(`\nstages on ${SIZE / MiB} MiB of dump-like data, best of ${RUNS}`);
console.log("stage                      ours MB/s   cli MB/s   ours/cli   peak RSS MiB");
for (const [name, o, c, rss] of rows) {
  console.log(
    `${name.padEnd(26)} ${o.toFixed(0).padStart(9)} ${c.toFixed(0).padStart(10)} ${(o / c).toFixed(2).padStart(9)}x ${(rss ?? 0).toFixed(0).padStart(13)}`,
  );
}
const ourRatio = SIZE / ourZstd.outBytes;
const cliRatio = SIZE / cliZstdBytes;
console.log(
  `compression ratio: ours ${ourRatio.toFixed(3)}x, zstd -3 ${cliRatio.toFixed(3)}x (ours/cli ${(ourRatio / cliRatio).toFixed(3)})`,
);
console.log(
  `targets: encrypt >= 1000 MB/s: ${mbps(ourEnc) >= 1000 ? "met" : "MISSED"}; zstd >= 0.9x cli: ${mbps(ourZstd) / mbps(cliZstd) >= 0.9 ? "met" : "MISSED"}; ratio within 2%: ${Math.abs(ourRatio / cliRatio - 1) <= 0.02 ? "met" : "MISSED"}; RSS <= 150 MiB: ${Math.max(ourEnc.maxRssMiB ?? 0, ourDec.maxRssMiB ?? 0, ourZstd.maxRssMiB ?? 0) <= 150 ? "met" : "MISSED"}`,
);
