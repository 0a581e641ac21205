import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import pg from "pg";
import { startCluster, systemBinDir } from "#worker/pg/scratch-cluster.ts";
import { ArchiveStatsTap } from "#worker/stages/archive-stats.ts";

const bin = systemBinDir();
const c = await startCluster(bin, "trial");
const q = async (db: string, sql: string) => {
  const cl = new pg.Client({ connectionString: c.url.replace(/\/postgres$/, `/${db}`) });
  await cl.connect();
  try {
    return await cl.query(sql);
  } finally {
    await cl.end();
  }
};
const env = { ...process.env, PGHOST: c.host, PGPORT: String(c.port), PGUSER: "postgres", PGPASSWORD: c.password };
async function fp(args: string[]) {
  const p = spawn(`${bin}/pg_dump`, args, { env, stdio: ["ignore", "pipe", "inherit"] });
  const tap = new ArchiveStatsTap();
  await pipeline(
    p.stdout,
    tap,
    new Writable({
      write(_c, _e, cb) {
        cb();
      },
    }),
  );
  return tap.result();
}
try {
  await q("postgres", "do $$ begin create role shop_owner login; create role shop_reader; end $$");
  await q("postgres", "create database src");
  await q("src", readFileSync("test/fixtures/rich-db.sql", "utf8"));
  await q(
    "src",
    "create table nv(id int); alter table nv add constraint pos check (id > 0) not valid; select lo_from_bytea(0, 'hello'); create materialized view mv as select 1 as x; comment on database src is 'hi'",
  );
  const full = await fp(["-Fc", "-Z0", "src"]);
  await q("postgres", "create database dst");
  const r = spawn(
    "bash",
    ["-c", `${bin}/pg_dump -Fc -Z0 src | ${bin}/pg_restore -d dst --single-transaction --exit-on-error`],
    { env, stdio: "inherit" },
  );
  await new Promise((res) => r.once("close", res));
  const schema = await fp(["-Fc", "-Z0", "--schema-only", "dst"]);
  console.log(
    full?.structureFingerprint,
    schema?.structureFingerprint,
    full?.structureFingerprint === schema?.structureFingerprint,
  );
  console.log("notValid", full?.notValidConstraints, schema?.notValidConstraints);
} finally {
  await c.stop();
}
