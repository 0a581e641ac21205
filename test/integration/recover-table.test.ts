import fc from "fast-check";
import pg from "pg";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { readAll } from "#core/audit/audit-log.ts";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { objectKey } from "#core/keys.ts";
import { getBytes } from "#core/store/object-store.ts";
import { parseTableName } from "#worker/pg/table-name.ts";
import { runCli } from "../helpers/cli.ts";
import { identityFile, newStore, type StoreUnderTest } from "../helpers/fixture.ts";
import { createDatabase, dbUrl, loadRichDatabase, sql } from "../helpers/pg.ts";

/**
 * recover-table against a real PostgreSQL: one backup of the rich fixture (schemas,
 * partitions, Unicode names, a generated column), then rows deleted, and tables brought
 * back beside the originals from the encrypted dump.
 */
const pgUrl = inject("pgUrl");
let db: { name: string; url: string };
let store: StoreUnderTest;
let key: Awaited<ReturnType<typeof identityFile>>;
let backupId: string;

const recover = (tables: string[], extra: string[] = []) =>
  runCli(["recover-table", "--identity", key.file, ...tables.flatMap((t) => ["--table", t]), ...extra], {
    STRONGROOM_STORE: store.url,
    STRONGROOM_TARGET_URL: db.url,
  });
const count = async (table: string) =>
  Number((await sql<{ n: string }>(db.url, `select count(*)::text as n from ${table}`))[0]?.n);
const exists = async (schema: string, name: string) =>
  (
    await sql(
      db.url,
      "select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and c.relname = $2",
      [schema, name],
    )
  ).length > 0;

beforeAll(async () => {
  db = await loadRichDatabase(pgUrl);
  await sql(db.url, "create table public.gen (a int primary key, b int generated always as (a * 2) stored)");
  await sql(db.url, "insert into public.gen select g from generate_series(1, 10) g");
  store = await newStore("file");
  key = await identityFile();
  const r = await runCli(["backup", "--recipient", key.recipient, "--database-id", "rich"], {
    DATABASE_URL: db.url,
    STRONGROOM_STORE: store.url,
  });
  expect(r.code, r.stderr).toBe(0);
  backupId = r.stdout.trim();
}, 120_000);

describe("strongroom recover-table", () => {
  it("brings back a table whose rows were deleted as <t>_recovered, leaves the original alone, and prints SQL that puts the rows back", async () => {
    await sql(db.url, "delete from sales.orders where id % 2 = 0");
    const before = await count("sales.orders");
    const r = await recover(["sales.orders"], ["--json"]);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result).toMatchObject({ databaseId: "rich", backupId });
    expect(result.tables).toEqual([
      expect.objectContaining({ table: "sales.orders", recovered: "sales.orders_recovered", rows: 5000, blocks: 1 }),
    ]);
    expect(await count("sales.orders")).toBe(before);
    expect(await count("sales.orders_recovered")).toBe(5000);
    // The recovered table is bare: no foreign keys or triggers reaching the live tables.
    const fks = await sql(
      db.url,
      "select 1 from pg_constraint where conrelid = 'sales.orders_recovered'::regclass and contype = 'f'",
    );
    expect(fks).toHaveLength(0);

    // The printed template, run as it is, puts back exactly the missing rows.
    const [insertMissing] = result.tables[0].copyBack as string[];
    expect(insertMissing).toContain('WHERE NOT EXISTS (SELECT 1 FROM "sales"."orders" o WHERE o.id = r.id)');
    await sql(db.url, insertMissing as string);
    expect(await count("sales.orders")).toBe(5000);

    const rows = await readAll(new StoreAuditLog(store.store, "db#rich"));
    const last = rows.slice(-2);
    expect(last.map((row) => row.event)).toEqual(["restore.start", "restore.ok"]);
    expect(last[1]?.details).toMatchObject({ kind: "table", tables: 1, rows: 5000 });
    expect(JSON.stringify(last)).not.toContain("orders");
  }, 60_000);

  it("brings back a partitioned table as one table holding every partition's rows, and recomputes a generated column", async () => {
    const r = await recover(["sales.events", "gen"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("recovered sales.events as sales.events_recovered: 4000 rows");
    expect(await count("sales.events_recovered")).toBe(await count("sales.events"));
    const kind = await sql<{ relkind: string }>(
      db.url,
      "select relkind from pg_class where oid = 'sales.events_recovered'::regclass",
    );
    expect(kind[0]?.relkind).toBe("r");
    const sums = await sql<{ b: string }>(db.url, "select sum(b)::text as b from public.gen_recovered");
    expect(sums[0]?.b).toBe("110");
    const generated = await sql<{ g: string }>(
      db.url,
      "select attgenerated as g from pg_attribute where attrelid = 'public.gen_recovered'::regclass and attname = 'b'",
    );
    expect(generated[0]?.g).toBe("s");
  }, 60_000);

  it("takes a quoted name with spaces and Unicode, and keeps its case", async () => {
    const r = await recover(['"Ünïcode schema"."Mixed Case ✓"'], ["--suffix", " (copy)"]);
    expect(r.code, r.stderr).toBe(0);
    expect(await exists("Ünïcode schema", "Mixed Case ✓ (copy)")).toBe(true);
    expect(await count('"Ünïcode schema"."Mixed Case ✓ (copy)"')).toBe(300);
  }, 60_000);

  it("names close matches for a table the backup does not have, and creates nothing", async () => {
    const r = await recover(["sales.order"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("strongroom: error: table sales.order is not in this backup [TableNotFoundError]");
    expect(r.stderr).toContain("HINT: close matches in the backup: sales.orders");
    expect(await exists("sales", "order_recovered")).toBe(false);
  }, 60_000);

  it("refuses a partitioned table and its own partition in one run (one COPY could fill only one), creating nothing", async () => {
    const r = await recover(["sales.events", "sales.events_2025"], ["--suffix", "_both"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("sales.events and sales.events_2025 share rows (one is a partition of the other)");
    expect(await exists("sales", "events_both")).toBe(false);
    expect(await exists("sales", "events_2025_both")).toBe(false);
  }, 60_000);

  it("refuses a <t>_recovered that already exists, and a schema the target lacks, touching nothing", async () => {
    await sql(
      db.url,
      "create table sales.customers_recovered (note text); insert into sales.customers_recovered values ('mine')",
    );
    const taken = await recover(["sales.customers"]);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toContain("sales.customers_recovered already exists on the target [AlreadyExistsError]");
    expect(await sql(db.url, "select note from sales.customers_recovered")).toEqual([{ note: "mine" }]);

    await sql(db.url, 'alter schema "Ünïcode schema" rename to elsewhere');
    try {
      const gone = await recover(['"Ünïcode schema"."Mixed Case ✓"']);
      expect(gone.code).toBe(1);
      expect(gone.stderr).toContain('schema "Ünïcode schema" does not exist on the target [NotFoundError]');
    } finally {
      await sql(db.url, 'alter schema elsewhere rename to "Ünïcode schema"');
    }
  }, 60_000);

  it("says what permission is missing when the target role may not create tables in the schema", async () => {
    const role = `noc_${process.pid}`;
    await sql(db.url, `create role ${role} login password 'pw-${role}'`);
    await sql(db.url, `grant usage on schema sales to ${role}; grant connect on database ${db.name} to ${role}`);
    const u = new URL(db.url);
    u.username = role;
    u.password = `pw-${role}`;
    const r = await runCli(
      ["recover-table", "--identity", key.file, "--table", "sales.orders", "--suffix", "_denied"],
      {
        STRONGROOM_STORE: store.url,
        STRONGROOM_TARGET_URL: u.toString(),
      },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      "permission denied on the target: permission denied for schema sales [AccessDeniedError]",
    );
    expect(r.stderr).toContain("HINT: the target role needs CREATE on the table's schema");
    expect(r.stderr).not.toContain(`pw-${role}`);
  }, 60_000);

  it("rolls everything back when the dump turns out damaged mid-stream: no recovered table is left", async () => {
    const damaged = await newStore("file");
    for (const role of ["manifest", "stats", "roles", "dump"] as const) {
      const k = objectKey("rich", backupId, role);
      const bytes = await getBytes(store.store, k);
      if (role === "dump") bytes[bytes.length - 100] = ((bytes[bytes.length - 100] as number) ^ 1) & 0xff;
      await damaged.store.putIfAbsent(k, bytes);
    }
    const r = await runCli(
      [
        "recover-table",
        "--identity",
        key.file,
        "--table",
        "sales.customers",
        "--suffix",
        "_damaged",
        "--audit",
        "none",
        // A copy without its audit log: disaster recovery, where the stream's own checks stand alone.
        "--trust-store",
      ],
      {
        STRONGROOM_STORE: damaged.url,
        STRONGROOM_TARGET_URL: db.url,
      },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/dump\.pgc\.zst\.age: age payload chunk \d+ failed authentication/);
    // It was created and loaded in the transaction that rolled back: it is not there.
    expect(await exists("sales", "customers_damaged")).toBe(false);
  }, 60_000);
});

describe("strongroom export-schema", () => {
  it("restores one schema (a tenant) with its data into a database that lacks it, and counts every table", async () => {
    const target = `tenant_${process.pid}`;
    const r = await runCli(["export-schema", "--identity", key.file, "--schema", "sales", "--create", "--json"], {
      STRONGROOM_STORE: store.url,
      STRONGROOM_TARGET_URL: dbUrl(pgUrl, target),
    });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ schema: "sales", backupId });
    const there = await sql<{ nspname: string }>(
      dbUrl(pgUrl, target),
      "select nspname from pg_namespace where nspname !~ '^(pg_|information_schema)' order by 1",
    );
    // The tenant's schema and nothing of the others (public is every database's own).
    expect(there.map((n) => n.nspname)).toEqual(["public", "sales"]);
    expect(await sql(dbUrl(pgUrl, target), "select count(*)::int as n from sales.customers")).toEqual(
      await sql(db.url, "select count(*)::int as n from sales.customers"),
    );

    const again = await runCli(["export-schema", "--identity", key.file, "--schema", "sales"], {
      STRONGROOM_STORE: store.url,
      STRONGROOM_TARGET_URL: dbUrl(pgUrl, target),
    });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('schema "sales" already exists in');
    expect(again.stderr).toContain("[TargetNotEmptyError]");
  }, 60_000);

  it("proves the whole stored dump before a selective restore that stops reading early: a damaged one restores nothing", async () => {
    const damaged = await newStore("file");
    for (const role of ["manifest", "stats", "roles", "dump"] as const) {
      const k = objectKey("rich", backupId, role);
      const bytes = await getBytes(store.store, k);
      // Far past the sales schema's data: a consumer that stops early would never see it.
      if (role === "dump") bytes[bytes.length - 50] = ((bytes[bytes.length - 50] as number) ^ 1) & 0xff;
      await damaged.store.putIfAbsent(k, bytes);
    }
    const target = `tenant_damaged_${process.pid}`;
    const r = await runCli(
      ["export-schema", "--identity", key.file, "--schema", "sales", "--create", "--audit", "none", "--trust-store"],
      {
        STRONGROOM_STORE: damaged.url,
        STRONGROOM_TARGET_URL: dbUrl(pgUrl, target),
      },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/dump\.pgc\.zst\.age does not match its manifest .*\[IntegrityError\]/);
    const there = await sql(dbUrl(pgUrl, target), "select 1 from pg_namespace where nspname = 'sales'");
    expect(there).toHaveLength(0);
  }, 60_000);

  it("--out writes the schema as a backup of its own, encrypted to another key, that restore reads back", async () => {
    const out = await newStore("file");
    const receiver = await identityFile();
    const r = await runCli(
      [
        "export-schema",
        "--identity",
        key.file,
        "--schema",
        "sales",
        "--out",
        out.url,
        "--recipient",
        receiver.recipient,
        "--json",
      ],
      { STRONGROOM_STORE: store.url },
    );
    expect(r.code, r.stderr).toBe(0);
    const exported = JSON.parse(r.stdout);
    expect(exported).toMatchObject({ schema: "sales", from: { databaseId: "rich", backupId } });
    expect(exported.manifest.databaseId).toBe("rich.sales");
    expect(exported.manifest.recipients).toEqual([receiver.recipient]);

    // The receiver restores it with their own key, as any backup; the original key cannot.
    const target = `handover_${process.pid}`;
    const restored = await runCli(["restore", "--identity", receiver.file, "--create", "--json"], {
      STRONGROOM_STORE: out.url,
      STRONGROOM_TARGET_URL: dbUrl(pgUrl, target),
    });
    expect(restored.code, restored.stderr).toBe(0);
    expect(await sql(dbUrl(pgUrl, target), "select count(*)::int as n from sales.orders")).toEqual(
      await sql(db.url, "select count(*)::int as n from sales.orders"),
    );
    const wrongKey = await runCli(["restore", "--identity", key.file, "--create"], {
      STRONGROOM_STORE: out.url,
      STRONGROOM_TARGET_URL: dbUrl(pgUrl, `${target}_x`),
    });
    expect(wrongKey.code).toBe(1);
  }, 120_000);

  it("takes exactly one of --target and --out, and --out only with a recipient", async () => {
    const none = await runCli(["export-schema", "--identity", key.file, "--schema", "sales"], {
      STRONGROOM_STORE: store.url,
      STRONGROOM_TARGET_URL: "",
    });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain(
      "export-schema takes one of --target (restore it there) or --out (write a backup of it)",
    );
    const bare = await runCli(["export-schema", "--identity", key.file, "--schema", "sales", "--out", store.url], {
      STRONGROOM_STORE: store.url,
      STRONGROOM_RECIPIENTS: "",
    });
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain("--out needs --recipient");
  });

  it("names the schemas the backup has when asked for one it lacks", async () => {
    const target = `tenant_none_${process.pid}`;
    const r = await runCli(["export-schema", "--identity", key.file, "--schema", '"Sales"', "--create"], {
      STRONGROOM_STORE: store.url,
      STRONGROOM_TARGET_URL: dbUrl(pgUrl, target),
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('schema "Sales" is not in this backup [NotFoundError]');
    expect(r.stderr).toMatch(/HINT: schemas in the backup: .*sales/);
  }, 60_000);
});

describe("table names as SQL writes them", () => {
  it.each([
    ["shop.orders", { schema: "shop", name: "orders" }],
    ["Orders", { schema: "public", name: "orders" }],
    ['"Sales Ops"."Orders ✓"', { schema: "Sales Ops", name: "Orders ✓" }],
    ['public."a.b ""c"""', { schema: "public", name: 'a.b "c"' }],
  ])("reads %s", (text, expected) => {
    expect(parseTableName(text)).toEqual(expected);
  });

  it.each([
    ["a.b.c", "use at most schema.name"],
    ['"open', "a quoted part is not closed"],
    ["shop.", "it ends early"],
    ['""', "a quoted part is empty"],
    ["shop orders", 'unexpected " " at position 5'],
  ])("refuses %s: %s", (text, why) => {
    expect(() => parseTableName(text)).toThrow(why);
  });
});

/**
 * Names and text that SQL parses: the definitions recover-table creates must come from
 * the server's reading of pg_dump's SQL, never from editing it, and each statement must
 * run alone. Tables are created and backed up once; a superuser (the rig's postgres)
 * recovers them.
 */
describe("strongroom recover-table with names and text that SQL would parse", () => {
  const id = pg.escapeIdentifier;
  const lit = pg.escapeLiteral;
  /** The column name and default of the reproduction (the role it names is `app`). */
  const HOSTILE_COLUMN = `"; ');COMMIT;ALTER ROLE app SUPERUSER;SELECT (1 --"`;
  const HOSTILE_DEFAULT = "') PARTITION BY '";
  /** What a name or a literal may hold that a statement splitter or a regex would misread. */
  const FRAGMENTS = [
    "'",
    '"',
    ";",
    "$$",
    "$q$",
    "\n",
    "--",
    "/*",
    "*/",
    "\\",
    "✓ Ünï Ω",
    ") PARTITION BY (x);",
    ") INHERITS (y);",
    "COMMIT; ALTER ROLE app SUPERUSER;",
    "E'x'",
    "(",
  ];
  const SCHEMA = `s"; '$$ --/* ✓\n`;
  let hostile: { name: string; url: string };
  let hostileStore: StoreUnderTest;

  const recoverHostile = (tables: string[], extra: string[] = [], url = hostile.url) =>
    runCli(["recover-table", "--identity", key.file, ...tables.flatMap((t) => ["--table", t]), ...extra], {
      STRONGROOM_STORE: hostileStore.url,
      STRONGROOM_TARGET_URL: url,
    });
  const isSuperuser = async (role: string) =>
    (await sql<{ s: boolean }>(hostile.url, "select rolsuper as s from pg_roles where rolname = $1", [role]))[0]?.s;
  const scratchLeft = async () =>
    sql(pgUrl, "select datname from pg_database where datname like 'strongroom\\_recover\\_%'");
  /**
   * No scratch database stays behind. Other test files run recover-table on this same server
   * at the same time, so one of theirs may exist for a moment: a leak is one that never goes.
   */
  const noScratchLeft = () => expect.poll(scratchLeft, { timeout: 30_000, interval: 250 }).toEqual([]);
  /** A table's columns and checks, as the server reads them back. */
  const shape = async (schema: string, name: string) => {
    const rel = `${id(schema)}.${id(name)}`;
    const columns = await sql(
      hostile.url,
      `select a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) as type, a.attnotnull, a.attgenerated,
              a.attcollation::regcollation::text as collation, pg_catalog.pg_get_expr(d.adbin, d.adrelid) as def
         from pg_attribute a left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where a.attrelid = $1::regclass and a.attnum > 0 and not a.attisdropped order by a.attnum`,
      [rel],
    );
    const checks = await sql(
      hostile.url,
      `select conname, pg_catalog.pg_get_constraintdef(oid) as def, convalidated
         from pg_constraint where conrelid = $1::regclass and contype = 'c' order by conname`,
      [rel],
    );
    const kind = await sql<{ relkind: string; parents: number }>(
      hostile.url,
      "select relkind, (select count(*)::int from pg_inherits where inhrelid = $1::regclass) as parents from pg_class where oid = $1::regclass",
      [rel],
    );
    return { columns, checks, ...kind[0] };
  };
  /** Every row, as text, in a stable order (`only`: the table's own rows, not its children's). */
  const rowsOf = async (schema: string, name: string, only = false) =>
    (
      await sql<{ r: string }>(
        hostile.url,
        `select t::text as r from ${only ? "only " : ""}${id(schema)}.${id(name)} t order by 1`,
      )
    ).map((r) => r.r);

  beforeAll(async () => {
    await sql(
      pgUrl,
      `do $$ begin if not exists (select from pg_roles where rolname = 'app') then create role app login; end if; end $$;
       alter role app nosuperuser`,
    );
    hostile = await createDatabase(pgUrl, "hostile");
    // The reproduction: a table owned by app, its column name and default made to close
    // the CREATE TABLE and run their own statements once PARTITION BY is cut out.
    await sql(
      hostile.url,
      `create table public.victims (id int primary key, fill text default ${lit(HOSTILE_DEFAULT)}, ${id(HOSTILE_COLUMN)} text);
       alter table public.victims owner to app;
       insert into public.victims (id, ${id(HOSTILE_COLUMN)}) values (1, 'one'), (2, ${lit(HOSTILE_COLUMN)});
       insert into public.victims values (3, ${lit(FRAGMENTS.join(""))}, null);`,
    );
    // The class: one column per fragment, its default that fragment, checks whose text
    // says PARTITION BY and INHERITS, an extension's type, a collation, a generated column.
    const columns = FRAGMENTS.map((f, i) => `${id(`c${i} ${f}`)} text default ${lit(f)}`);
    await sql(
      hostile.url,
      `create extension if not exists citext;
       create schema ${id(SCHEMA)} authorization app;
       create table ${id(SCHEMA)}.${id("every ;-- $$ */ ✓")} (
         ${columns.join(",\n")},
         ${id('serial "id";')} serial,
         ${id("ci ')")} citext not null default 'MiXed',
         ${id("coll ;")} text collate "C" default ${lit("/* ;")},
         ${id("gen $$")} text generated always as (${id("c0 '")} || ${lit("') INHERITS (x);")}) stored,
         constraint ${id("chk ) PARTITION BY x;")} check (${id("c2 ;")} <> ${lit(") PARTITION BY RANGE (y); INHERITS (z); --")}),
         constraint ${id("chk2 INHERITS (")} check (length(${id("c5 \n")}) < 1000 or ${lit(") INHERITS (p);")} is null) no inherit
       );
       insert into ${id(SCHEMA)}.${id("every ;-- $$ */ ✓")} default values;
       insert into ${id(SCHEMA)}.${id("every ;-- $$ */ ✓")} (${FRAGMENTS.map((f, i) => id(`c${i} ${f}`)).join(", ")})
         values (${FRAGMENTS.map((f) => lit(`${f}${f}`)).join(", ")});
       alter table ${id(SCHEMA)}.${id("every ;-- $$ */ ✓")}
         add constraint ${id("nv */ '")} check (${id('c1 "')} = '"') not valid;`,
    );
    // A partitioned table, a partition itself partitioned, every name hostile.
    const parted = `${id(SCHEMA)}.${id("parted ') PARTITION BY '")}`;
    await sql(
      hostile.url,
      `create table ${parted} (k int not null, j int, ${id("v ) PARTITION BY (")} text default ${lit(HOSTILE_DEFAULT)})
         partition by list (k);
       create table ${id(SCHEMA)}.${id("p1 $$;")} partition of ${parted} for values in (1);
       create table ${id(SCHEMA)}.${id("p2 */;")} partition of ${parted} for values in (2) partition by list (j);
       create table ${id(SCHEMA)}.${id("p2a ';")} partition of ${id(SCHEMA)}.${id("p2 */;")} for values in (7);
       insert into ${parted} (k, j) select 1 + g % 2, 7 from generate_series(1, 9) g;
       insert into ${parted} values (1, 0, ${lit(FRAGMENTS.join(""))});`,
    );
    // Inheritance: the child brings its parent's columns, and only its own rows.
    const parent = `${id(SCHEMA)}.${id("parent ; INHERITS (")}`;
    const child = `${id(SCHEMA)}.${id("child -- */")}`;
    await sql(
      hostile.url,
      `create table ${parent} (${id('a "')} serial, ${id("b */")} text default ${lit(") INHERITS (z);")});
       create table ${child} (
         ${id("c $$")} int check (${id("c $$")} >= 0 and ${lit(") INHERITS (x);")} <> ''),
         ${id("d\n")} text default ${lit("line\n2 '--")}
       ) inherits (${parent});
       insert into ${parent} (${id("b */")}) values ('p1'), ('p2');
       insert into ${child} (${id("c $$")}) select g from generate_series(1, 3) g;`,
    );
    hostileStore = await newStore("file");
    const r = await runCli(["backup", "--recipient", key.recipient, "--database-id", "hostile"], {
      DATABASE_URL: hostile.url,
      STRONGROOM_STORE: hostileStore.url,
    });
    expect(r.code, r.stderr).toBe(0);
  }, 120_000);

  it("a superuser recovering a table whose column name and default would end the CREATE TABLE makes no role superuser, and keeps that name, that default and the rows", async () => {
    expect(await isSuperuser("app")).toBe(false);
    const r = await recoverHostile(["public.victims"], ["--json"]);
    // Asked first: before the fix, the text ran as statements of its own, and the recovery
    // then failed on a column its mangled CREATE TABLE never made.
    expect(await isSuperuser("app")).toBe(false);
    expect(r.code, r.stderr).toBe(0);
    const recovered = await shape("public", "victims_recovered");
    expect(recovered.columns.map((c) => c.attname)).toEqual(["id", "fill", HOSTILE_COLUMN]);
    expect(recovered.columns[1]?.def).toBe(`${lit(HOSTILE_DEFAULT)}::text`);
    expect(await rowsOf("public", "victims_recovered")).toEqual(await rowsOf("public", "victims"));
    // The default works as a default, too.
    const [made] = await sql<{ fill: string }>(
      hostile.url,
      "insert into public.victims_recovered (id) values (4) returning fill",
    );
    expect(made?.fill).toBe(HOSTILE_DEFAULT);
    await noScratchLeft();
  }, 60_000);

  it("keeps every identifier, default, collation, extension type, generated column and check exactly, whatever quotes, semicolons, dollar quotes, newlines, comments or Unicode they hold", async () => {
    const table = "every ;-- $$ */ ✓";
    const r = await recoverHostile([`${id(SCHEMA)}.${id(table)}`], ["--json", "--suffix", " '; --"]);
    expect(r.code, r.stderr).toBe(0);
    expect(await isSuperuser("app")).toBe(false);
    const [result] = JSON.parse(r.stdout).tables;
    // A serial column's default draws on the original's sequence: left off, and said so.
    expect(result.skippedDefaults).toEqual(['serial "id";']);
    const original = await shape(SCHEMA, table);
    const recovered = await shape(SCHEMA, `${table} '; --`);
    expect(recovered.columns).toEqual(
      original.columns.map((c) => (c.attname === 'serial "id";' ? { ...c, def: null } : c)),
    );
    // The checks, the one never validated included (added after the rows, NOT VALID).
    expect(recovered.checks).toEqual(original.checks);
    expect(recovered.checks.find((c) => c.conname === "nv */ '")?.convalidated).toBe(false);
    expect(recovered.relkind).toBe("r");
    expect(await rowsOf(SCHEMA, `${table} '; --`)).toEqual(await rowsOf(SCHEMA, table));
    await noScratchLeft();
  }, 60_000);

  it("brings back a partitioned table with hostile names (a partition partitioned again) as one plain table with every partition's rows", async () => {
    const table = "parted ') PARTITION BY '";
    const r = await recoverHostile([`${id(SCHEMA)}.${id(table)}`]);
    expect(r.code, r.stderr).toBe(0);
    const recovered = await shape(SCHEMA, `${table}_recovered`);
    expect(recovered.relkind).toBe("r");
    expect(recovered.columns).toEqual((await shape(SCHEMA, table)).columns);
    expect(await rowsOf(SCHEMA, `${table}_recovered`)).toEqual(await rowsOf(SCHEMA, table));
    expect(await rowsOf(SCHEMA, `${table}_recovered`)).toHaveLength(10);
    expect(await isSuperuser("app")).toBe(false);
  }, 60_000);

  it("brings back a hostile inheritance child as a plain table: its parent's columns and its own, its own rows only, no parent", async () => {
    const table = "child -- */";
    const r = await recoverHostile([`${id(SCHEMA)}.${id(table)}`], ["--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).tables[0].skippedDefaults).toEqual(['a "']);
    const original = await shape(SCHEMA, table);
    const recovered = await shape(SCHEMA, `${table}_recovered`);
    expect(recovered.parents).toBe(0);
    expect(recovered.columns.map((c) => c.attname)).toEqual(['a "', "b */", "c $$", "d\n"]);
    expect(recovered.columns).toEqual(original.columns.map((c) => (c.attname === 'a "' ? { ...c, def: null } : c)));
    expect(recovered.checks).toEqual(original.checks);
    expect(await rowsOf(SCHEMA, `${table}_recovered`)).toEqual(await rowsOf(SCHEMA, table, true));
    // The parent's queries do not see the recovered rows.
    expect(await rowsOf(SCHEMA, "parent ; INHERITS (")).toHaveLength(5);
  }, 60_000);

  it("recovers tables of random hostile names, defaults and checks exactly, all in one run (property)", async () => {
    const fragment = fc.constantFrom(...FRAGMENTS, "a", "Z", " ", "_");
    const text = fc.array(fragment, { minLength: 1, maxLength: 5 }).map((parts) => parts.join(""));
    // Names that fit in 63 bytes with the suffix added.
    const name = text.filter((s) => Buffer.byteLength(s) <= 40);
    const tableArb = fc.record({
      name,
      columns: fc.uniqueArray(fc.record({ name, fill: text }), {
        minLength: 1,
        maxLength: 4,
        selector: (c) => c.name,
      }),
      check: text,
    });
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(tableArb, { minLength: 1, maxLength: 3, selector: (t) => t.name }),
        async (tables) => {
          const db = await createDatabase(pgUrl, "hostile_prop");
          for (const t of tables) {
            const cols = t.columns.map((c) => `${id(c.name)} text default ${lit(c.fill)}`);
            const first = id((t.columns[0] as { name: string }).name);
            await sql(
              db.url,
              `create table ${id(t.name)} (${cols.join(", ")}, check (${first} <> ${lit(t.check)} or ${lit(t.check)} = ''));
               insert into ${id(t.name)} default values;
               insert into ${id(t.name)} (${t.columns.map((c) => id(c.name)).join(", ")})
                 values (${t.columns.map((c) => lit(`${c.fill}|${c.name}`)).join(", ")})`,
            );
          }
          const store = await newStore("file");
          const backup = await runCli(["backup", "--recipient", key.recipient, "--database-id", "prop"], {
            DATABASE_URL: db.url,
            STRONGROOM_STORE: store.url,
          });
          expect(backup.code, backup.stderr).toBe(0);
          const r = await runCli(
            ["recover-table", "--identity", key.file, ...tables.flatMap((t) => ["--table", id(t.name)])],
            { STRONGROOM_STORE: store.url, STRONGROOM_TARGET_URL: db.url },
          );
          expect(r.code, r.stderr).toBe(0);
          expect(await isSuperuser("app")).toBe(false);
          for (const t of tables) {
            const read = async (table: string) => ({
              columns: await sql(
                db.url,
                `select attname, pg_get_expr(adbin, adrelid) as def from pg_attribute
                   left join pg_attrdef on adrelid = attrelid and adnum = attnum
                  where attrelid = $1::regclass and attnum > 0 order by attnum`,
                [`public.${id(table)}`],
              ),
              checks: await sql(
                db.url,
                "select pg_get_constraintdef(oid) as def from pg_constraint where conrelid = $1::regclass",
                [`public.${id(table)}`],
              ),
              rows: await sql(db.url, `select t::text as r from public.${id(table)} t order by 1`),
            });
            expect(await read(`${t.name}_recovered`)).toEqual(await read(t.name));
          }
        },
      ),
      { numRuns: 3, endOnFailure: true },
    );
  }, 240_000);

  it("says that the target role needs CREATEDB, before reading anything, when it may create the table but not the scratch database", async () => {
    const role = `nodb_${process.pid}`;
    await sql(hostile.url, `create role ${role} login password 'pw-${role}' nocreatedb`);
    await sql(hostile.url, `grant create, usage on schema public to ${role}`);
    const r = await recoverHostile(
      ["public.victims"],
      ["--suffix", "_nodb"],
      dbUrl(hostile.url, hostile.name, role, `pw-${role}`),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`permission denied on the target: role ${role} may not create databases`);
    expect(r.stderr).toContain("[AccessDeniedError]");
    expect(r.stderr).toContain("HINT: grant it CREATEDB");
    await noScratchLeft();
  }, 60_000);

  it("fails with pg_restore's own words, and leaves no scratch database, when the scratch database cannot get what a table needs", async () => {
    // earthdistance is not a trusted extension: a role without superuser cannot create it there.
    await sql(
      hostile.url,
      "create extension if not exists cube; create extension if not exists earthdistance; create table public.places (at earth)",
    );
    const store = await newStore("file");
    const backup = await runCli(["backup", "--recipient", key.recipient, "--database-id", "places"], {
      DATABASE_URL: hostile.url,
      STRONGROOM_STORE: store.url,
    });
    expect(backup.code, backup.stderr).toBe(0);
    const role = `withdb_${process.pid}`;
    await sql(hostile.url, `create role ${role} login password 'pw-${role}' createdb`);
    await sql(hostile.url, `grant create, usage on schema public to ${role}`);
    const r = await runCli(["recover-table", "--identity", key.file, "--table", "public.places"], {
      STRONGROOM_STORE: store.url,
      STRONGROOM_TARGET_URL: dbUrl(hostile.url, hostile.name, role, `pw-${role}`),
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("pg_restore exited 1 creating the tables' definitions in a scratch database");
    expect(r.stderr).toContain('permission denied to create extension "earthdistance"');
    expect(r.stderr).toContain("[RestoreFailedError]");
    await noScratchLeft();
    expect(await sql(hostile.url, "select 1 from pg_class where relname = 'places_recovered'")).toEqual([]);
  }, 60_000);
});
