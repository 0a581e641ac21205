import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import pg from "pg";
import { startCluster, systemBinDir } from "#worker/pg/scratch-cluster.ts";

const c = await startCluster(systemBinDir(), "trial");
const q = async (db: string, sql: string) => {
  const cl = new pg.Client({ connectionString: c.url.replace(/\/postgres$/, `/${db}`) });
  await cl.connect();
  try {
    return await cl.query(sql);
  } finally {
    await cl.end();
  }
};
try {
  await q("postgres", "do $$ begin create role shop_owner login; create role shop_reader; end $$");
  await q("postgres", "create database src");
  await q("src", readFileSync("test/fixtures/rich-db.sql", "utf8"));
  const dir = mkdtempSync("/tmp/vt-");
  spawnSync("chmod", ["755", dir]);
  const cli = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(process.execPath, ["containers/worker/bin/strongroom.mjs", ...args], {
      encoding: "utf8",
      env: { ...process.env, STRONGROOM_STORE: `file://${dir}/store`, ...env },
    });
  let r = cli(["keygen", "--out", `${dir}/id.txt`]);
  const rec = r.stdout.trim().split("\n").pop()!;
  r = cli(["backup", "--recipient", rec, "--database-id", "shop"], {
    DATABASE_URL: c.url.replace(/\/postgres$/, "/src"),
  });
  console.log("backup", r.status, r.stderr.slice(-300));
  writeFileSync(`${dir}/checks.sql`, "select true;\nselect count(*) > 0 from pg_class;\n");
  const t0 = Date.now();
  r = cli(["verify", "--identity", `${dir}/id.txt`, "--deep", "--checks", `${dir}/checks.sql`, "--scratch-dir", dir]);
  console.log("verify", r.status, Date.now() - t0, "ms\n", r.stdout, r.stderr.slice(-1500));
  console.log(readdirSync(dir), spawnSync("find", [`${dir}/store`, "-path", "*verif*"], { encoding: "utf8" }).stdout);
} finally {
  await c.stop();
}
