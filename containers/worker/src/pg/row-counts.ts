import type pg from "pg";
import type { TableStats } from "#core/backup-stats.ts";

/**
 * Row counts that mean what pg_dump wrote: each table's own rows only (`FROM ONLY`:
 * `count(*)` on an inheritance parent includes its children's rows), and for an
 * extension's configuration table only the rows pg_dump dumps, those its extension's
 * filter selects (pg_extension_config_dump). Sessions from `connect` run with
 * row_security off, so a policy makes the count fail loudly instead of filtering it.
 */
interface CountedTable {
  schema: string;
  table: string;
  /** The extension's WHERE clause for a configuration table ('' for all rows), else null. */
  condition: string | null;
}

/** Extension configuration tables and their dump filters, keyed by "schema\0table". */
const CONFIG_TABLES = `
  select n.nspname as schema, c.relname as table, coalesce(u.cond, '') as condition
    from pg_extension e
   cross join lateral unnest(e.extconfig, e.extcondition) as u(cfg, cond)
    join pg_class c on c.oid = u.cfg
    join pg_namespace n on n.oid = c.relnamespace`;

/** The tables whose data pg_dump writes: user tables, minus extension members that are not configuration. */
export async function dumpedTables(client: pg.Client): Promise<CountedTable[]> {
  const { rows } = await client.query<CountedTable>(
    `with config as (${CONFIG_TABLES})
     select n.nspname as schema, c.relname as table, config.condition
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
       left join config on config.schema = n.nspname and config.table = c.relname
      where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema')
        and n.nspname !~ '^pg_(toast|temp)'
        and (config.table is not null or not exists (
              select from pg_depend d
               where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e'))
      order by 1, 2`,
  );
  return rows;
}

/**
 * Counts each table's rows as pg_dump dumps them. Callers name tables only: the names
 * are quoted, and the one WHERE clause a count carries, an extension's dump filter, is
 * read here from the catalog of the server being counted. It is never taken from the
 * caller, whose tables come from a decrypted stats object that a forged backup or the
 * source database's own names may shape; a condition there would be SQL run as us.
 */
export async function countRows(
  client: pg.Client,
  tables: ReadonlyArray<{ schema: string; table: string }>,
): Promise<TableStats[]> {
  const config = new Map(
    (await client.query<CountedTable>(CONFIG_TABLES)).rows.map((t) => [`${t.schema}\0${t.table}`, t.condition]),
  );
  const out: TableStats[] = [];
  for (const { schema, table } of tables) {
    const ident = `${client.escapeIdentifier(schema)}.${client.escapeIdentifier(table)}`;
    const condition = config.get(`${schema}\0${table}`) ?? "";
    const r = await client.query<{ n: string }>(`select count(*)::text as n from only ${ident} ${condition}`);
    out.push({ schema, table, rows: Number(r.rows[0]?.n ?? 0) });
  }
  return out;
}
