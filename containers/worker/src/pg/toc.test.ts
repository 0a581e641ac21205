import { describe, expect, it } from "vitest";
import type { TocEntry } from "../stages/archive-stats.ts";
import { copyColumns, dataEntriesOf, partitionsOf, schemaEntries, withDependencies, withoutExtensions } from "./toc.ts";

const entry = (dumpId: number, desc: string, namespace: string, tag: string, deps: number[] = [], copyStmt = "") =>
  ({ dumpId, desc, namespace, tag, owner: "o", defn: "", copyStmt, deps, structure: true }) satisfies TocEntry;

describe("copyColumns", () => {
  const copy = (copyStmt: string) => copyColumns(entry(9, "TABLE DATA", "s", "t", [], copyStmt));

  it("reads the column list as identifiers, whatever a quoted name holds", () => {
    expect(copy('COPY s.t (id, "a, b", """;) FROM stdin; --", "✓ ) x") FROM stdin;\n')).toEqual([
      "id",
      "a, b",
      '";) FROM stdin; --',
      "✓ ) x",
    ]);
    expect(copy('COPY "we""ird"."sch;ema" (x) FROM stdin;\n')).toEqual(["x"]);
  });

  it("reads no columns where pg_dump writes none (a table without columns)", () => {
    expect(copy("COPY public.empty  FROM stdin;\n")).toEqual([]);
  });

  it.each([
    ["INSERT INTO s.t VALUES (1);"],
    ["COPY t (a) FROM stdin;"],
    ["COPY s.t (a, ) FROM stdin;"],
    ["COPY s.t (a; DROP TABLE x) FROM stdin;"],
    ['COPY s.t ("open) FROM stdin;'],
    ["COPY s.t (a) FROM stdin; DROP TABLE x;"],
    ["COPY s.t (a) TO stdout;"],
  ])("refuses what is not pg_dump's COPY of a table: %s", (text) => {
    expect(() => copy(text)).toThrow(/the archive's COPY statement for entry 9/);
  });
});

describe("withDependencies", () => {
  it("takes the roots and everything they depend on, transitively, once each, in TOC order", () => {
    const toc = [
      entry(1, "SCHEMA", "", "s"),
      entry(2, "TYPE", "s", "mood", [1]),
      entry(3, "TABLE", "s", "parent", [1]),
      entry(4, "TABLE", "s", "child", [2, 3, 1, 2]),
      entry(5, "SEQUENCE", "s", "seq", [3]),
      entry(6, "DEFAULT", "s", "child id", [5, 4]),
      entry(7, "TABLE", "s", "other", [1]),
      entry(8, "TABLE DATA", "s", "child", [4]),
    ];
    const roots = [toc[5], toc[3]] as TocEntry[];
    expect(withDependencies(toc, roots).map((e) => e.dumpId)).toEqual([1, 2, 3, 4, 5, 6]);
  });
});

describe("partitionsOf", () => {
  const toc = [
    entry(1, "TABLE", "s", "ev"),
    entry(2, "TABLE", "s", "ev1", [1]),
    entry(3, "TABLE", "s", "ev2", [1]),
    entry(4, "TABLE", "t", "ev2a", [3]),
    entry(5, "TABLE", "s", "other"),
    entry(6, "TABLE ATTACH", "s", "ev1", [2, 1]),
    entry(7, "TABLE ATTACH", "s", "ev2", [1, 3]),
    entry(8, "TABLE ATTACH", "t", "ev2a", [4, 3]),
    entry(9, "TABLE DATA", "s", "ev1", [2]),
    entry(10, "TABLE DATA", "t", "ev2a", [4]),
  ];

  it("finds partitions at any depth from the TABLE ATTACH entries' dependencies, not their SQL", () => {
    expect(partitionsOf(toc, toc[0] as TocEntry).map((e) => e.dumpId)).toEqual([2, 3, 4]);
    expect(partitionsOf(toc, toc[2] as TocEntry).map((e) => e.dumpId)).toEqual([4]);
    expect(partitionsOf(toc, toc[4] as TocEntry)).toEqual([]);
    expect(dataEntriesOf(toc, toc[3] as TocEntry).map((e) => e.dumpId)).toEqual([10]);
  });

  it("refuses a TABLE ATTACH it cannot read as one partition and one parent, rather than miss rows", () => {
    const odd = [...toc, entry(11, "TABLE ATTACH", "s", "nothing", [1])];
    expect(() => partitionsOf(odd, toc[0] as TocEntry)).toThrow(/does not name one partition and one parent/);
  });
});

describe("schemaEntries", () => {
  it("takes a schema, what is in it and what is on it, and names the schemas there are for one that is not", () => {
    const toc = [
      entry(1, "SCHEMA", "", "a"),
      entry(2, "SCHEMA", "", 'b "x"'),
      entry(3, "TABLE", "a", "t"),
      entry(4, "COMMENT", "", "SCHEMA a"),
      entry(5, "ACL", "", 'SCHEMA "b ""x"""'),
      entry(6, "TABLE", 'b "x"', "u"),
    ];
    expect(schemaEntries(toc, "a").map((e) => e.dumpId)).toEqual([1, 3, 4]);
    expect(schemaEntries(toc, 'b "x"').map((e) => e.dumpId)).toEqual([2, 5, 6]);
    expect(() => schemaEntries(toc, "c")).toThrow('schema "c" is not in this backup');
  });
});

describe("withoutExtensions", () => {
  // As pg_dump records them: a use of an extension's member (a type, a function) is a
  // dependency on the EXTENSION entry; its configuration table's rows depend on a table
  // entry (90) that is not in the archive.
  const toc = [
    entry(1, "EXTENSION", "", "rds_only"),
    entry(2, "COMMENT", "", "EXTENSION rds_only", [1]),
    entry(3, "EXTENSION", "", "kept"),
    entry(4, "TABLE", "public", "imports", [1]),
    entry(5, "VIEW", "public", "import_calls", [4, 1]),
    entry(6, "VIEW", "public", "of_view", [5]),
    entry(7, "TABLE", "public", "orders"),
    entry(8, "INDEX", "public", "orders_expr", [7, 1]),
    entry(9, "TABLE DATA", "public", "imports", [4]),
    entry(10, "TABLE DATA", "public", "orders", [7]),
    entry(11, "TABLE DATA", "public", "s3_settings", [90]),
    entry(12, "TABLE DATA", "public", "kept_settings", [91]),
    entry(13, "TABLE", "public", "s3_settings"),
  ];
  const config = new Map([
    ["rds_only", [{ schema: "public", name: "s3_settings" }]],
    ["kept", [{ schema: "public", name: "kept_settings" }]],
  ]);

  it("leaves out the extension, its dependents at any depth, and its configuration rows; keeps the rest", () => {
    const x = withoutExtensions(toc, ["rds_only"], config);
    expect(x.extensions).toEqual(["rds_only"]);
    expect(x.entries.map((e) => e.dumpId)).toEqual([1, 2, 4, 5, 6, 8, 9, 11]);
    // The user's own table of the same name as a config table is not the extension's rows.
    expect(x.kept.map((e) => e.dumpId)).toEqual([3, 7, 10, 12, 13]);
  });

  it("settles dependencies listed out of TOC order", () => {
    const shuffled = [toc[5], toc[4], toc[3], toc[0]] as TocEntry[];
    expect(withoutExtensions(shuffled, ["rds_only"], config).entries.map((e) => e.dumpId)).toEqual([6, 5, 4, 1]);
  });

  it("leaves everything when the backup has none of the names", () => {
    const x = withoutExtensions(toc, ["aws_s3"], config);
    expect(x).toEqual({ extensions: [], entries: [], kept: toc });
  });
});
