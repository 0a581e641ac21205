/**
 * npm run bench:sim — the deployed flows' overhead, and what a nightly backup costs on
 * Fargate. On the 1 GB bench database (bench/bench-database.ts):
 *
 *   baseline:   the CLI (from the checkout, as the sim's task runs it) backs up to moto and
 *               restores into a new database, one after the other;
 *   sim:        npm run sim's BackupFlow, RestoreFlow and VerifyFlow (plan, audit rows in
 *               DynamoDB Local, the task, catalog, prune), each task in the task sandbox
 *               as Fargate would run it;
 *   no sandbox: the same flows with `--no-sandbox`, each task a plain child process;
 *   no IAM:     the same flows in the sandbox with `--no-iam`: no call goes through the IAM
 *               gateway or is decided. The sim process's CPU seconds (the in-process
 *               functions, and with IAM the gateway's proxying and decisions) are printed
 *               too: less noisy than wall time on a shared machine.
 *
 * It prints the times, their ratios, the CPU seconds of the backup task (worker and
 * pg_dump), and from those the Fargate cost of one nightly backup of 10 GB of dump.
 *   BENCH_RUNS=2   best of N per figure
 *   BENCH_GB=1     the bench database's size
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
const GB = Number(process.env.BENCH_GB ?? 1);
const CLI = path.resolve(import.meta.dirname, "../containers/worker/bin/strongroom.mjs");
/** AWS Fargate, Linux/ARM64, us-east-1 on-demand (per hour): vCPU, GB of memory, GB of ephemeral storage above 20. */
const PRICE = { vcpu: 0.03238, gb: 0.00356, storageGb: 0.000111 };
const ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret";

const identity = await generateX25519Identity();
const recipient = await identityToRecipient(identity);
const cluster = await benchCluster(GB);
let sim: Sim | undefined;
let plainSim: Sim | undefined;
let noIamSim: Sim | undefined;
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
      // The secret holds the whole connection (Secrets Manager's RDS format), and says so.
      databases: [{ id: "bench", secretArn: `${ARN}:bench/db-AbCdEf`, secretHas: ["host", "port", "dbname"] }],
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
  // The second shares the stand-ins the first started (their endpoints are in the environment now).
  plainSim = await Sim.start({ configFile, log: () => undefined, sandbox: false });
  noIamSim = await Sim.start({ configFile, log: () => undefined, iam: false });
  const withoutIam: Sim = noIamSim;
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
  type Flows = { backup: number; restore: number; verify: number };
  const none: Flows = { backup: Infinity, restore: Infinity, verify: Infinity };
  const sum = (f: Flows) => f.backup + f.restore + f.verify;
  const best = { sandbox: none, plain: none, noIam: none };
  const cpu = { sandbox: Infinity, noIam: Infinity };
  let calls = 0;
  let dumpMB = 0;
  /** BackupFlow, RestoreFlow into `target`, then VerifyFlow of that backup, on `on`. */
  const flowsOn = async (
    on: Sim,
    target: string,
  ): Promise<Flows & { backupId: string; cpu: number; calls: number }> => {
    await drop(target);
    const cpuBefore = process.cpuUsage();
    const backup = await on.run("BackupFlow", { databaseId: "bench" });
    const restore = await on.run("RestoreFlow", { databaseId: "bench", target: { database: target } });
    const verify = await on.run("VerifyFlow", { databaseId: "bench" });
    for (const e of [backup, restore, verify]) {
      if (e.status !== "SUCCEEDED") throw new Error(`${e.flow} ${e.status}: ${e.error} ${e.cause}`);
    }
    const used = process.cpuUsage(cpuBefore);
    const backupId = (backup.output as { plan: { backupId: string } }).plan.backupId;
    return {
      backup: backup.seconds,
      restore: restore.seconds,
      verify: verify.seconds,
      backupId,
      cpu: (used.user + used.system) / 1e6,
      calls: [backup, restore, verify].reduce((n, e) => n + (e.calls?.length ?? 0), 0),
    };
  };
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

    // Every mode in every run, so that they share the machine's load; with and without
    // IAM in turn first, so that neither always follows the CLI's restore.
    const unenforced = async () => {
      const r = await flowsOn(withoutIam, "bench_sim_noiam");
      if (sum(r) < sum(best.noIam)) best.noIam = r;
      cpu.noIam = Math.min(cpu.noIam, r.cpu);
    };
    if (i % 2 === 1) await unenforced();
    const sandboxed = await flowsOn(sim, "bench_sim");
    if (sum(sandboxed) < sum(best.sandbox)) best.sandbox = sandboxed;
    cpu.sandbox = Math.min(cpu.sandbox, sandboxed.cpu);
    calls = sandboxed.calls;
    // Read now: a later BackupFlow's prune keeps one backup a day, so this one may go.
    const { manifest } = await readManifestRecord(new S3Store(storeUrl), {
      databaseId: "bench",
      backupId: sandboxed.backupId,
    });
    dumpMB = (manifest.objects.find((o) => o.role === "dump")?.plainBytes ?? 0) / 1e6;
    if (i % 2 === 0) await unenforced();
    const plain = await flowsOn(plainSim, "bench_sim_plain");
    if (sum(plain) < sum(best.plain)) best.plain = plain;
  }
  await drop("bench_base");
  await drop("bench_sim");
  await drop("bench_sim_plain");
  await drop("bench_sim_noiam");

  const f = (n: number, d = 1) => n.toFixed(d);
  const flows = best.sandbox;
  const base = baseline.backup + baseline.restore;
  console.log(`\nnpm run sim on the ${GB} GB bench database (${f(dumpMB, 0)} MB of pg_dump output), best of ${RUNS}`);
  console.log(`  what                          backup s  restore s  verify s  backup+restore s  vs CLI`);
  console.log(
    `  CLI (baseline)                ${f(baseline.backup).padStart(8)}  ${f(baseline.restore).padStart(9)}         -  ${f(base).padStart(16)}  1.00x`,
  );
  for (const [what, r] of [
    ["flows, task sandbox", best.sandbox],
    ["flows, --no-sandbox", best.plain],
    ["flows, --no-iam", best.noIam],
  ] as const) {
    console.log(
      `  ${what.padEnd(28)}  ${f(r.backup).padStart(8)}  ${f(r.restore).padStart(9)}  ${f(r.verify).padStart(8)}  ${f(r.backup + r.restore).padStart(16)}  ${f(base / (r.backup + r.restore), 2)}x`,
    );
  }
  console.log(
    `  the three flows: ${f(sum(best.plain), 1)} s without the task sandbox, ${f(sum(best.sandbox), 1)} s in it (${f(sum(best.sandbox) / sum(best.plain), 2)}x)`,
  );
  console.log(
    `  IAM enforcement (${calls} AWS calls decided in the three flows): ${f(sum(best.noIam), 1)} s without, ${f(sum(best.sandbox), 1)} s with (${f(sum(best.sandbox) / sum(best.noIam), 2)}x); the sim process's CPU ${f(cpu.noIam, 2)} s without, ${f(cpu.sandbox, 2)} s with`,
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
  await noIamSim?.stop();
  await plainSim?.stop();
  await sim?.stop();
  await cluster.stop();
}
