import { afterAll, describe, expect, inject, it } from "vitest";
import { parseStats, STATS_FORMAT } from "#core/backup-stats.ts";
import { connect, parsePgUrl } from "#worker/pg/conn.ts";
import { countRows } from "#worker/pg/row-counts.ts";
import { rowCountsCheck } from "#worker/pg/verify-checks.ts";
import { createDatabase, sql } from "../helpers/pg.ts";

/**
 * The stats object is decrypted from the store: a forged one (the recipient is public), or
 * one whose names a source database chose, must not be able to put SQL into a count. Its
 * table entries are data; the only WHERE clause a count may carry is an extension's dump
 * filter, read from the catalog of the server being counted.
 */
describe("row counts of tables a stats object names", () => {
  const pgUrl = inject("pgUrl");
  const clients: Array<Awaited<ReturnType<typeof connect>>> = [];

  /** A fresh database with a table of 10 rows, and the tables an injection would touch. */
  async function database() {
    const db = await createDatabase(pgUrl, "counts_untrusted");
    await sql(
      db.url,
      `create table t(id int); insert into t select generate_series(1, 10);
       create table victim(id int); create table ran(what text);`,
    );
    const client = await connect(parsePgUrl(db.url));
    clients.push(client);
    const untouched = async () => {
      expect(await sql(db.url, "select what from ran")).toEqual([]);
      expect(await sql(db.url, "select to_regclass('public.victim') is not null as kept")).toEqual([{ kept: true }]);
    };
    return { client, untouched };
  }

  afterAll(async () => {
    for (const c of clients) await c.end();
  });

  const injected = [
    "; drop table victim; --",
    "; insert into ran values ('statement'); --",
    "where false",
    "where (select count(*) from (insert into ran values ('cte') returning 1) x) is null",
    "where pg_sleep(1) is null union all select '999'",
  ];
  const forged = () =>
    parseStats(
      JSON.stringify({
        format: STATS_FORMAT,
        source: "archive",
        schemaFingerprint: "",
        largeObjects: 0,
        owners: [],
        tables: [
          ...injected.map((condition) => ({ schema: "public", table: "t", rows: 10, condition })),
          { schema: "public", table: "victim", rows: 0, condition: injected[0] },
          { schema: "public", table: "ran", rows: 0, condition: injected[1] },
        ],
      }),
      "stats.json.age",
    );

  it("never runs a condition carried by a stats table entry, as restore counts (every table in the stats)", async () => {
    const { client, untouched } = await database();
    const counted = await countRows(client, forged().tables);
    expect(counted.map((c) => `${c.table}=${c.rows}`)).toEqual([...injected.map(() => "t=10"), "victim=0", "ran=0"]);
    await untouched();
  });

  it("never runs a condition carried by a stats table entry, as verify's row-counts check counts", async () => {
    const { client, untouched } = await database();
    const outcome = await rowCountsCheck(client, forged());
    expect(outcome).toEqual({
      ok: true,
      detail: `${injected.length + 2} tables, ${injected.length * 10} rows, as at dump time`,
    });
    await untouched();
  });
});
