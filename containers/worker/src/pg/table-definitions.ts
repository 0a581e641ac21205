import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import type pg from "pg";
import { RestoreFailedError } from "#core/errors.ts";
import type { TocEntry } from "../stages/archive-stats.ts";
import { connect, libpqEnv, type PgConn } from "./conn.ts";
import { runOne } from "./run-one.ts";
import type { TableName } from "./table-name.ts";
import { describeExit, spawnTool } from "./tool-process.ts";

/**
 * Table definitions as the server parsed them, never as text edited by us.
 *
 * pg_dump's CREATE TABLE names the table, schema-qualified, and can carry anything a
 * name, a default or a check holds. So it is run only as pg_dump wrote it: pg_restore
 * creates the tables' entries (and every entry they depend on: schemas, types, domains,
 * collations, functions, sequences, an inheritance parent) in a scratch database on the
 * target's own server, which has the target's extensions and collations and nobody else
 * uses. Each table's columns, types, collations, defaults, generated expressions and
 * checks are then read back from that database's catalogs, the expressions as the
 * server writes them (pg_get_expr, pg_get_constraintdef, format_type, all with an empty
 * search_path so every name is qualified), and the scratch database is dropped at once.
 * It never holds a row.
 *
 * Why not the server's own `CREATE TABLE … (LIKE …)`: LIKE reaches only tables in the
 * same database, and pg_dump's SQL cannot be pointed at another schema of the target
 * without editing it. Why not a SQL parser in the worker: the server is the parser whose
 * reading counts, and it also resolves the types and collations.
 */
export interface ColumnDefinition {
  name: string;
  /** The name as SQL writes it (quote_ident: quoted only when it must be), for printed SQL. */
  shown: string;
  /** The type as format_type() writes it: schema-qualified outside pg_catalog, with its modifiers. */
  type: string;
  /** A collation other than the type's own. */
  collation: { schema: string; name: string } | undefined;
  notNull: boolean;
  /** A generated column's expression (pg_get_expr), and whether it is stored. */
  generated: { expression: string; stored: boolean } | undefined;
  /** The default's expression (pg_get_expr), for a column that is not generated. */
  default: string | undefined;
  /** The default draws on a sequence (a serial column's nextval). */
  defaultUsesSequence: boolean;
}

export interface CheckDefinition {
  name: string;
  /** pg_get_constraintdef(): `CHECK (…)`, with NO INHERIT and NOT VALID where they apply. */
  definition: string;
  validated: boolean;
}

export interface TableDefinition {
  table: TableName;
  partitioned: boolean;
  unlogged: boolean;
  /** In column order, dropped columns left out. */
  columns: ColumnDefinition[];
  checks: CheckDefinition[];
  /** The primary key's columns as SQL writes them (quote_ident), or undefined. */
  primaryKey: string[] | undefined;
}

export interface ReadDefinitionsOptions {
  /** A session on the target, outside any transaction (CREATE DATABASE cannot run in one). */
  client: pg.Client;
  /** How to reach the target's server; the scratch database is made there. */
  target: PgConn;
  /** The pg_restore to run (one that reads the archive and speaks to the server). */
  pgRestore: string;
  /** The archive's header and TOC: all pg_restore reads of it, since no entry chosen has data. */
  head: Buffer;
  /** The entries to create, with everything they depend on, in TOC order. */
  entries: TocEntry[];
  tables: TableName[];
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
}

/** Restores `entries` into a scratch database, reads each table's definition back, and drops it. */
export async function readDefinitions(options: ReadDefinitionsOptions): Promise<TableDefinition[]> {
  const { client } = options;
  const scratch = `strongroom_recover_${randomBytes(6).toString("hex")}`;
  // The target database's encoding and locale, so that names and literals mean the same.
  const create = await runOne<{ sql: string }>(
    client,
    `select pg_catalog.format('CREATE DATABASE %I TEMPLATE template0 ENCODING %L LC_COLLATE %L LC_CTYPE %L',
            $1::text, pg_catalog.pg_encoding_to_char(encoding), datcollate, datctype) as sql
       from pg_catalog.pg_database where datname = pg_catalog.current_database()`,
    [scratch],
  );
  await runOne(client, (create.rows[0] as { sql: string }).sql);
  let failed = false;
  try {
    await restoreEntries(options, scratch);
    const session = await connect({ ...options.target, database: scratch }, "strongroom-recover");
    try {
      // Every name in what the server writes back is then schema-qualified (pg_catalog's aside).
      await runOne(session, "select pg_catalog.set_config('search_path', '', false)");
      const out: TableDefinition[] = [];
      for (const table of options.tables) out.push(await readDefinition(session, table));
      return out;
    } finally {
      await session.end().catch(() => undefined);
    }
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    // FORCE: a pg_restore stopped part-way may still hold a session there.
    await runOne(client, `DROP DATABASE IF EXISTS ${client.escapeIdentifier(scratch)} WITH (FORCE)`).catch(
      (err: unknown) => {
        // The first failure is the one to report; this one only leaves an empty database.
        if (failed) return;
        throw new RestoreFailedError(`could not drop the scratch database ${scratch}: ${(err as Error).message}`, {
          cause: err,
          hint: `it holds table definitions only, no rows: drop it (DROP DATABASE ${scratch})`,
        });
      },
    );
  }
}

/**
 * pg_restore of the chosen entries, in one transaction, the archive's head on stdin.
 * The list goes in a private temp file (dump ids only, no names), removed at once:
 * pg_restore opens --use-list by name, and Node's extra stdio "pipes" are sockets, which
 * /dev/fd cannot open.
 */
async function restoreEntries(options: ReadDefinitionsOptions, scratch: string): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), "strongroom-list-"));
  try {
    const list = path.join(dir, "list");
    await writeFile(list, `${options.entries.map((e) => `${e.dumpId};`).join("\n")}\n`, { mode: 0o600 });
    const proc = spawnTool(
      options.pgRestore,
      [
        `--dbname=${scratch}`,
        "--no-password",
        "--exit-on-error",
        "--single-transaction",
        // Only the structure matters: no roles, grants, comments, labels or tablespaces to need.
        "--no-owner",
        "--no-privileges",
        "--no-comments",
        "--no-security-labels",
        "--no-tablespaces",
        `--use-list=${list}`,
      ],
      libpqEnv({ ...options.target, database: scratch }, "strongroom-recover", options.env),
      { stdin: "pipe", stdout: "ignore", ...(options.signal ? { signal: options.signal } : {}) },
    );
    // A pg_restore that stops early closes its input; its exit status says why, not EPIPE.
    proc.child.stdin?.on("error", () => undefined);
    proc.child.stdin?.end(options.head);
    const exit = await proc.exited;
    if (exit.code !== 0) {
      throw new RestoreFailedError(
        `pg_restore ${describeExit(exit)} creating the tables' definitions in a scratch database: ${proc.stderr()}`,
        {
          hint: "the target must have what the tables need (extensions it can create, roles aside); the scratch database was dropped",
        },
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function readDefinition(session: pg.Client, table: TableName): Promise<TableDefinition> {
  const rel = await runOne<{ oid: number; relkind: string; relpersistence: string }>(
    session,
    `select c.oid, c.relkind, c.relpersistence from pg_catalog.pg_class c
       join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where n.nspname = $1 and c.relname = $2`,
    [table.schema, table.name],
  );
  const r = rel.rows[0];
  if (!r) {
    throw new RestoreFailedError(`pg_restore did not create ${table.schema}.${table.name} in the scratch database`, {
      hint: "the backup's table of contents does not define it as expected; restore the backup whole instead",
    });
  }
  const columns = await runOne<{
    name: string;
    shown: string;
    type: string;
    collation_schema: string | null;
    collation_name: string | null;
    not_null: boolean;
    generated: string;
    expression: string | null;
    on_sequence: boolean;
  }>(
    session,
    `select a.attname as name, pg_catalog.quote_ident(a.attname) as shown,
            pg_catalog.format_type(a.atttypid, a.atttypmod) as type,
            cn.nspname as collation_schema, co.collname as collation_name,
            a.attnotnull as not_null, a.attgenerated as generated,
            pg_catalog.pg_get_expr(d.adbin, d.adrelid) as expression,
            exists (select from pg_catalog.pg_depend dep
                      join pg_catalog.pg_class s on s.oid = dep.refobjid and s.relkind = 'S'
                     where dep.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass and dep.objid = d.oid
                       and dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass) as on_sequence
       from pg_catalog.pg_attribute a
       join pg_catalog.pg_type t on t.oid = a.atttypid
       left join pg_catalog.pg_collation co on co.oid = a.attcollation and a.attcollation <> t.typcollation
       left join pg_catalog.pg_namespace cn on cn.oid = co.collnamespace
       left join pg_catalog.pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
      where a.attrelid = $1 and a.attnum > 0 and not a.attisdropped
      order by a.attnum`,
    [r.oid],
  );
  const checks = await runOne<{ name: string; definition: string; validated: boolean }>(
    session,
    `select conname as name, pg_catalog.pg_get_constraintdef(oid) as definition, convalidated as validated
       from pg_catalog.pg_constraint where conrelid = $1 and contype = 'c' order by conname`,
    [r.oid],
  );
  const key = await runOne<{ shown: string }>(
    session,
    `select pg_catalog.quote_ident(a.attname) as shown
       from pg_catalog.pg_constraint c
      cross join lateral pg_catalog.unnest(c.conkey) with ordinality as k(attnum, i)
       join pg_catalog.pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum
      where c.conrelid = $1 and c.contype = 'p'
      order by k.i`,
    [r.oid],
  );
  return {
    table,
    partitioned: r.relkind === "p",
    unlogged: r.relpersistence === "u",
    columns: columns.rows.map((c) => ({
      name: c.name,
      shown: c.shown,
      type: c.type,
      collation:
        c.collation_schema !== null && c.collation_name !== null
          ? { schema: c.collation_schema, name: c.collation_name }
          : undefined,
      notNull: c.not_null,
      generated:
        c.generated !== "" && c.expression !== null
          ? { expression: c.expression, stored: c.generated === "s" }
          : undefined,
      default: c.generated === "" && c.expression !== null ? c.expression : undefined,
      defaultUsesSequence: c.generated === "" && c.on_sequence,
    })),
    checks: checks.rows,
    primaryKey: key.rows.length > 0 ? key.rows.map((k) => k.shown) : undefined,
  };
}
