import { beforeAll, describe, expect, inject, it } from "vitest";
import { readAll } from "#core/audit/audit-log.ts";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { objectKey } from "#core/keys.ts";
import { getBytes } from "#core/store/object-store.ts";
import { parseTableName } from "#worker/pg/table-name.ts";
import { runCli } from "../helpers/cli.ts";
import { identityFile, newStore, type StoreUnderTest } from "../helpers/fixture.ts";
import { dbUrl, loadRichDatabase, sql } from "../helpers/pg.ts";

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
