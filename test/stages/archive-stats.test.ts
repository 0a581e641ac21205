import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import * as path from "node:path";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import pg from "pg";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { ArchiveStatsTap, type TocEntry } from "#worker/stages/archive-stats.ts";
import { createDatabase, sql } from "../helpers/pg.ts";
import { chunked } from "../helpers/streams.ts";
import { tempDir } from "../helpers/temp.ts";

const run = promisify(execFile);
const pgUrl = inject("pgUrl");
const binDir = inject("pgBinDir");

async function dump(url: string): Promise<Buffer> {
  const u = new URL(url);
  const { stdout } = await run(`${binDir}/pg_dump`, ["-Fc", "-Z0", "--no-password"], {
    encoding: "buffer",
    maxBuffer: 256 * 1024 * 1024,
    env: {
      ...process.env,
      PGHOST: u.hostname,
      PGPORT: u.port,
      PGUSER: "postgres",
      PGPASSWORD: decodeURIComponent(u.password),
      PGDATABASE: u.pathname.slice(1),
    },
  });
  return stdout;
}

async function tap(data: Buffer, sizes: number[]): Promise<{ tap: ArchiveStatsTap; out: Buffer }> {
  const t = new ArchiveStatsTap();
  const out: Buffer[] = [];
  await pipeline(chunked(data, sizes), t, async (source) => {
    for await (const c of source) out.push(c);
  });
  return { tap: t, out: Buffer.concat(out) };
}

describe("row counts from the pg_dump archive stream", () => {
  let archive: Buffer;
  let dbName: string;
  let expected: Array<{ schema: string; table: string; rows: number }>;

  beforeAll(async () => {
    const db = await createDatabase(pgUrl, "archive");
    dbName = db.name;
    await sql(
      db.url,
      `create schema "odd ""schema""";
       create table "odd ""schema""".lines(v text);
       insert into "odd ""schema""".lines values ('\\.'), (E'a\\nb'), (E'\\\\.\\n'), (''), (null), (E'\\r\\n');
       create table empty();
       create table many(id int, v text);
       insert into many select g, repeat('x', g % 300) from generate_series(1, 30000) g;
       create table parted(id int) partition by range(id);
       create table parted_a partition of parted for values from (0) to (10);
       create table parted_b partition of parted for values from (10) to (100);
       insert into parted select g from generate_series(0, 99) g;
       select lo_from_bytea(0, repeat('lo', 100000)::bytea);`,
    );
    archive = await dump(db.url);
    expected = (
      await sql<{ schema: string; table: string; rows: number }>(
        db.url,
        `select n.nspname as schema, c.relname as table, 0 as rows from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema') order by 1, 2`,
      )
    ).map((t) => t);
    for (const t of expected) {
      const ident = `${pg.escapeIdentifier(t.schema)}.${pg.escapeIdentifier(t.table)}`;
      const [r] = await sql<{ n: number }>(db.url, `select count(*)::int as n from ${ident}`);
      t.rows = r?.n ?? -1;
    }
  });

  it.for([[1 << 20], [1], [7, 4093, 65536], [5]])(
    "counts exactly what count(*) counts, whatever the chunking (%j), and passes bytes through",
    async (sizes) => {
      const { tap: t, out } = await tap(archive, sizes);
      expect(t.failure).toBeUndefined();
      expect(out.equals(archive)).toBe(true);
      const stats = t.result();
      const byName = (a: { schema: string; table: string }, b: { schema: string; table: string }) =>
        `${a.schema}.${a.table}`.localeCompare(`${b.schema}.${b.table}`);
      expect(stats?.tables.slice().sort(byName)).toEqual(expected.slice().sort(byName));
      expect(stats?.largeObjects).toBe(1);
      expect(stats?.archiveVersion).toMatch(/^1\.1\d$/);
      expect(stats?.schemaFingerprint).toMatch(/^[0-9a-f]{64}$/);
    },
  );

  it.for([[1 << 20], [1], [7, 4093, 65536]])(
    "gives a copy on disk the data offsets pg_dump could not write to its pipe, each pointing at its own block (chunking %j)",
    async (sizes) => {
      const { tap: t, out } = await tap(archive, sizes);
      const patches = t.dataOffsets() ?? [];
      // Every table's rows and the large objects: one block each.
      expect(patches.length).toBe(expected.length + 1);
      const staged = Buffer.from(out);
      for (const p of patches) {
        // As written to a pipe: "position not set", offset 0.
        expect(staged[p.at]).toBe(1);
        p.bytes.copy(staged, p.at);
        // A data (1) or large-object (3) block header: its type, then the entry's dump id.
        expect([1, 3]).toContain(staged[p.dataPos]);
        expect(staged[p.dataPos + 1]).toBe(0);
        expect(staged.readUInt32LE(p.dataPos + 2)).toBe(p.dumpId);
      }
      // Only offset fields changed: same length, and every other byte as pg_dump wrote it.
      let changed = 0;
      for (let i = 0; i < out.length; i++) if (out[i] !== staged[i]) changed++;
      expect(changed).toBeLessThanOrEqual(patches.length * 9);
      expect(staged.length).toBe(out.length);
    },
  );

  it("finds the same data offsets while choosing entries (the staged restore's one walk)", async () => {
    const plain = (await tap(archive, [4093])).tap.dataOffsets();
    const choosing = new ArchiveStatsTap({ onToc: async () => new Set(), write: async () => undefined });
    await pipeline(chunked(archive, [4093]), choosing, async (source) => {
      for await (const _ of source);
    });
    expect(choosing.dataOffsets()).toEqual(plain);
    expect(plain?.length).toBeGreaterThan(0);
  });

  it("restores a copy with its data offsets given with pg_restore -j, every row there", async () => {
    const { tap: t, out } = await tap(archive, [65536]);
    const staged = Buffer.from(out);
    for (const p of t.dataOffsets() ?? []) p.bytes.copy(staged, p.at);
    const dir = await tempDir("strongroom-offsets-");
    const file = path.join(dir, "dump.pgc");
    await writeFile(file, staged);
    const target = await createDatabase(pgUrl, "offsets");
    const u = new URL(target.url);
    await run(`${binDir}/pg_restore`, ["--jobs=2", "--exit-on-error", `--dbname=${target.name}`, file], {
      env: {
        ...process.env,
        PGHOST: u.hostname,
        PGPORT: u.port,
        PGUSER: "postgres",
        PGPASSWORD: decodeURIComponent(u.password),
      },
    });
    for (const e of expected) {
      const ident = `${pg.escapeIdentifier(e.schema)}.${pg.escapeIdentifier(e.table)}`;
      const [r] = await sql<{ n: number }>(target.url, `select count(*)::int as n from ${ident}`);
      expect(r?.n, ident).toBe(e.rows);
    }
    const [lo] = await sql<{ n: number }>(target.url, "select count(*)::int as n from pg_largeobject_metadata");
    expect(lo?.n).toBe(1);
  }, 60_000);

  it("gives the same fingerprint for the same schema and reports non-archives as a failure", async () => {
    const a = await tap(archive, [1 << 16]);
    const b = await tap(archive, [333]);
    expect(a.tap.result()?.schemaFingerprint).toBe(b.tap.result()?.schemaFingerprint);

    const garbage = await tap(Buffer.from("not an archive at all"), [4]);
    expect(garbage.tap.failure?.message).toMatch(/not a pg_dump custom archive/);
    expect(garbage.tap.result()).toBeUndefined();
    const cut = await tap(archive.subarray(0, archive.length - 3), [1 << 16]);
    expect(cut.tap.result()).toBeUndefined();
  });

  it("reads each entry's dependencies: a partition's TABLE ATTACH depends on the partition and its parent, its data on its table", async () => {
    let toc: TocEntry[] = [];
    let head: Buffer = Buffer.alloc(0);
    const t = new ArchiveStatsTap({
      onToc: async (entries, archiveHead) => {
        toc = entries;
        head = archiveHead;
        return new Set();
      },
      write: async () => undefined,
    });
    await pipeline(chunked(archive, [333]), t, async (source) => {
      for await (const _ of source);
    });
    const id = (desc: string, tag: string) => toc.find((e) => e.desc === desc && e.tag === tag)?.dumpId;
    const attach = toc.find((e) => e.desc === "TABLE ATTACH" && e.tag === "parted_a");
    expect(attach?.deps.slice().sort()).toEqual([id("TABLE", "parted"), id("TABLE", "parted_a")].sort());
    expect(toc.find((e) => e.desc === "TABLE DATA" && e.tag === "many")?.deps).toEqual([id("TABLE", "many")]);
    // The archive's own first bytes, through the TOC and no further than the first block.
    expect(head.length).toBeGreaterThan(0);
    expect(head.equals(archive.subarray(0, head.length))).toBe(true);
    expect(archive[head.length]).toBe(1);
  });

  it.for([[1 << 20], [1], [7, 4093, 65536], [5]])(
    "captures a table's COPY block exactly as COPY TO STDOUT writes it, whatever the chunking (%j)",
    async (sizes) => {
      const captured: Buffer[] = [];
      const t = new ArchiveStatsTap({
        onToc: async (entries) =>
          new Set(entries.filter((e) => e.desc === "TABLE DATA" && e.tag === "lines").map((e) => e.dumpId)),
        write: async (_entry, data) => {
          captured.push(Buffer.from(data));
        },
      });
      const out: Buffer[] = [];
      await pipeline(chunked(archive, sizes), t, async (source) => {
        for await (const c of source) out.push(c);
      });
      expect(Buffer.concat(out).equals(archive)).toBe(true);
      // The same text COPY writes: the rows, without pg_dump's end-of-copy marker.
      const copied = await run(`${binDir}/psql`, ["-X", "-q", "-c", `copy "odd ""schema""".lines to stdout`], {
        encoding: "buffer",
        env: {
          ...process.env,
          PGDATABASE: dbName,
          PGHOST: new URL(pgUrl).hostname,
          PGPORT: new URL(pgUrl).port,
          PGUSER: "postgres",
          PGPASSWORD: decodeURIComponent(new URL(pgUrl).password),
        },
      });
      expect(Buffer.concat(captured).toString()).toBe(copied.stdout.toString());
    },
  );
});
