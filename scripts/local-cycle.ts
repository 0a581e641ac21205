/**
 * npm run cycle — the whole job on one machine, no AWS:
 *   a Postgres with a sample database (a throwaway local cluster, or DATABASE_URL's),
 *   a key pair (kept in .strongroom/), a backup to a file:// store in .strongroom/store,
 *   the listing, a restore into a fresh database, a side-by-side comparison, a
 *   verification in a throwaway cluster, and the readiness status.
 * It needs Node and PostgreSQL's server and client tools, nothing the tests need besides.
 * STRONGROOM_CYCLE_DIR moves .strongroom/ elsewhere (the quick-start test uses a temp dir).
 *
 * The restored copy is a full copy of the source: on DATABASE_URL's server it is dropped
 * at the end (the run says so, with its size), unless `npm run cycle -- --keep` asks to
 * keep it for a look. A throwaway cluster goes, with everything in it, either way.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, rename } from "node:fs/promises";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import pg from "pg";
import { type Cluster, startCluster } from "#worker/pg/scratch-cluster.ts";

const root = path.resolve(import.meta.dirname, "..");
const home = process.env.STRONGROOM_CYCLE_DIR || path.join(root, ".strongroom");
const identityFile = path.join(home, "identity.txt");
// Signs the rows this cycle writes to the store's audit log, so that only they count
// (docs/trust.md): every step below gets it through STRONGROOM_SIGNING_KEY_FILE.
const signingKeyFile = path.join(home, "signing.key");
const storeUrl = pathToFileURL(path.join(home, "store")).href;
const cli = path.join(root, "containers/worker/bin/strongroom.mjs");

const USAGE = "usage: npm run cycle [-- --keep]  (--keep: leave the restored copy on DATABASE_URL's server)";
const args = process.argv.slice(2);
const unknown = args.find((a) => a !== "--keep");
if (unknown !== undefined) {
  console.error(`local cycle: unknown argument ${unknown}\n${USAGE}`);
  process.exit(2);
}
const keep = args.includes("--keep");

// Bold on a terminal only, so that logs and CI output read plainly.
const bold = (text: string) => (process.stdout.isTTY && !process.env.NO_COLOR ? `\x1b[1m${text}\x1b[0m` : text);
const step = (n: number, text: string) => process.stdout.write(`\n${bold(`[${n}/8] ${text}`)}\n`);

function strongroom(args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  process.stdout.write(`$ strongroom ${args.join(" ")}\n`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], {
      env: { ...process.env, STRONGROOM_SIGNING_KEY_FILE: signingKeyFile, ...env },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => {
      out += s;
      process.stdout.write(s);
    });
    child.once("close", (code) =>
      code === 0 ? resolve(out) : reject(new Error(`strongroom ${args[0]} exited ${code}`)),
    );
  });
}

async function query<T extends pg.QueryResultRow>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

function withDb(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

async function tableCounts(url: string): Promise<Map<string, number>> {
  const tables = await query<{ s: string; t: string }>(
    url,
    `select n.nspname as s, c.relname as t from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema') order by 1, 2`,
  );
  const out = new Map<string, number>();
  for (const { s, t } of tables) {
    const [row] = await query<{ n: number }>(
      url,
      `select count(*)::int as n from ${pg.escapeIdentifier(s)}.${pg.escapeIdentifier(t)}`,
    );
    out.set(`${s}.${t}`, row?.n ?? -1);
  }
  return out;
}

/**
 * The restored copy on the user's own server (DATABASE_URL): dropped, unless --keep; a
 * line either way says which, so a run never leaves a full copy behind unannounced.
 */
async function settleRestoredCopy(serverUrl: string, db: string): Promise<void> {
  const [row] = await query<{ size: string }>(
    serverUrl,
    `select pg_size_pretty(pg_database_size(${pg.escapeLiteral(db)})) as size`,
  );
  const where = `${db} (${row?.size ?? "size unknown"}) on ${new URL(serverUrl).host}`;
  if (keep) {
    console.log(`kept the restored copy ${where} (--keep); drop it with: dropdb ${db}`);
    return;
  }
  await query(serverUrl, `drop database ${pg.escapeIdentifier(db)}`);
  console.log(`dropped the restored copy ${where}; \`npm run cycle -- --keep\` keeps it`);
}

const started = Date.now();
let cluster: Cluster | undefined;
/** The restored copy, once created on DATABASE_URL's server (a throwaway cluster's goes with it). */
let restoredOnUserServer: { serverUrl: string; db: string } | undefined;
try {
  await mkdir(home, { recursive: true, mode: 0o700 });

  step(1, "PostgreSQL with a sample database");
  let sourceUrl: string;
  let serverUrl: string;
  if (process.env.DATABASE_URL) {
    sourceUrl = process.env.DATABASE_URL;
    serverUrl = sourceUrl;
    console.log(`using DATABASE_URL (${new URL(sourceUrl).host}${new URL(sourceUrl).pathname})`);
  } else {
    cluster = await startCluster();
    serverUrl = cluster.url;
    console.log(`started a throwaway PostgreSQL cluster on 127.0.0.1:${cluster.port}`);
    await query(serverUrl, "create role shop_owner login");
    await query(serverUrl, "create role shop_reader");
    await query(serverUrl, "create database shop");
    sourceUrl = withDb(serverUrl, "shop");
    await query(sourceUrl, await readFile(path.join(root, "test/fixtures/rich-db.sql"), "utf8"));
    console.log("loaded the sample database 'shop' (schemas, enums, jsonb, partitions, large objects, roles)");
  }

  step(2, "a key pair");
  let recipient: string;
  if (existsSync(identityFile)) {
    recipient = /public key: (age1\S+)/.exec(await readFile(identityFile, "utf8"))?.[1] ?? "";
    console.log(`reusing ${path.relative(root, identityFile)} (recipient ${recipient})`);
  } else {
    recipient = (await strongroom(["keygen", "--out", identityFile])).trim();
  }
  if (!existsSync(signingKeyFile)) {
    const store = path.join(home, "store");
    // A store from a cycle before signing has rows nothing signed, which would not count.
    if (existsSync(store)) await rename(store, `${store}.unsigned-${Date.now()}`);
    const signer = (await strongroom(["keygen", "--signing", "--out", signingKeyFile])).trim();
    console.log(`signing key ${path.relative(root, signingKeyFile)} (signer ${signer})`);
  }

  step(3, "back up to a file:// store");
  const env = { DATABASE_URL: sourceUrl, STRONGROOM_STORE: storeUrl };
  // Each run's throwaway cluster is a new server, so a kept store's series moves each time.
  const moved = process.env.DATABASE_URL ? [] : ["--allow-source-change"];
  const backupId = (await strongroom(["backup", "--recipient", recipient, ...moved], env)).trim();

  step(4, "list the store");
  await strongroom(["list"], env);

  step(5, "restore into a fresh database");
  const targetDb = `strongroom_restore_${backupId.slice(0, 15).toLowerCase()}`;
  await query(serverUrl, `create database ${targetDb}`);
  if (!cluster) restoredOnUserServer = { serverUrl, db: targetDb };
  const targetUrl = withDb(serverUrl, targetDb);
  await strongroom(["restore", "--backup", backupId, "--identity", identityFile], {
    STRONGROOM_STORE: storeUrl,
    STRONGROOM_TARGET_URL: targetUrl,
  });

  step(6, "compare source and restore");
  const [a, b] = await Promise.all([tableCounts(sourceUrl), tableCounts(targetUrl)]);
  const names = [...new Set([...a.keys(), ...b.keys()])].sort();
  const width = Math.max(5, ...names.map((n) => n.length));
  console.log(`${"TABLE".padEnd(width)}  ${"SOURCE".padStart(8)}  ${"RESTORED".padStart(8)}`);
  let same = true;
  for (const n of names) {
    const ok = a.get(n) === b.get(n);
    same &&= ok;
    console.log(
      `${n.padEnd(width)}  ${String(a.get(n) ?? "-").padStart(8)}  ${String(b.get(n) ?? "-").padStart(8)}${ok ? "" : "  MISMATCH"}`,
    );
  }
  if (!same) throw new Error("source and restore differ");
  console.log(`${names.length} tables match.`);

  step(7, "verify the backup in a throwaway cluster of its server's major");
  await strongroom(["verify", "--backup", backupId, "--identity", identityFile], { STRONGROOM_STORE: storeUrl });

  step(8, "readiness: the newest backup and the newest verified one");
  await strongroom(["status"], { STRONGROOM_STORE: storeUrl });
  if (restoredOnUserServer) {
    console.log("");
    await settleRestoredCopy(restoredOnUserServer.serverUrl, restoredOnUserServer.db);
    restoredOnUserServer = undefined;
  } else {
    console.log("\nthe throwaway cluster goes now, with the restored copy in it");
  }
  console.log(`\nFull cycle in ${((Date.now() - started) / 1000).toFixed(1)} s.`);
  console.log(
    `The store is in ${path.relative(root, path.join(home, "store"))}/, the identity in ${path.relative(root, identityFile)}.`,
  );
} catch (err) {
  console.error(`\nlocal cycle failed: ${(err as Error).message}`);
  process.exitCode = 1;
  // A failed run does not leave the copy behind either (unless --keep, for a look).
  if (restoredOnUserServer) {
    await settleRestoredCopy(restoredOnUserServer.serverUrl, restoredOnUserServer.db).catch((e: Error) =>
      console.error(`could not drop the restored copy ${restoredOnUserServer?.db}: ${e.message}`),
    );
  }
} finally {
  await cluster?.stop();
}
