/**
 * npm run bench:pitr — point-in-time recovery against the plain tools and pgBackRest, in
 * one run, on one PostgreSQL cluster (docs/benchmarks.md, "PITR"):
 *
 *   archiving  pgbench -c 4 for BENCH_PITR_SECONDS while archive_command is, in turn,
 *              `strongroom wal-push %p`, strongroom-wal-wait with `strongroom wal-archiver`,
 *              and `pgbackrest archive-push %p` (sync; and async, process-max=2): the peak
 *              number of segments waiting (.ready), core-seconds per archived segment, and
 *              the peak RSS of what archives
 *   base       `strongroom basebackup` vs `pg_basebackup -Ft -D - -X none | zstd -3 -T0 | age`
 *              and vs `pgbackrest backup --type=full` (zst, aes-256-cbc, posix repo)
 *   recovery   BENCH_PITR_WAL_MB of WAL written after the base backups, then
 *              `strongroom restore --pitr --to-latest --start` vs `pgbackrest restore` and a
 *              start, each until the server has promoted
 *
 * The cluster is built fresh (pgbench -i) in a temp dir and removed at the end. It runs as
 * the `postgres` OS user, as do archive_command, `strongroom basebackup` and pgBackRest (the
 * database host's tools); `restore --pitr` runs as root, as an operator would. Our side
 * runs the esbuild bundle, as an installed package does.
 *
 *   --scale N / BENCH_PITR_SCALE=68   pgbench scale (68 is about 1 GB)
 *   BENCH_PITR_SECONDS=60             each archiving run's pgbench -T
 *   BENCH_PITR_WAL_MB=1024            WAL between the base backups and the recoveries' end
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import { generateSigningKey } from "#core/audit/row-signature.ts";
import { serverUser, startCluster, systemBinDir } from "#worker/pg/scratch-cluster.ts";
import { freePort } from "#worker/service-process.ts";
import { buildWorker } from "../scripts/build.ts";
import { dbUrl, query } from "./bench-database.ts";
import { processCpuSeconds } from "./measure.ts";
import { peakRssMiB, type Run, runAs, watchProcesses } from "./process-watch.ts";

const flag = (name: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const SCALE = Number(flag("--scale") ?? process.env.BENCH_PITR_SCALE ?? 68);
const PGBENCH_SECONDS = Number(process.env.BENCH_PITR_SECONDS ?? 60);
const WAL_MB = Number(process.env.BENCH_PITR_WAL_MB ?? 1024);

const bin = systemBinDir(15);
const owner = await serverUser();
const asHost = owner ? { user: owner } : {};
const forHost = async (file: string) => {
  if (owner) await chown(file, owner.uid, owner.gid);
};
const node = process.execPath;
const cli = await buildWorker(path.resolve(import.meta.dirname, "../dist/bench-pitr"));
const wait = path.resolve(import.meta.dirname, "../containers/worker/bin/strongroom-wal-wait");

const work = await mkdtemp(path.join(tmpdir(), "strongroom-bench-pitr-"));
await chmod(work, 0o755);
await forHost(work);
const say = (line: string) => process.stderr.write(`${line}\n`);

// The host's secrets, readable by the server's OS user: the age identity (for recovery's
// wal-fetch), the signing key (wal-push, basebackup), pgBackRest's cipher passphrase.
const identity = await generateX25519Identity();
const recipient = await identityToRecipient(identity);
const identityFile = path.join(work, "identity.txt");
await writeFile(identityFile, `${identity}\n`, { mode: 0o600 });
await forHost(identityFile);
const signing = generateSigningKey();
const signingKeyFile = path.join(work, "signing.key");
await writeFile(signingKeyFile, `${signing.secret}\n`, { mode: 0o600 });
await forHost(signingKeyFile);
const storeDir = path.join(work, "store");
const spool = path.join(work, "spool");
const repoDir = path.join(work, "pgbackrest-repo");
for (const dir of [storeDir, spool, repoDir, path.join(work, "pgbackrest-lock"), path.join(work, "pgbackrest-spool")]) {
  await mkdir(dir, { mode: 0o700 });
  await forHost(dir);
}
const storeUrl = pathToFileURL(storeDir).href;
const pushArgs = ["--store", storeUrl, "--database-id", "bench", "--recipient", recipient];
const hostArgs = [...pushArgs, "--signing-key", signingKeyFile];

// archive_command is a dispatcher: the server's command line (-c) outranks ALTER SYSTEM,
// so who archives is a file the bench rewrites between runs. Each archiving command runs
// under /usr/bin/time, whose rusage covers it and every child it waited for. pgBackRest's
// backup checks that archive_command names pgbackrest before it waits for its WAL (as
// `strongroom basebackup` waits for its own): the dispatcher's name says it.
const modeFile = path.join(work, "archive-mode");
const pgbrConf = path.join(work, "pgbackrest.conf");
const q = (words: string[]) => words.map((w) => `'${w}'`).join(" ");
const timeTo = (log: string) => `/usr/bin/time -a -o '${path.join(work, log)}' -f '%U %S %M'`;
const dispatcher = path.join(work, "archive-strongroom-or-pgbackrest.sh");
await writeFile(
  dispatcher,
  `#!/bin/sh
# $1 = %p, $2 = %f
ours() { ${timeTo("rusage-ours")} ${q([node, cli, "wal-push"])} "$1" ${q(hostArgs)}; }
theirs() { p=$1; shift; ${timeTo("rusage-theirs")} pgbackrest --config='${pgbrConf}' --stanza=bench "$@" archive-push "$p"; }
case "$(cat '${modeFile}')" in
none) exit 0 ;;
ours) ours "$1" ;;
archiver) ${timeTo("rusage-ours")} '${wait}' '${spool}' 60 "$2" -- ${q([node, cli, "wal-push"])} "$1" ${q(hostArgs)} ;;
theirs) theirs "$1" ;;
theirs-async) theirs "$1" --archive-async --process-max=2 ;;
both) ours "$1" && theirs "$1" ;;
*) exit 1 ;;
esac
`,
  { mode: 0o755 },
);
const archiveMode = async (mode: string) => {
  await writeFile(modeFile, `${mode}\n`, { mode: 0o644 });
};
await archiveMode("none");

const cluster = await startCluster(bin, "pitr-bench", {
  parentDir: work,
  settings: [
    "archive_mode=on",
    `archive_command=${dispatcher} %p %f`,
    "wal_level=replica",
    // A production server's WAL volume: the scratch cluster turns full-page writes off.
    "full_page_writes=on",
    "shared_buffers=256MB",
    "max_wal_size=4GB",
    "checkpoint_timeout=30min",
  ],
});
const pgdata = path.join(cluster.dir, "data");
const pgEnv = {
  PGHOST: cluster.host,
  PGPORT: String(cluster.port),
  PGUSER: "postgres",
  PGPASSWORD: cluster.password,
  PGDATABASE: "bench",
};
const cipherPass = randomBytes(24).toString("base64url");
await writeFile(
  pgbrConf,
  `[global]
repo1-path=${repoDir}
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=${cipherPass}
repo1-retention-full=9
compress-type=zst
compress-level=3
start-fast=y
lock-path=${path.join(work, "pgbackrest-lock")}
spool-path=${path.join(work, "pgbackrest-spool")}
log-level-console=warn
log-level-file=off

[bench]
pg1-path=${pgdata}
pg1-port=${cluster.port}
pg1-socket-path=${cluster.dir}
pg1-user=postgres
`,
  { mode: 0o600 },
);
await forHost(pgbrConf);
const pgbackrest = (args: string[], rss = false) =>
  runAs("pgbackrest", [`--config=${pgbrConf}`, "--stanza=bench", ...args], {
    env: { PGPASSWORD: cluster.password },
    ...asHost,
    rss,
  });

const fmt = (n: number, d = 1) => n.toFixed(d);
const mb = (bytes: number) => bytes / 1e6;
const currentLsnBytes = async () =>
  Number((await query(cluster.url, "select pg_current_wal_lsn() - '0/0'::pg_lsn as b"))[0]?.b);
const readyCount = async () =>
  (await readdir(path.join(pgdata, "pg_wal", "archive_status"))).filter((f) => f.endsWith(".ready")).length;
const archivedCount = async () =>
  Number((await query(cluster.url, "select archived_count from pg_stat_archiver"))[0]?.archived_count);
/** Switches segment and waits until the archiver has nothing left ready. */
const drained = async (ms = 600_000) => {
  await query(cluster.url, "select pg_switch_wal()");
  const until = Date.now() + ms;
  while ((await readyCount()) > 0) {
    if (Date.now() > until) throw new Error("the archiver did not catch up");
    await sleep(250);
  }
};
/** Sums user + system seconds and the peak RSS of the /usr/bin/time lines in `log`. */
const rusage = async (log: string) => {
  const file = path.join(work, log);
  const lines = existsSync(file) ? (await readFile(file, "utf8")).trim().split("\n").filter(Boolean) : [];
  let cpu = 0;
  let rss = 0;
  for (const line of lines) {
    const [u, s, kb] = line.split(" ").map(Number);
    cpu += (u ?? 0) + (s ?? 0);
    rss = Math.max(rss, (kb ?? 0) / 1024);
  }
  return { invocations: lines.length, cpu, rssMiB: rss };
};

interface ArchivingRow {
  what: string;
  tps: number;
  segments: number;
  peakReady: number;
  drainSeconds: number;
  coreSecondsPerSegment: number;
  peakRssMiB: number;
}
interface BackupRow {
  what: string;
  seconds: number;
  storedBytes: number;
  peakRssMiB?: number;
}
interface RecoveryRow {
  what: string;
  seconds: number;
  walBytes: number;
  peakRssMiB?: number;
  fetchRssMiB: number;
  fetches: number;
}
const archiving: ArchivingRow[] = [];
const backups: BackupRow[] = [];
const recoveries: RecoveryRow[] = [];
let dataBytes = 0;

try {
  say(`pgbench -i -s ${SCALE} (archive_command discards the initial load's WAL: no base precedes it)…`);
  await query(cluster.url, "create database bench");
  await runAs(`${bin}/pgbench`, ["-i", "-q", "-s", String(SCALE), "bench"], { env: pgEnv });
  await query(dbUrl(cluster, "bench"), "vacuum analyze");
  dataBytes = Number(
    (await query(cluster.url, "select sum(pg_database_size(datname))::float8 as b from pg_database"))[0]?.b,
  );
  say(`cluster: ${fmt(mb(dataBytes), 0)} MB`);
  await drained();
  await pgbackrest(["stanza-create"]);

  // ── Archiving under load ────────────────────────────────────────────────────────
  /** A process that archives beside archive_command: started before the load, and what it used once stopped. */
  type Beside = () => Promise<() => Promise<{ cpuSeconds: number; peakRssMiB: number }>>;
  const archive = async (what: string, mode: string, log: string, longLived?: Beside) => {
    await drained();
    await query(cluster.url, "checkpoint");
    await rm(path.join(work, log), { force: true });
    const during = longLived ? await longLived() : undefined;
    await archiveMode(mode);
    const before = await archivedCount();
    let peakReady = 0;
    let loading = true;
    const lag = (async () => {
      while (loading) {
        peakReady = Math.max(peakReady, await readyCount());
        await sleep(500);
      }
    })();
    say(`archiving: ${what}, pgbench -c 4 -T ${PGBENCH_SECONDS}…`);
    const bench = await runAs(`${bin}/pgbench`, ["-n", "-c", "4", "-j", "2", "-T", String(PGBENCH_SECONDS)], {
      env: pgEnv,
    });
    const loadEnded = performance.now();
    await drained();
    const drainSeconds = (performance.now() - loadEnded) / 1000;
    loading = false;
    await lag;
    const segments = (await archivedCount()) - before;
    const extra = during ? await during() : { cpuSeconds: 0, peakRssMiB: 0 };
    const r = await rusage(log);
    await archiveMode("none");
    archiving.push({
      what,
      tps: Number(/tps = ([\d.]+)/.exec(bench.stdout)?.[1] ?? 0),
      segments,
      peakReady,
      drainSeconds,
      coreSecondsPerSegment: (r.cpu + extra.cpuSeconds) / Math.max(1, segments),
      peakRssMiB: Math.max(r.rssMiB, extra.peakRssMiB),
    });
  };
  await archive("strongroom wal-push (archive_command)", "ours", "rusage-ours");
  await archive("strongroom wal-archiver --parallel 4 + strongroom-wal-wait", "archiver", "rusage-ours", async () => {
    const child = spawn(
      node,
      [cli, "wal-archiver", "--pgdata", pgdata, "--spool", spool, ...hostArgs, "--parallel", "4"],
      { env: { ...process.env, STRONGROOM_LOG_FORMAT: "json" }, ...(owner ?? {}), stdio: "ignore" },
    );
    const closed = new Promise((resolve) => child.once("close", resolve));
    while (!existsSync(path.join(spool, "archiver.pid"))) await sleep(100);
    return async () => {
      // The archiver's own CPU and peak RSS, read before it goes.
      const cpuSeconds = processCpuSeconds(child.pid as number);
      const rss = peakRssMiB(child.pid as number);
      child.kill("SIGTERM");
      await closed;
      return { cpuSeconds, peakRssMiB: rss };
    };
  });
  await archive("pgbackrest archive-push (sync)", "theirs", "rusage-theirs");
  await archive("pgbackrest archive-push (async, process-max=2)", "theirs-async", "rusage-theirs", async () => {
    // The async half runs detached (PostgreSQL never waits for it): sampled from /proc.
    const stop = watchProcesses((cmd) => cmd.startsWith("pgbackrest") && cmd.includes("archive-push:async"));
    const locals = watchProcesses((cmd) => cmd.startsWith("pgbackrest") && /\blocal\b/.test(cmd));
    return async () => {
      const [a, b] = [await stop(), await locals()];
      return { cpuSeconds: a.cpuSeconds + b.cpuSeconds, peakRssMiB: Math.max(a.peakRssMiB, b.peakRssMiB) };
    };
  });

  // ── Base backups ────────────────────────────────────────────────────────────────
  // From here on both archives receive every segment, so each tool can recover its own base.
  await archiveMode("both");
  await drained();
  /** Times one base backup; returns the WAL position before it started (where its recovery begins). */
  const backup = async (what: string, run: () => Promise<Run>, stored: (r: Run) => Promise<number>, rss = false) => {
    await query(cluster.url, "checkpoint");
    const startLsn = await currentLsnBytes();
    say(`base backup: ${what}…`);
    const r = await run();
    backups.push({
      what,
      seconds: r.seconds,
      storedBytes: await stored(r),
      ...(rss ? { peakRssMiB: r.peakRssMiB } : {}),
    });
    return startLsn;
  };
  const shellOut = path.join(work, "base.tar.zst.age");
  await backup(
    "pg_basebackup -Ft -X none | zstd -3 -T0 | age",
    () =>
      runAs(
        "bash",
        [
          "-c",
          `set -o pipefail; '${bin}/pg_basebackup' -Ft -D - -X none --checkpoint=fast | zstd -3 -T0 -q | age -r ${recipient} > '${shellOut}'`,
        ],
        { env: pgEnv },
      ),
    async () => (await stat(shellOut)).size,
  );
  await rm(shellOut);
  const repoBytes = async () => {
    const out = await runAs("du", ["-sb", path.join(repoDir, "backup")]);
    return Number(out.stdout.split("\t")[0]);
  };
  let repoBefore = await repoBytes();
  await backup(
    "pgbackrest backup --type=full --process-max=2",
    () => pgbackrest(["backup", "--type=full", "--process-max=2"]),
    async () => {
      const now = await repoBytes();
      const bytes = now - repoBefore;
      repoBefore = now;
      return bytes;
    },
  );
  const strongroomBaseLsn = await backup(
    "strongroom basebackup",
    () =>
      runAs(node, [cli, "basebackup", ...hostArgs, "--json"], {
        env: { DATABASE_URL: cluster.url },
        ...asHost,
        rss: true,
      }),
    async (r) => Number((JSON.parse(r.stdout) as { object: { storedBytes: number } }).object.storedBytes),
    true,
  );
  const pgbackrestBaseLsn = await backup(
    "pgbackrest backup --type=full",
    () => pgbackrest(["backup", "--type=full"]),
    async () => (await repoBytes()) - repoBefore,
  );

  // ── WAL to replay, then recovery ────────────────────────────────────────────────
  say(`writing ${WAL_MB} MB of WAL (updates of pgbench_accounts), archived by both…`);
  const from = await currentLsnBytes();
  for (let k = 0; (await currentLsnBytes()) - from < WAL_MB * 1024 * 1024; k = (k + 1) % 16) {
    await query(dbUrl(cluster, "bench"), `update pgbench_accounts set abalance = abalance + 1 where aid % 16 = ${k}`);
  }
  await drained();
  const endLsn = await currentLsnBytes();

  const promoted = async (log: string) => {
    for (;;) {
      const text = await readFile(log, "utf8").catch(() => "");
      if (/FATAL|PANIC/.test(text)) throw new Error(`recovery failed: ${text.slice(-2000)}`);
      if (/selected new timeline ID/.test(text) && /database system is ready to accept connections/.test(text)) return;
      await sleep(100);
    }
  };
  const stopServer = (dir: string) => runAs(`${bin}/pg_ctl`, ["stop", "-D", dir, "-m", "fast", "-w"], asHost);

  const oursDir = path.join(work, "recovered-ours");
  say("recovery: strongroom restore --pitr --to-latest --start…");
  const fetchWatch = watchProcesses((cmd) => cmd.includes(" wal-fetch "));
  const ours = await runAs(
    node,
    [
      cli,
      "restore",
      "--pitr",
      "--store",
      storeUrl,
      "--database-id",
      "bench",
      "--identity",
      identityFile,
      "--signer",
      signing.signer,
      "--to-latest",
      "--pgdata",
      oursDir,
      "--start",
      "--port",
      String(await freePort()),
      "--json",
    ],
    { rss: true },
  );
  const fetched = await fetchWatch();
  await stopServer(oursDir);
  await rm(oursDir, { recursive: true, force: true });
  recoveries.push({
    what: "strongroom restore --pitr --to-latest --start",
    seconds: ours.seconds,
    walBytes: endLsn - strongroomBaseLsn,
    peakRssMiB: ours.peakRssMiB,
    fetchRssMiB: fetched.peakRssMiB,
    fetches: fetched.processes,
  });

  const theirsDir = path.join(work, "recovered-theirs");
  await mkdir(theirsDir, { mode: 0o700 });
  await forHost(theirsDir);
  say("recovery: pgbackrest restore, then pg_ctl start until promoted…");
  const getWatch = watchProcesses((cmd) => cmd.startsWith("pgbackrest") && cmd.includes("archive-get"));
  const started = performance.now();
  await pgbackrest(["restore", `--pg1-path=${theirsDir}`, "--archive-mode=off"]);
  const log = path.join(theirsDir, "recovery.log");
  await runAs(
    `${bin}/pg_ctl`,
    ["start", "-D", theirsDir, "-l", log, "-W", "-o", `-p ${await freePort()} -k ${work}`],
    asHost,
  );
  await promoted(log);
  const theirsSeconds = (performance.now() - started) / 1000;
  const got = await getWatch();
  await stopServer(theirsDir);
  await rm(theirsDir, { recursive: true, force: true });
  recoveries.push({
    what: "pgbackrest restore + pg_ctl start",
    seconds: theirsSeconds,
    walBytes: endLsn - pgbackrestBaseLsn,
    fetchRssMiB: got.peakRssMiB,
    fetches: got.processes,
  });
} finally {
  await cluster.stop().catch(() => undefined);
  await rm(work, { recursive: true, force: true });
}

// ── The table ──────────────────────────────────────────────────────────────────────
const ratio = (baseline: number | undefined, ours: number | undefined) =>
  baseline && ours ? `${fmt(baseline / ours, 2)}x` : "";
console.log(
  `\nPITR on one PostgreSQL 15 cluster of ${fmt(mb(dataBytes), 0)} MB (pgbench scale ${SCALE}); ratios are baseline ÷ ours (> 1: ours is faster or cheaper)`,
);
console.log(`\narchiving under pgbench -c 4 -T ${PGBENCH_SECONDS}`);
console.log(
  "  what                                                         tps  segments  peak .ready  drain s  core-s/segment  vs pgbackrest sync  peak RSS",
);
const sync = archiving.find((a) => a.what.includes("sync)"));
for (const a of archiving) {
  console.log(
    `  ${a.what.padEnd(58)} ${fmt(a.tps, 0).padStart(5)}  ${String(a.segments).padStart(8)}  ${String(a.peakReady).padStart(11)}  ${fmt(a.drainSeconds).padStart(7)}  ${fmt(a.coreSecondsPerSegment, 3).padStart(14)}  ${ratio(sync?.coreSecondsPerSegment, a.coreSecondsPerSegment).padStart(18)}  ${fmt(a.peakRssMiB, 0).padStart(4)} MiB`,
  );
}
console.log("\nbase backup");
console.log(
  "  what                                                   seconds   stored MB   vs shell   vs pgbackrest   peak RSS",
);
const shell = backups.find((b) => b.what.startsWith("pg_basebackup"));
const theirs = backups.find((b) => b.what === "pgbackrest backup --type=full");
for (const b of backups) {
  console.log(
    `  ${b.what.padEnd(52)} ${fmt(b.seconds).padStart(9)}   ${fmt(mb(b.storedBytes), 0).padStart(9)}   ${ratio(shell?.seconds, b.seconds).padStart(8)}   ${ratio(theirs?.seconds, b.seconds).padStart(13)}   ${b.peakRssMiB === undefined ? "" : `${fmt(b.peakRssMiB, 0)} MiB`}`,
  );
}
console.log("\nrecovery of the newest base and the WAL after it, until the server has promoted");
console.log(
  "  what                                              seconds   WAL MB   vs pgbackrest   peak RSS   restore_command: runs, peak RSS",
);
const theirsRecovery = recoveries.find((r) => r.what.startsWith("pgbackrest"));
for (const r of recoveries) {
  console.log(
    `  ${r.what.padEnd(47)} ${fmt(r.seconds).padStart(9)}   ${fmt(mb(r.walBytes), 0).padStart(6)}   ${ratio(theirsRecovery?.seconds, r.seconds).padStart(13)}   ${(r.peakRssMiB === undefined ? "" : `${fmt(r.peakRssMiB, 0)} MiB`).padStart(8)}   ${r.fetches}, ${fmt(r.fetchRssMiB, 0)} MiB`,
  );
}
