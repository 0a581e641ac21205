import { randomBytes } from "node:crypto";
import type pg from "pg";
import type { BackupStats } from "#core/backup-stats.ts";
import { redact, registerSecret } from "#core/log.ts";
import { connect, type PgConn } from "./conn.ts";
import { countRows, dumpedTables } from "./row-counts.ts";
import { splitStatements } from "./sql-statements.ts";

/**
 * The checks `strongroom verify` runs on the database it restored. Each returns whether
 * it held and a detail a person can act on; the detail may name tables (schema data),
 * so it goes only into the encrypted result and the local output.
 */
export interface CheckOutcome {
  ok: boolean;
  /** Not run, for a reason that says nothing against the backup (ok stays true). */
  skipped?: boolean;
  detail: string;
}

const list = (items: string[], max = 5) =>
  `${items.slice(0, max).join("; ")}${items.length > max ? `; and ${items.length - max} more` : ""}`;

/** Every table's rows equal the count at dump time; no table is missing or extra. */
export async function rowCountsCheck(client: pg.Client, stats: BackupStats): Promise<CheckOutcome> {
  const key = (t: { schema: string; table: string }) => `${t.schema}.${t.table}`;
  const restored = await dumpedTables(client);
  const have = new Set(restored.map(key));
  const expected = new Set(stats.tables.map(key));
  const missing = stats.tables.filter((t) => !have.has(key(t))).map(key);
  const extra = restored.filter((t) => !expected.has(key(t))).map(key);
  const counted = await countRows(
    client,
    stats.tables.filter((t) => have.has(key(t))),
  );
  const wrong: string[] = [];
  let rows = 0;
  for (const t of counted) {
    rows += t.rows;
    const want = stats.tables.find((s) => key(s) === key(t))?.rows;
    if (want !== t.rows) wrong.push(`${key(t)}: ${t.rows} rows, ${want} at dump time`);
  }
  const problems = [
    ...(missing.length ? [`missing: ${list(missing)}`] : []),
    ...(extra.length ? [`not in the backup: ${list(extra)}`] : []),
    ...(wrong.length ? [`counts differ: ${list(wrong)}`] : []),
  ];
  return problems.length > 0
    ? { ok: false, detail: problems.join(". ") }
    : { ok: true, detail: `${stats.tables.length} tables, ${rows} rows, as at dump time` };
}

/**
 * No constraint is NOT VALID that was valid at dump time, and foreign keys hold:
 * pg_restore validates each constraint it creates (NOT VALID ones excepted), so a
 * validated foreign key in the restored database is one the data satisfies.
 */
export async function constraintsCheck(client: pg.Client, notValidAtDump: readonly string[]): Promise<CheckOutcome> {
  const { rows } = await client.query<{ name: string }>(
    `select n.nspname || '.' || c.relname || ' ' || k.conname as name
       from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace
      where not k.convalidated and n.nspname not in ('pg_catalog', 'information_schema')
      order by 1`,
  );
  const allowed = new Set(notValidAtDump);
  const regressed = rows.map((r) => r.name).filter((name) => !allowed.has(name));
  if (regressed.length > 0) {
    return { ok: false, detail: `NOT VALID now but valid at dump time: ${list(regressed)}` };
  }
  const fks = await client.query<{ n: string }>(
    "select count(*)::text as n from pg_constraint where contype = 'f' and convalidated",
  );
  const n = Number(fks.rows[0]?.n ?? 0);
  return {
    ok: true,
    detail: `${n} foreign ${n === 1 ? "key" : "keys"} validated by the restore; ${rows.length} NOT VALID, as at dump time`,
  };
}

/**
 * `--deep`: amcheck over every B-tree index (with heapallindexed: every heap tuple has
 * its index entry) and, from PostgreSQL 14, verify_heapam over every table.
 */
export async function amcheckCheck(client: pg.Client, serverMajor: number): Promise<CheckOutcome> {
  // amcheck's own functions, by their schema: the database's code could shadow an
  // unqualified bt_index_check or verify_heapam (a function in a schema of its search_path,
  // which ALTER DATABASE … SET search_path sets) and run as this superuser, reporting clean.
  let schema: string;
  try {
    // And the catalogs by theirs: a search_path naming a schema before pg_catalog could shadow pg_class too.
    await client.query("select pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false)");
    schema = await amcheckSchema(client);
  } catch (err) {
    return {
      ok: false,
      detail: `amcheck is not available on the scratch server (${(err as Error).message}); install the server's contrib modules (postgresql-${serverMajor} on Debian)`,
    };
  }
  const fn = (name: string) => `${client.escapeIdentifier(schema)}.${name}`;
  const problems: string[] = [];
  const indexes = await client.query<{ oid: number; name: string }>(
    `select c.oid, n.nspname || '.' || c.relname as name
       from pg_index i join pg_class c on c.oid = i.indexrelid join pg_namespace n on n.oid = c.relnamespace
       join pg_am a on a.oid = c.relam
      where a.amname = 'btree' and i.indisvalid and i.indisready and c.relpersistence <> 't'
        and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_toast'`,
  );
  for (const index of indexes.rows) {
    try {
      await client.query(`select ${fn("bt_index_check")}($1::pg_catalog.regclass, true)`, [index.oid]);
    } catch (err) {
      problems.push(`${index.name}: ${redact((err as Error).message)}`);
    }
  }
  let tables = 0;
  if (serverMajor >= 14) {
    const heap = await client.query<{ name: string; n: string }>(
      `select n.nspname || '.' || c.relname as name,
              (select count(*) from ${fn("verify_heapam")}(c.oid))::text as n
         from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind in ('r', 'm') and n.nspname not in ('pg_catalog', 'information_schema')
          and n.nspname !~ '^pg_(toast|temp)'`,
    );
    tables = heap.rows.length;
    for (const t of heap.rows) if (t.n !== "0") problems.push(`${t.name}: ${t.n} corrupt tuples`);
  }
  return problems.length > 0
    ? { ok: false, detail: list(problems) }
    : { ok: true, detail: `${indexes.rows.length} B-tree indexes and ${tables} tables checked by amcheck` };
}

/**
 * The schema amcheck is installed in: where it already is, else a schema of its own that
 * this superuser creates (never the first of a search_path the database's code may set).
 */
async function amcheckSchema(client: pg.Client): Promise<string> {
  const find = async () =>
    (
      await client.query<{ nspname: string }>(
        "select n.nspname from pg_catalog.pg_extension e join pg_catalog.pg_namespace n on n.oid = e.extnamespace where e.extname = 'amcheck'",
      )
    ).rows[0]?.nspname;
  const existing = await find();
  if (existing !== undefined) return existing;
  await client.query("create schema if not exists strongroom_amcheck");
  await client.query("create extension if not exists amcheck with schema strongroom_amcheck");
  return (await find()) ?? "strongroom_amcheck";
}

/**
 * `--checks FILE`: each statement must return one row holding a single `true`, or no
 * rows. Each runs alone in a read-only transaction, so a check cannot change what the
 * next one sees; the first that fails is named by its line.
 *
 * They run as a role made for them (readOnlyRole), on a connection of their own, never
 * on `admin`'s: the scratch database's superuser could run any program from a check
 * (`COPY … TO PROGRAM`, which a read-only transaction allows) or read any file
 * (`pg_read_file`), and a checks file is one more piece of SQL nobody reviews as code.
 */
export async function userSqlCheck(
  admin: pg.Client,
  target: PgConn,
  file: string,
  text: string,
  serverMajor: number,
): Promise<CheckOutcome> {
  const statements = splitStatements(text);
  if (statements.length === 0) return { ok: false, detail: `${file} holds no SQL statement` };
  let role: { name: string; password: string };
  try {
    role = await readOnlyRole(admin, target.database, serverMajor);
  } catch (err) {
    return {
      ok: false,
      detail: `could not create a read-only role to run the checks as (${redact((err as Error).message)}); the scratch server's user needs CREATEROLE`,
    };
  }
  const failed: string[] = [];
  try {
    let client: pg.Client;
    try {
      client = await connect({ ...target, user: role.name, password: role.password }, "strongroom-verify-checks");
    } catch (err) {
      return {
        ok: false,
        detail: `could not connect as the read-only role the checks run as (${redact((err as Error).message)}); the scratch server must accept password logins from here`,
      };
    }
    try {
      for (const s of statements) {
        const where = `${file}:${s.line} (${oneLine(s.sql)})`;
        await client.query("begin read only");
        try {
          const result = await client.query({ text: s.sql, rowMode: "array" });
          const rows = result.rows as unknown[][];
          const single = rows.length === 1 && rows[0]?.length === 1 ? rows[0][0] : undefined;
          if (rows.length > 0 && single !== true) {
            const got = rows.length === 1 && rows[0]?.length === 1 ? JSON.stringify(single) : `${rows.length} rows`;
            failed.push(`${where} returned ${got}`);
          }
        } catch (err) {
          failed.push(`${where} failed: ${redact((err as Error).message)}`);
        } finally {
          await client.query("rollback");
        }
      }
    } finally {
      await client.end().catch(() => undefined);
    }
  } finally {
    await dropRole(admin, role.name);
  }
  return failed.length > 0
    ? { ok: false, detail: list(failed, 3) }
    : { ok: true, detail: `${statements.length} statements from ${file} held` };
}

/**
 * A login role, with a random name and password, that may read every table of
 * `database` and do nothing else: no superuser, no pg_execute_server_program or
 * pg_read_server_files, nothing to create. pg_read_all_data where the server has it
 * (14+), else USAGE and SELECT on every schema, table and sequence there is. BYPASSRLS
 * where `admin` may give it, so that a count is not cut short by a policy (the session
 * runs with row_security off: without it, such a query fails rather than being filtered).
 */
async function readOnlyRole(
  admin: pg.Client,
  database: string,
  serverMajor: number,
): Promise<{ name: string; password: string }> {
  const name = `strongroom_check_${randomBytes(6).toString("hex")}`;
  const password = randomBytes(24).toString("base64url");
  registerSecret(password);
  const superuser =
    (await admin.query<{ s: string }>("select current_setting('is_superuser') as s")).rows[0]?.s === "on";
  const role = admin.escapeIdentifier(name);
  await admin.query(
    `create role ${role} login nosuperuser nocreatedb nocreaterole noreplication${superuser ? " bypassrls" : ""} password ${admin.escapeLiteral(password)}`,
  );
  try {
    await admin.query(`grant connect on database ${admin.escapeIdentifier(database)} to ${role}`);
    if (serverMajor >= 14) {
      await admin.query(`grant pg_read_all_data to ${role}`);
    } else {
      const { rows } = await admin.query<{ nspname: string }>(
        "select nspname from pg_namespace where nspname not in ('pg_catalog', 'information_schema') and nspname !~ '^pg_(toast|temp)'",
      );
      for (const { nspname } of rows) {
        const schema = admin.escapeIdentifier(nspname);
        await admin.query(
          `grant usage on schema ${schema} to ${role}; grant select on all tables in schema ${schema} to ${role}; grant select on all sequences in schema ${schema} to ${role}`,
        );
      }
    }
  } catch (err) {
    await dropRole(admin, name);
    throw err;
  }
  return { name, password };
}

/** Drops a role readOnlyRole made, and the grants it was given (in this database and on it). */
async function dropRole(admin: pg.Client, name: string): Promise<void> {
  const role = admin.escapeIdentifier(name);
  await admin.query(`drop owned by ${role}`).catch(() => undefined);
  await admin.query(`drop role if exists ${role}`);
}

function oneLine(sql: string): string {
  const flat = sql.replace(/\s+/g, " ");
  return flat.length > 80 ? `${flat.slice(0, 79)}…` : flat;
}
