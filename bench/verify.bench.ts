/**
 * npm run bench:verify — the RTO `strongroom verify` measures, against the plain way to
 * the same place, in the same run, on the 1 GB bench database (bench/bench-database.ts):
 *
 *   baseline: a fresh cluster (initdb + start), then
 *             age -d | zstd -d | pg_restore --single-transaction --exit-on-error
 *   ours:     strongroom verify (bundled, as the image runs it): a fresh cluster, the
 *             preflight, the restore, then the checks (shown separately), and --deep
 *             separately; the restore serially (--jobs 1: streamed into one pg_restore)
 *             and in parallel (--jobs <cores>: staged beside the cluster, pg_restore -j).
 *
 * It prints the ratios (baseline seconds / ours; ≥ 0.9 is the goal for the serial
 * verify), the parallel restore's time as a fraction of the serial baseline restore
 * (≤ 0.6 is the goal on 4 vCPUs), the preflight's cost, and peak RSS.
 *   BENCH_RUNS=2   best of N per figure
 */
import { chmod, mkdir, rm, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import { readManifestRecord } from "#core/backup-index.ts";
import { FileStore } from "#core/store/file-store.ts";
import { findServerBin, startCluster } from "#worker/pg/scratch-cluster.ts";
import { buildWorker } from "../scripts/build.ts";
import { BENCH_BIN, BENCH_WORK, benchCluster, dbUrl, query } from "./bench-database.ts";
import { type Timed, timed } from "./measure.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 2);
const cli = path.resolve(import.meta.dirname, "../dist/bench/strongroom.mjs");
await buildWorker(path.dirname(cli));

const identity = await generateX25519Identity();
const recipient = await identityToRecipient(identity);
// On a fresh checkout bench/.work does not exist yet (benchCluster makes it later).
await mkdir(BENCH_WORK, { recursive: true });
const keyFile = path.join(BENCH_WORK, "verify-identity.txt");
await writeFile(keyFile, `${identity}\n`, { mode: 0o600 });
const storeDir = path.join(BENCH_WORK, "verify-store");
const scratch = path.join(BENCH_WORK, "verify-scratch");
await rm(storeDir, { recursive: true, force: true });
await mkdir(storeDir, { recursive: true });
await mkdir(scratch, { recursive: true });
await chmod(scratch, 0o755);
const storeUrl = pathToFileURL(storeDir).href;

const source = await benchCluster(1);
let backupId: string;
try {
  const b = await timed(process.execPath, [cli, "backup", "--recipient", recipient, "--database-id", "bench"], {
    DATABASE_URL: dbUrl(source, "bench"),
    STRONGROOM_STORE: storeUrl,
  });
  backupId = (b.stdout ?? "").trim();
} finally {
  await source.stop();
}
const { manifest, sha256 } = await readManifestRecord(new FileStore(storeUrl), {
  databaseId: "bench",
  backupId: backupId,
});
const dumpFile = path.join(storeDir, "bench", "backups", backupId, "dump.pgc.zst.age");
const dumpMB = (manifest.objects.find((o) => o.role === "dump")?.plainBytes ?? 0) / 1e6;
const major = Math.floor(manifest.server.versionNum / 10000);
const serverBin = await findServerBin(major);

async function best(n: number, f: () => Promise<Timed>): Promise<Timed> {
  let top: Timed | undefined;
  for (let i = 0; i < n; i++) {
    const t = await f();
    if (!top || t.seconds < top.seconds) top = { ...t, peakRssMiB: Math.max(t.peakRssMiB ?? 0, top?.peakRssMiB ?? 0) };
  }
  return top as Timed;
}

/** initdb + start + createdb, then the shell pipeline; the cluster is removed afterwards. */
async function baseline(): Promise<Timed & { restoreSeconds: number }> {
  const started = performance.now();
  const cluster = await startCluster(serverBin, "baseline", { parentDir: scratch });
  try {
    await query(cluster.url, "create database restored");
    const env = {
      PGHOST: cluster.host,
      PGPORT: String(cluster.port),
      PGUSER: "postgres",
      PGPASSWORD: cluster.password,
    };
    const r = await timed(
      "bash",
      [
        "-c",
        `set -o pipefail; age -d -i "${keyFile}" "${dumpFile}" | zstd -d -q | "${BENCH_BIN}/pg_restore" --dbname=restored --no-password --single-transaction --exit-on-error`,
      ],
      env,
    );
    return { seconds: (performance.now() - started) / 1000, restoreSeconds: r.seconds };
  } finally {
    await cluster.stop();
  }
}

interface VerifyRun extends Timed {
  rto: { restoreSeconds: number; checksSeconds: number; jobs?: number };
  preflightSeconds: number;
}

async function ours(extra: string[]): Promise<VerifyRun> {
  const t = await timed(
    process.execPath,
    // No audit log here: the committed manifest's digest says which backup counts.
    [
      cli,
      "verify",
      "--identity",
      keyFile,
      "--scratch-dir",
      scratch,
      "--database-id",
      "bench",
      "--backup",
      backupId,
      "--manifest-sha256",
      sha256,
      "--audit",
      "none",
      "--json",
      ...extra,
    ],
    { STRONGROOM_STORE: storeUrl },
    true,
  );
  const result = JSON.parse(t.stdout ?? "{}") as {
    ok: boolean;
    rto: VerifyRun["rto"];
    checks: Array<{ name: string; seconds: number }>;
  };
  if (!result.ok) throw new Error(`verify did not verify: ${t.stdout}`);
  return { ...t, rto: result.rto, preflightSeconds: result.checks.find((c) => c.name === "preflight")?.seconds ?? 0 };
}

let base = { seconds: Infinity, restoreSeconds: Infinity };
for (let i = 0; i < RUNS; i++) {
  const b = await baseline();
  if (b.seconds < base.seconds) base = b;
}
const cores = availableParallelism();
const plain = (await best(RUNS, () => ours(["--jobs", "1"]))) as VerifyRun;
const parallel = (await best(RUNS, () => ours(["--jobs", String(cores)]))) as VerifyRun;
const deep = (await best(RUNS, () => ours(["--deep"]))) as VerifyRun;

const f = (n: number, d = 1) => n.toFixed(d);
const withoutChecks = (r: VerifyRun) => r.seconds - r.rto.checksSeconds;
console.log(
  `\nverify on the 1 GB bench database (${f(dumpMB, 0)} MB of pg_dump output, PostgreSQL ${major}), best of ${RUNS}`,
);
console.log("  what                                       seconds   vs baseline   peak RSS");
const row = (what: string, s: number, ratio: string, rss = "") =>
  console.log(`  ${what.padEnd(42)} ${f(s).padStart(7)}   ${ratio.padStart(11)}   ${rss}`);
row("baseline: cluster + age|zstd|pg_restore", base.seconds, "1.00x");
row("  of which the restore pipeline", base.restoreSeconds, "");
row(
  "verify, restore part (cluster + restore)",
  withoutChecks(plain),
  `${f(base.seconds / withoutChecks(plain), 2)}x`,
  `${f(plain.peakRssMiB ?? 0, 0)} MiB`,
);
row(
  "  of which the restore (rto.restoreSeconds)",
  plain.rto.restoreSeconds,
  `${f(base.restoreSeconds / plain.rto.restoreSeconds, 2)}x`,
);
row(
  `verify --jobs ${cores}: the restore (staged, pg_restore -j)`,
  parallel.rto.restoreSeconds,
  `${f(base.restoreSeconds / parallel.rto.restoreSeconds, 2)}x`,
  `${f(parallel.peakRssMiB ?? 0, 0)} MiB`,
);
row(`verify --jobs ${cores}: total`, parallel.seconds, `${f(base.seconds / parallel.seconds, 2)}x`);
row("verify preflight (extensions, locales, create db)", plain.preflightSeconds, "");
row("verify checks (row-counts, schema, constraints)", plain.rto.checksSeconds, "");
row("verify --deep checks (+ amcheck)", deep.rto.checksSeconds, "", `${f(deep.peakRssMiB ?? 0, 0)} MiB`);
row("verify total", plain.seconds, `${f(base.seconds / plain.seconds, 2)}x`);
console.log(
  `\ntarget: verify's restore >= 0.9x the baseline: ${base.seconds / withoutChecks(plain) >= 0.9 ? "met" : "MISSED"}`,
);
const fraction = parallel.rto.restoreSeconds / base.restoreSeconds;
console.log(
  `parallel: verify's restore with -j ${cores} takes ${f(fraction, 2)} of the serial restore's time (goal on 4 vCPUs: <= 0.60; this machine has ${cores} cores)`,
);
console.log(
  `preflight: ${f(plain.preflightSeconds, 2)} s, ${f((100 * plain.preflightSeconds) / plain.seconds, 1)}% of the serial verify`,
);
await rm(storeDir, { recursive: true, force: true });
