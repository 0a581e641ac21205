import { describe, expect, it } from "vitest";
import { splitStatements } from "./sql-statements.ts";

describe("splitStatements", () => {
  it("splits on top-level semicolons and numbers each statement by its first line", () => {
    expect(splitStatements("select 1;\n\n  select 2 ;\nselect 3")).toEqual([
      { sql: "select 1", line: 1 },
      { sql: "select 2", line: 3 },
      { sql: "select 3", line: 4 },
    ]);
  });

  it("keeps semicolons inside strings, identifiers, dollar quotes and comments", () => {
    const text = [
      "select 'a;b''c;' = 'x';",
      "select E'it\\'s; fine' is not null;",
      'select 1 as "we;ird ""name""";',
      "select $$ ; $$ <> $fn$ $$ ; $fn$;",
      "-- a comment; still a comment\nselect /* block ; /* nested ; */ still */ true;",
      "select count(*) = 0 from t where note like '%✓;%'",
    ].join("\n");
    expect(splitStatements(text).map((s) => s.sql)).toEqual([
      "select 'a;b''c;' = 'x'",
      "select E'it\\'s; fine' is not null",
      'select 1 as "we;ird ""name"""',
      "select $$ ; $$ <> $fn$ $$ ; $fn$",
      "select /* block ; /* nested ; */ still */ true",
      "select count(*) = 0 from t where note like '%✓;%'",
    ]);
    expect(splitStatements(text).map((s) => s.line)).toEqual([1, 2, 3, 4, 6, 7]);
  });

  it("does not take a parameter or an identifier's dollar for a dollar quote, nor a name ending in e for E''", () => {
    expect(splitStatements("select $1; select a$b$c from t; select name'x';").map((s) => s.sql)).toEqual([
      "select $1",
      "select a$b$c from t",
      "select name'x'",
    ]);
  });

  it("returns nothing for a file of comments and empty statements", () => {
    expect(splitStatements("-- only a comment\n;;\n/* and this */ ;")).toEqual([]);
  });
});
