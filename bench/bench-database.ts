import { execFile } from "node:child_process";
import * as path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { type Cluster, startCluster, systemBinDir } from "#worker/pg/scratch-cluster.ts";

/**
 * The benchmark databases, shared by the benches: a cluster per size kept in
 * bench/.work/pg-<size>g (built once, reused by later runs), holding `bench`: pgbench
 * tables plus a realistic text/jsonb/bytea table that compresses about 3×.
 */
export const BENCH_WORK = path.resolve(import.meta.dirname, ".work");
export const BENCH_BIN = systemBinDir();

export async function query(url: string, text: string): Promise<pg.QueryResultRow[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text)).rows;
  } finally {
    await c.end();
  }
}

export const dbUrl = (cluster: Cluster, db: string) => cluster.url.replace(/\/postgres$/, `/${db}`);

/** The cluster for a `gb`-sized bench database, started from bench/.work, the database built if missing. */
export async function benchCluster(gb: number): Promise<Cluster> {
  const cluster = await startCluster(BENCH_BIN, `bench-${gb}g`, {
    keepDir: path.join(BENCH_WORK, `pg-${gb}g`),
    settings: ["shared_buffers=512MB", "maintenance_work_mem=256MB", "max_wal_size=4GB", "checkpoint_timeout=30min"],
  });
  try {
    await ensureDatabase(cluster, gb);
    return cluster;
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}

/** pgbench at 45 × `gb` scale plus ~600k docs rows per GB that compress about 3×. */
async function ensureDatabase(cluster: Cluster, gb: number): Promise<void> {
  const have = await query(cluster.url, "select 1 from pg_database where datname = 'bench'");
  if (have.length > 0) return;
  process.stderr.write(`building a ${gb} GB database (once; kept in bench/.work)…\n`);
  await query(cluster.url, "create database bench");
  const env = { PGHOST: cluster.host, PGPORT: String(cluster.port), PGUSER: "postgres", PGPASSWORD: cluster.password };
  await promisify(execFile)(`${BENCH_BIN}/pgbench`, ["-i", "-q", "-s", String(Math.round(45 * gb)), "bench"], {
    env: { ...process.env, ...env },
  });
  const url = dbUrl(cluster, "bench");
  await query(url, `create table docs(id bigserial primary key, title text, body text, meta jsonb, blob bytea)`);
  // ~330 MB per GB: words drawn from a small vocabulary, json, and a little random bytea.
  const rows = Math.round(600_000 * gb);
  for (let done = 0; done < rows; done += 100_000) {
    await query(
      url,
      `insert into docs(title, body, meta, blob)
       select 'document ' || g,
              (select string_agg((array['alpha','beta','gamma','delta','order','customer','shipped','pending','invoice','total'])[1 + (random() * 9)::int] || ' ' || (random() * 1000)::int, ' ') from generate_series(1, 40 + g % 10)),
              jsonb_build_object('id', g, 'tags', jsonb_build_array('t' || g % 17, 't' || g % 5), 'score', random()),
              decode(md5(random()::text), 'hex')
       from generate_series(${done + 1}, ${Math.min(rows, done + 100_000)}) g`,
    );
  }
  await query(url, "vacuum analyze");
}
