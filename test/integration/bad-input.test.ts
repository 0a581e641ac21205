import { readdir, readFile, stat, truncate, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { readAll } from "#core/audit/audit-log.ts";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { objectKey } from "#core/keys.ts";
import { runCli, startCli } from "../helpers/cli.ts";
import {
  allKeys,
  committedBackups,
  identityFile,
  newStore,
  type StoreUnderTest,
  wrappedBinDir,
} from "../helpers/fixture.ts";
import { createDatabase, dbUrl, sql } from "../helpers/pg.ts";
import { flipByte } from "../helpers/streams.ts";
import { tempDir } from "../helpers/temp.ts";

const pgUrl = inject("pgUrl");
const binDir = inject("pgBinDir");

/** The events in a database's audit chain in the store (local mode). */
async function auditEvents(store: StoreUnderTest, databaseId: string): Promise<string[]> {
  return (await readAll(new StoreAuditLog(store.store, `db#${databaseId}`))).map((r) => r.event);
}

/** Counts user tables: a refused or failed restore must leave the target as it was. */
async function userTables(url: string): Promise<number> {
  const [row] = await sql<{ n: string }>(
    url,
    "select count(*)::text as n from pg_tables where schemaname not in ('pg_catalog', 'information_schema')",
  );
  return Number(row?.n);
}

describe("bad input: backup", () => {
  let small: { name: string; url: string };
  beforeAll(async () => {
    small = await createDatabase(pgUrl, "small");
    await sql(
      small.url,
      "create table t(id int primary key, v text); insert into t select g, 'v' || g from generate_series(1, 5000) g",
    );
  });

  it("names an unreachable database, with a hint, stores no backup object and records backup.fail", async () => {
    const store = await newStore("file");
    const key = await identityFile();
    const r = await runCli(["backup", "--recipient", key.recipient], {
      DATABASE_URL: "postgres://postgres@127.0.0.1:1/nowhere",
      STRONGROOM_STORE: store.url,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("strongroom: error: cannot connect to postgres@127.0.0.1:1/nowhere (ECONNREFUSED)");
    expect(r.stderr).toContain("HINT: check that the server is running");
    expect((await allKeys(store.store)).filter((k) => !k.startsWith(".strongroom/audit/"))).toEqual([]);
    const rows = await readAll(new StoreAuditLog(store.store, "db#nowhere"));
    expect(rows.map((row) => [row.event, row.details])).toEqual([
      ["backup.start", { target: "postgres@127.0.0.1:1/nowhere" }],
      ["backup.fail", { error: "DatabaseConnectionError" }],
    ]);
  });

  it("reports a bad password as an authentication failure, without echoing it, and records backup.fail", async () => {
    const store = await newStore("file");
    const key = await identityFile();
    const r = await runCli(["backup", "--recipient", key.recipient], {
      DATABASE_URL: dbUrl(small.url, small.name, "postgres", "Wrong-Pass-123"),
      STRONGROOM_STORE: store.url,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/strongroom: error: authentication failed for postgres@127\.0\.0\.1:\d+\/small_/);
    expect(r.stderr).not.toContain("Wrong-Pass-123");
    expect((await allKeys(store.store)).filter((k) => !k.startsWith(".strongroom/audit/"))).toEqual([]);
    expect(await auditEvents(store, small.name)).toEqual(["backup.start", "backup.fail"]);
    expect(JSON.stringify(await readAll(new StoreAuditLog(store.store, `db#${small.name}`)))).not.toContain(
      "Wrong-Pass",
    );
  });

  it("rejects an invalid recipient before touching the database", async () => {
    const store = await newStore("file");
    const r = await runCli(["backup", "--recipient", "age1notakey"], {
      DATABASE_URL: small.url,
      STRONGROOM_STORE: store.url,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('strongroom: error: invalid recipient "age1n…" (11 characters) [InvalidRecipientError]');
    expect(r.stderr).toContain("HINT: pass an X25519 age public key");
    expect(await allKeys(store.store)).toEqual([]);
  });

  it("exits 2 with usage when a required flag is missing", async () => {
    const r = await runCli(["backup", "--recipient", "age1x"], { DATABASE_URL: small.url });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("required option '--store <url>' not specified");
  });

  it("names a bucket that does not exist", async () => {
    const key = await identityFile();
    const r = await runCli(["backup", "--recipient", key.recipient], {
      DATABASE_URL: small.url,
      STRONGROOM_STORE: "s3://strongroom-no-such-bucket/pg",
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("strongroom: error: bucket strongroom-no-such-bucket does not exist");
  });

  describe("interrupted mid-stream", () => {
    let big: { name: string; url: string };
    beforeAll(async () => {
      // ~80 MB of dump, ~45 MB stored: several 16 MiB parts, so a multipart upload is open mid-way.
      big = await createDatabase(pgUrl, "big");
      await sql(
        big.url,
        `create table big(id int, v text);
         insert into big select g, md5(g::text) || md5((g * 3)::text) || md5((g * 7)::text) || md5((g * 11)::text)
         from generate_series(1, 600000) g`,
      );
    });

    it.for(["file", "s3"] as const)("commits nothing when pg_dump is killed mid-stream (%s)", async (kind) => {
      const store = await newStore(kind);
      const key = await identityFile();
      // pg_dump's output stops after 60 MB and the process is then killed.
      const wrapped = await wrappedBinDir(binDir, { pgDumpBody: '"$REAL" "$@" | head -c 60000000\nkill -KILL $$' });
      const r = await runCli(["backup", "--recipient", key.recipient], {
        DATABASE_URL: big.url,
        STRONGROOM_STORE: store.url,
        PG_BIN_DIRS: wrapped.dir,
      });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("strongroom: error: pg_dump killed by SIGKILL");
      expect(await committedBackups(store.store)).toBe(0);
      expect(await allKeys(store.store, `${big.name}/`)).toEqual([]);
      expect(await auditEvents(store, big.name)).toEqual(["backup.start", "backup.fail"]);
      expect(await store.openUploads()).toBe(0);
      expect((await runCli(["list"], { STRONGROOM_STORE: store.url })).stdout).toBe("no backups\n");
    });

    it.for(["file", "s3"] as const)("commits nothing when the worker gets SIGTERM mid-upload (%s)", async (kind) => {
      const store: StoreUnderTest = await newStore(kind);
      const key = await identityFile();
      const run = startCli(["backup", "--recipient", key.recipient], {
        DATABASE_URL: big.url,
        STRONGROOM_STORE: store.url,
      });
      // Wait until the upload is under way: an open multipart upload (s3), or a partial
      // file past 1 MiB (file; audit rows pass through the same directory, but briefly and small).
      const partial = kind === "file" ? path.join(fileURLToPath(store.url), ".strongroom-partial") : "";
      const bigPartial = async () => {
        const names = await readdir(partial).catch(() => [] as string[]);
        const sizes = await Promise.all(
          names.map((n) =>
            stat(path.join(partial, n)).then(
              (s) => s.size,
              () => 0,
            ),
          ),
        );
        return sizes.some((s) => s > 1024 * 1024);
      };
      for (let i = 0; i < 1000; i++) {
        if (kind === "s3" ? (await store.openUploads()) > 0 : await bigPartial()) break;
        await sleep(10);
      }
      run.child.kill("SIGTERM");
      const r = await run.result;
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("SIGTERM received");
      expect(r.stderr).toMatch(/strongroom: error: .*aborted/);
      expect(await committedBackups(store.store)).toBe(0);
      expect(await allKeys(store.store, `${big.name}/`)).toEqual([]);
      expect(await auditEvents(store, big.name)).toEqual(["backup.start", "backup.fail"]);
      expect(await store.openUploads()).toBe(0);
      expect((await runCli(["list"], { STRONGROOM_STORE: store.url })).stdout).toBe("no backups\n");
    });
  });
});

describe("bad input: restore", () => {
  let store: StoreUnderTest;
  let key: Awaited<ReturnType<typeof identityFile>>;
  let source: { name: string; url: string };
  let backupId: string;

  beforeAll(async () => {
    source = await createDatabase(pgUrl, "restore_src");
    await sql(
      source.url,
      "create table t(id int primary key, v text); insert into t select g, repeat('v', g % 100) from generate_series(1, 20000) g",
    );
    store = await newStore("file");
    key = await identityFile();
    const r = await runCli(["backup", "--recipient", key.recipient], {
      DATABASE_URL: source.url,
      STRONGROOM_STORE: store.url,
    });
    expect(r.code).toBe(0);
    backupId = r.stdout.trim();
  });

  const restoreInto = (target: string, args: string[] = [], storeUrl = store.url) =>
    runCli(["restore", "--identity", key.file, ...args], { STRONGROOM_STORE: storeUrl, STRONGROOM_TARGET_URL: target });

  /** A copy of the good store whose object `role` has been damaged by `damage`. */
  async function damagedCopy(role: "dump" | "stats", damage: (file: string) => Promise<void>): Promise<StoreUnderTest> {
    const copy = await newStore("file");
    const from = fileURLToPath(store.url);
    const to = fileURLToPath(copy.url);
    const { cp } = await import("node:fs/promises");
    await cp(from, to, { recursive: true });
    await damage(path.join(to, objectKey(source.name, backupId, role)));
    return copy;
  }

  it("refuses a wrong identity before touching the target", async () => {
    const target = await createDatabase(pgUrl, "t_wrongid");
    const other = await identityFile();
    const r = await runCli(["restore", "--identity", other.file], {
      STRONGROOM_STORE: store.url,
      STRONGROOM_TARGET_URL: target.url,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("no identity matches any recipient of this file");
    expect(r.stderr).toContain("HINT: decrypt with the identity whose recipient");
    expect(await userTables(target.url)).toBe(0);
  });

  it("names an unknown backup id", async () => {
    const target = await createDatabase(pgUrl, "t_unknown");
    const r = await restoreInto(target.url, ["--backup", "20200101T000000Z-aaaaaa"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `strongroom: error: no backup 20200101T000000Z-aaaaaa for database ${source.name} in this store`,
    );
    expect(r.stderr).toContain("HINT: `strongroom list --store …` shows the backups there");
  });

  it("detects a truncated dump object and leaves the target empty and the backup listed", async () => {
    const copy = await damagedCopy("dump", async (file) => {
      const { size } = await import("node:fs/promises").then((f) => f.stat(file));
      await truncate(file, size - 1000);
    });
    const target = await createDatabase(pgUrl, "t_trunc");
    const r = await restoreInto(target.url, [], copy.url);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /dump\.pgc\.zst\.age is \d+ bytes but its manifest says \d+: it was truncated or replaced/,
    );
    expect(await userTables(target.url)).toBe(0);
    expect(await committedBackups(copy.store)).toBe(1);
  });

  it("removes the --jobs staging directory when staging fails", async () => {
    const copy = await damagedCopy("dump", async (file) => {
      const data = await readFile(file);
      flipByte(data, Math.floor(data.length * 0.7));
      await writeFile(file, data);
    });
    const staging = await tempDir("strongroom-staging-");
    const target = await createDatabase(pgUrl, "t_staged");
    const r = await restoreInto(target.url, ["--jobs", "2", "--staging-dir", staging], copy.url);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/failed authentication/);
    expect(await readdir(staging)).toEqual([]);
    expect(await userTables(target.url)).toBe(0);
  });

  it("detects one flipped byte in the payload and rolls the target back", async () => {
    const copy = await damagedCopy("dump", async (file) => {
      const data = await readFile(file);
      flipByte(data, Math.floor(data.length * 0.7));
      await writeFile(file, data);
    });
    const target = await createDatabase(pgUrl, "t_flip");
    const r = await restoreInto(target.url, [], copy.url);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/dump\.pgc\.zst\.age: age payload chunk \d+ failed authentication: the data was altered/);
    expect(await userTables(target.url)).toBe(0);
  });

  it("detects a tampered stats object before touching the target", async () => {
    const copy = await damagedCopy("stats", async (file) => {
      const data = await readFile(file);
      flipByte(data, data.length - 20);
      await writeFile(file, data);
    });
    const target = await createDatabase(pgUrl, "t_stats");
    const r = await restoreInto(target.url, [], copy.url);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/stats\.json\.age: age payload chunk 0 failed authentication/);
    expect(await userTables(target.url)).toBe(0);
  });

  it("refuses a non-empty target without --clean and leaves it untouched; --clean restores", async () => {
    const target = await createDatabase(pgUrl, "t_nonempty");
    await sql(target.url, "create table keep_me(x int); insert into keep_me values (42)");
    const r = await restoreInto(target.url);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/target database t_nonempty_\S+ already holds 1 user objects/);
    expect(r.stderr).toContain("HINT: restore into a new, empty database, or pass --clean");
    expect(await sql(target.url, "select x from keep_me")).toEqual([{ x: 42 }]);

    const clean = await restoreInto(target.url, ["--clean"]);
    expect(clean.code).toBe(0);
    expect(await sql(target.url, "select count(*)::int as n from t")).toEqual([{ n: 20000 }]);
  });
});
