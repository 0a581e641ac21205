import type pg from "pg";

/**
 * Runs one statement that strongroom generated, over the extended query protocol
 * (Parse, Bind, Execute), which takes exactly one statement: a text that holds a second
 * is refused by the server ("cannot insert multiple commands into a prepared
 * statement") before any of it runs. So whatever a name, a default or a check brought
 * into the text, it can never end the statement and start another.
 *
 * The mode is asked for explicitly: node-postgres sends a query without parameters as
 * one simple Query message, which runs every statement in it, and `values: []` does not
 * change that (pg/lib/query.js prepares only for a name, a row limit, or at least one
 * value). `queryMode` is node-postgres's own option; its types do not declare it yet.
 */
export async function runOne<R extends pg.QueryResultRow = pg.QueryResultRow>(
  client: pg.Client,
  sql: string,
  values: unknown[] = [],
): Promise<pg.QueryResult<R>> {
  const query: pg.QueryConfig & { queryMode: "extended" } = { text: sql, values, queryMode: "extended" };
  return client.query<R>(query);
}
