import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import * as path from "node:path";
import { promisify } from "node:util";
import pg from "pg";

const run = promisify(execFile);

export async function sql<T extends pg.QueryResultRow = pg.QueryResultRow>(
  url: string | pg.ClientConfig,
  text: string,
  values: unknown[] = [],
): Promise<T[]> {
  const client = new pg.Client(typeof url === "string" ? { connectionString: url } : url);
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

export function dbUrl(clusterUrl: string, database: string, user?: string, password?: string): string {
  const u = new URL(clusterUrl);
  u.pathname = `/${database}`;
  if (user) u.username = user;
  if (password !== undefined) u.password = password;
  return u.toString();
}

/**
 * A database on the cluster by its name, as it is: node-postgres decodes a URL's path with
 * decodeURI, so a name holding `=`, `/`, `?` or `#` cannot be reached through a URL.
 */
export function dbConfig(clusterUrl: string, database: string): pg.ClientConfig {
  const u = new URL(clusterUrl);
  return {
    host: u.hostname,
    port: Number(u.port),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    database,
  };
}

let counter = 0;
/** A fresh, uniquely named empty database on the cluster. */
export async function createDatabase(clusterUrl: string, prefix = "db"): Promise<{ name: string; url: string }> {
  const name = `${prefix}_${process.pid}_${++counter}_${Date.now() % 100000}`;
  await sql(clusterUrl, `create database ${name}`);
  return { name, url: dbUrl(clusterUrl, name) };
}

export async function loadRichDatabase(clusterUrl: string): Promise<{ name: string; url: string }> {
  await sql(
    clusterUrl,
    `do $$ begin
       if not exists (select from pg_roles where rolname = 'shop_owner') then create role shop_owner login; end if;
       if not exists (select from pg_roles where rolname = 'shop_reader') then create role shop_reader; end if;
     end $$`,
  );
  const db = await createDatabase(clusterUrl, "rich");
  const text = await readFile(path.resolve(import.meta.dirname, "../fixtures/rich-db.sql"), "utf8");
  await sql(db.url, text);
  return db;
}

/** `pg_dump --schema-only` text, minus lines that legitimately differ between dumps. */
export async function schemaDump(binDir: string, url: string): Promise<string> {
  const u = new URL(url);
  const { stdout } = await run(`${binDir}/pg_dump`, ["--schema-only", "--no-password"], {
    env: {
      ...process.env,
      PGHOST: u.hostname,
      PGPORT: u.port,
      PGUSER: decodeURIComponent(u.username),
      PGPASSWORD: decodeURIComponent(u.password),
      PGDATABASE: u.pathname.slice(1),
    },
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout
    .split("\n")
    .filter((l) => !/^\\(un)?restrict /.test(l))
    .join("\n");
}

/** A checksum of every user table's rows in a stable order, plus sequences and large objects. */
export async function contentDigest(url: string | pg.ClientConfig): Promise<Record<string, string>> {
  const tables = await sql<{ s: string; t: string }>(
    url,
    `select n.nspname as s, c.relname as t from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('r', 'm') and n.nspname not in ('pg_catalog', 'information_schema')
        and n.nspname not like 'pg_toast%' order by 1, 2`,
  );
  const out: Record<string, string> = {};
  for (const { s, t } of tables) {
    const ident = `${pg.escapeIdentifier(s)}.${pg.escapeIdentifier(t)}`;
    const [row] = await sql<{ n: string; h: string }>(
      url,
      `select count(*)::text as n, coalesce(md5(string_agg(x::text, E'\\n' order by x::text)), '') as h from ${ident} x`,
    );
    out[`${s}.${t}`] = `${row?.n}:${row?.h}`;
  }
  const seqs = await sql<{ s: string; v: string }>(
    url,
    "select schemaname || '.' || sequencename as s, coalesce(last_value::text, 'null') as v from pg_sequences order by 1",
  );
  for (const { s, v } of seqs) out[`sequence ${s}`] = v;
  const los = await sql<{ o: string; h: string }>(
    url,
    "select oid::text as o, md5(lo_get(oid)) as h from pg_largeobject_metadata order by oid",
  );
  out["large objects"] = los.map((l) => `${l.o}:${l.h}`).join(",");
  return out;
}
