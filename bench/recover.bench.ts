/**
 * npm run bench:recover — getting one table back vs restoring the whole backup, in the
 * same run, on the 1 GB bench database (bench/bench-database.ts): `strongroom restore`
 * into a fresh database, against `strongroom recover-table` of a small table
 * (pgbench_branches) and of a large one (docs) into a fresh database. Both read and
 * decrypt the whole dump (the whole object's SHA-256 is checked before anything
 * commits); recover-table skips loading, indexing and checking everything else.
 *   BENCH_RUNS=2   best of N per figure
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import { buildWorker } from "../scripts/build.ts";
import { BENCH_WORK, benchCluster, dbUrl, query } from "./bench-database.ts";
import { type Timed, timed } from "./measure.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 2);
const cli = path.resolve(import.meta.dirname, "../dist/bench/strongroom.mjs");
await buildWorker(path.dirname(cli));

const identity = await generateX25519Identity();
const recipient = await identityToRecipient(identity);
const keyFile = path.join(BENCH_WORK, "recover-identity.txt");
await writeFile(keyFile, `${identity}\n`, { mode: 0o600 });
const storeDir = path.join(BENCH_WORK, "recover-store");
await rm(storeDir, { recursive: true, force: true });
await mkdir(storeDir, { recursive: true });
const storeUrl = pathToFileURL(storeDir).href;

const cluster = await benchCluster(1);
try {
  await timed(
    process.execPath,
    [cli, "backup", "--recipient", recipient, "--database-id", "bench", "--audit", "none"],
    {
      DATABASE_URL: dbUrl(cluster, "bench"),
      STRONGROOM_STORE: storeUrl,
    },
  );
  const fresh = async (name: string) => {
    await query(cluster.url, `drop database if exists ${name}`);
    await query(cluster.url, `create database ${name}`);
    return dbUrl(cluster, name);
  };
  const best = async (f: () => Promise<Timed>) => {
    let top: Timed | undefined;
    for (let i = 0; i < RUNS; i++) {
      const t = await f();
      if (!top || t.seconds < top.seconds) top = t;
    }
    return top as Timed;
  };
  const env = { STRONGROOM_STORE: storeUrl, STRONGROOM_AUDIT: "none" };
  const full = await best(async () =>
    timed(
      process.execPath,
      [cli, "restore", "--identity", keyFile],
      { ...env, STRONGROOM_TARGET_URL: await fresh("r_full") },
      true,
    ),
  );
  const recoverOne = (table: string) =>
    best(async () =>
      timed(
        process.execPath,
        [cli, "recover-table", "--identity", keyFile, "--table", table],
        { ...env, STRONGROOM_TARGET_URL: await fresh("r_table") },
        true,
      ),
    );
  const small = await recoverOne("public.pgbench_branches");
  const large = await recoverOne("public.docs");
  const [sizes] = await query(
    dbUrl(cluster, "bench"),
    "select pg_total_relation_size('docs')::float8 / pg_database_size('bench') as docs, pg_total_relation_size('pgbench_branches')::float8 / pg_database_size('bench') as branches",
  );
  for (const db of ["r_full", "r_table"]) await query(cluster.url, `drop database if exists ${db}`);

  const f = (n: number, d = 1) => n.toFixed(d);
  console.log(`\nrecover-table vs a full restore of the same backup (1 GB bench database), best of ${RUNS}`);
  console.log("  what                                          seconds   vs full restore   peak RSS");
  const row = (what: string, t: Timed) =>
    console.log(
      `  ${what.padEnd(45)} ${f(t.seconds).padStart(7)}   ${`${f(full.seconds / t.seconds, 2)}x`.padStart(15)}   ${f(t.peakRssMiB ?? 0, 0)} MiB`,
    );
  row("restore (the whole database)", full);
  row(`recover-table pgbench_branches (${f(Number(sizes?.branches) * 100, 3)}% of the db)`, small);
  row(`recover-table docs (${f(Number(sizes?.docs) * 100, 0)}% of the db)`, large);
} finally {
  await cluster.stop();
  await rm(storeDir, { recursive: true, force: true });
}
