/**
 * npm run bench:sim — the deployed flows' overhead, and what a nightly backup costs on
 * Fargate. On the 1 GB bench database (bench/bench-database.ts):
 *
 *   baseline: the CLI (from the checkout, as the sim's task runs it) backs up to moto and
 *             restores into a new database, one after the other;
 *   sim:      npm run sim's BackupFlow then RestoreFlow (plan, audit rows in DynamoDB
 *             Local, the task, catalog, prune) doing the same.
 *
 * It prints both times, their ratio, the CPU seconds of the backup task (worker and
 * pg_dump), and from those the Fargate cost of one nightly backup of 10 GB of dump.
 *   BENCH_RUNS=2   best of N per figure
 */
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import * as path from "node:path";
import { promisify } from "node:util";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import { readManifestRecord } from "#core/backup-index.ts";
import { S3Store } from "#core/store/s3-store.ts";
import { Sim } from "../infra/sim/sim.ts";
import { BENCH_WORK, benchCluster, query } from "./bench-database.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 2);
const CLI = path.resolve(import.meta.dirname, "../containers/worker/bin/strongroom.mjs");
/** AWS Fargate, Linux/ARM64, us-east-1 on-demand (per hour): vCPU, GB of memory, GB of ephemeral storage above 20. */
const PRICE = { vcpu: 0.03238, gb: 0.00356, storageGb: 0.000111 };
const ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret";

const identity = await generateX25519Identity();
const recipient = await identityToRecipient(identity);
const cluster = await benchCluster(1);
let sim: Sim | undefined;
try {
  const configFile = path.join(BENCH_WORK, "sim.config.json");
  await writeFile(
    configFile,
    JSON.stringify({
      name: "benchsim",
      prefix: "pg",
      bucket: { create: true },
      recipients: [recipient],
      identitySecretArn: `${ARN}:bench/identity-AbCdEf`,
      network: { create: true },
      databases: [{ id: "bench", secretArn: `${ARN}:bench/db-AbCdEf` }],
      sim: {
        secrets: {
          [`${ARN}:bench/identity-AbCdEf`]: identity,
          [`${ARN}:bench/db-AbCdEf`]: {
            host: cluster.host,
            port: cluster.port,
            username: "postgres",
            password: cluster.password,
            dbname: "bench",
          },
        },
      },
    }),
    { mode: 0o600 },
  );
  sim = await Sim.start({ configFile, log: () => undefined });
  const storeUrl = [...sim.deployment.functions.values()].find((f) => f.environment.STORE_URL)?.environment
    .STORE_URL as string;
  const baselineStore = storeUrl.replace(/\/pg$/, "/baseline");
  const pgEnv = {
    PGHOST: cluster.host,
    PGPORT: String(cluster.port),
    PGUSER: "postgres",
    PGPASSWORD: cluster.password,
  };
  const drop = (db: string) => query(cluster.url, `drop database if exists ${db}`);

  // The CLI alone, with the CPU seconds of it and its children (pg_dump) from bash's `times`.
  const cli = async (args: string[], env: Record<string, string>) => {
    const started = performance.now();
    const { stdout } = await promisify(execFile)(
      "bash",
      ["-c", `"${process.execPath}" "${CLI}" "$@" >/dev/null && times`, "cli", ...args],
      { env: { ...process.env, ...pgEnv, ...env } },
    );
    const seconds = (performance.now() - started) / 1000;
    // `times`: the shell's user/sys, then its children's: "0m1.234s 0m0.567s".
    const lines = stdout.trim().split("\n");
    const cpu = [...(lines.at(-1) ?? "").matchAll(/(\d+)m([\d.]+)s/g)].reduce(
      (sum, m) => sum + Number(m[1]) * 60 + Number(m[2]),
      0,
    );
    return { seconds, cpu };
  };

  let baseline = { backup: Infinity, restore: Infinity, cpu: 0 };
  let flows = { backup: Infinity, restore: Infinity };
  let dumpMB = 0;
  for (let i = 0; i < RUNS; i++) {
    await drop("bench_base");
    const b = await cli(["backup", "--recipient", recipient, "--database-id", "bench"], {
      STRONGROOM_STORE: baselineStore,
      DATABASE_URL: "postgres:///bench",
    });
    const r = await cli(["restore", "--database-id", "bench", "--create", "--target", "postgres:///bench_base"], {
      STRONGROOM_STORE: baselineStore,
      STRONGROOM_IDENTITY: identity,
    });
    if (b.seconds + r.seconds < baseline.backup + baseline.restore) {
      baseline = { backup: b.seconds, restore: r.seconds, cpu: b.cpu };
    }

    await drop("bench_sim");
    const backup = await sim.run("BackupFlow", { databaseId: "bench" });
    const restore = await sim.run("RestoreFlow", { databaseId: "bench", target: { database: "bench_sim" } });
    for (const e of [backup, restore]) {
      if (e.status !== "SUCCEEDED") throw new Error(`${e.flow} ${e.status}: ${e.error} ${e.cause}`);
    }
    if (backup.seconds + restore.seconds < flows.backup + flows.restore) {
      flows = { backup: backup.seconds, restore: restore.seconds };
    }
    const backupId = (backup.output as { plan: { backupId: string } }).plan.backupId;
    const { manifest } = await readManifestRecord(new S3Store(storeUrl), { databaseId: "bench", backupId: backupId });
    dumpMB = (manifest.objects.find((o) => o.role === "dump")?.plainBytes ?? 0) / 1e6;
  }
  await drop("bench_base");
  await drop("bench_sim");

  const f = (n: number, d = 1) => n.toFixed(d);
  const total = { base: baseline.backup + baseline.restore, sim: flows.backup + flows.restore };
  console.log(`\nnpm run sim on the 1 GB bench database (${f(dumpMB, 0)} MB of pg_dump output), best of ${RUNS}`);
  console.log(`  what                        backup s  restore s  total s  vs CLI`);
  console.log(
    `  CLI (baseline)              ${f(baseline.backup).padStart(8)}  ${f(baseline.restore).padStart(9)}  ${f(total.base).padStart(7)}  1.00x`,
  );
  console.log(
    `  BackupFlow + RestoreFlow    ${f(flows.backup).padStart(8)}  ${f(flows.restore).padStart(9)}  ${f(total.sim).padStart(7)}  ${f(total.base / total.sim, 2)}x`,
  );

  // A nightly backup of 10 GB of dump: its wall time on 2 cores scaled by size, and on a
  // 1-vCPU task no less than its CPU seconds (worker + pg_dump; the server is elsewhere).
  // Fargate bills from the image pull to the task's stop: add a minute for pull and start.
  const scale = 10_000 / dumpMB;
  const sizes = [
    { vcpu: 1, gb: 2, hours: (Math.max(flows.backup, baseline.cpu) * scale + 60) / 3600 },
    { vcpu: 2, gb: 4, hours: (flows.backup * scale + 60) / 3600 },
  ];
  console.log(
    `\nFargate ARM64 cost of one nightly backup of 10 GB of dump (backup task CPU ${f(baseline.cpu)} s per ${f(dumpMB, 0)} MB; us-east-1 prices):`,
  );
  for (const s of sizes) {
    const perHour = s.vcpu * PRICE.vcpu + s.gb * PRICE.gb + 1 * PRICE.storageGb;
    const cost = s.hours * perHour;
    console.log(
      `  ${s.vcpu} vCPU / ${s.gb} GB / 21 GiB: ${f(s.hours * 60)} min → $${cost.toFixed(4)} per backup, $${(cost * 30).toFixed(2)} per month`,
    );
  }
} finally {
  await sim?.stop();
  await cluster.stop();
}
