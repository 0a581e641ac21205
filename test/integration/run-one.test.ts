import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { runOne } from "#worker/pg/run-one.ts";
import { createDatabase } from "../helpers/pg.ts";

/** The one-statement helper every statement recover-table generates goes through. */
const pgUrl = inject("pgUrl");
let client: pg.Client;

beforeAll(async () => {
  const db = await createDatabase(pgUrl, "runone");
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
});
afterAll(async () => {
  await client.end();
});

const tables = async () =>
  (await client.query<{ t: string }>("select relname as t from pg_class where relname in ('one', 'two')")).rows.map(
    (r) => r.t,
  );

describe("runOne", () => {
  it("refuses a text that holds two statements, and runs neither of them", async () => {
    await expect(runOne(client, "create table one (); create table two ()")).rejects.toMatchObject({
      code: "42601",
      message: "cannot insert multiple commands into a prepared statement",
    });
    // The shape of the attack: a name that closes the statement and starts another.
    await expect(runOne(client, `select 1 as "x"; alter role current_user superuser; --"`)).rejects.toMatchObject({
      code: "42601",
    });
    expect(await tables()).toEqual([]);
  });

  it("runs one statement without parameters, utility statements and transaction control included", async () => {
    await runOne(client, "begin");
    await runOne(client, "create table one (a int default 7);");
    await runOne(client, "insert into one default values");
    await runOne(client, "commit");
    const { rows } = await runOne<{ a: number }>(client, "select a from one where a = $1", [7]);
    expect(rows).toEqual([{ a: 7 }]);
    await runOne(client, "drop table one");
  });

  it("is needed: node-postgres runs both statements of a query without values, even with values: []", async () => {
    await client.query({ text: "create table one (); create table two ()", values: [] });
    expect((await tables()).sort()).toEqual(["one", "two"]);
    await client.query("drop table one; drop table two");
  });
});
