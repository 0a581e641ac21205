import { cp, readFile, stat } from "node:fs/promises";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { listManifests } from "#core/backup-index.ts";
import type { Manifest } from "#core/manifest.ts";
import { type Cluster, embeddedServerBinDir, startCluster } from "#worker/pg/scratch-cluster.ts";
import { runCli } from "../helpers/cli.ts";
import { committedBackups, identityFile, newStore, wrappedBinDir } from "../helpers/fixture.ts";
import { contentDigest, createDatabase, dbUrl, loadRichDatabase, schemaDump, sql } from "../helpers/pg.ts";
import { tempDir } from "../helpers/temp.ts";

const pgUrl = inject("pgUrl");
const binDir = inject("pgBinDir");

let second: Cluster;
let rich: { name: string; url: string };

beforeAll(async () => {
  [second, rich] = await Promise.all([startCluster(), loadRichDatabase(pgUrl)]);
});
afterAll(async () => {
  await second?.stop();
});

describe.for(["file", "s3"] as const)("backup and restore through the %s store", (kind) => {
  it("restores every schema object and row into a fresh cluster, identically", async () => {
    // GIVEN a rich database and an empty database in a second cluster (no roles yet)
    const store = await newStore(kind);
    const key = await identityFile();
    const target = await createDatabase(second.url, "restored");

    // WHEN it is backed up and restored with the CLI
    const backedUp = await runCli(["backup", "--recipient", key.recipient, "--json"], {
      DATABASE_URL: rich.url,
      STRONGROOM_STORE: store.url,
    });
    expect(backedUp.stderr).toContain("backup committed");
    expect(backedUp.code).toBe(0);
    const manifest = JSON.parse(backedUp.stdout) as Manifest;
    const restored = await runCli(
      ["restore", "--identity", key.file, "--backup", manifest.backupId, ...(kind === "s3" ? ["--jobs", "2"] : [])],
      { STRONGROOM_STORE: store.url, STRONGROOM_TARGET_URL: target.url },
    );

    // THEN the schema text and every table's ordered rows are the same
    expect(restored.stderr).not.toMatch(/error/i);
    expect(restored.code).toBe(0);
    expect(restored.stdout).toMatch(/counts verified/);
    expect(await schemaDump(binDir, target.url)).toEqual(await schemaDump(binDir, rich.url));
    expect(await contentDigest(target.url)).toEqual(await contentDigest(rich.url));
    const roles = await sql<{ r: string }>(second.url, "select rolname as r from pg_roles where rolname like 'shop_%'");
    expect(roles.map((r) => r.r).sort()).toEqual(["shop_owner", "shop_reader"]);
  });

  it("writes a manifest that holds sizes and digests but no table names, and lists it", async () => {
    const store = await newStore(kind);
    const key = await identityFile();
    const backedUp = await runCli(["backup", "--recipient", key.recipient, "--database-id", "shop"], {
      DATABASE_URL: rich.url,
      STRONGROOM_STORE: store.url,
    });
    expect(backedUp.code).toBe(0);
    const backupId = backedUp.stdout.trim();
    expect(backupId).toMatch(/^\d{8}T\d{6}Z-[a-z2-7]{6}$/);

    const [manifest] = await listManifests(store.store);
    expect(manifest?.backupId).toBe(backupId);
    expect(manifest?.recipients).toEqual([key.recipient]);
    expect(manifest?.objects.map((o) => o.role)).toEqual(["dump", "roles", "stats"]);
    // Format 2: the dump's plain bytes are proven by its zstd frames' checksums, the small objects by SHA-256.
    expect(manifest?.format).toBe("strongroom.manifest/2");
    expect(manifest?.objects[0]).toMatchObject({
      plainCheck: "zstd-xxh64",
      chain: expect.arrayContaining(["zstd-frames/1 level 3 checksum"]),
    });
    expect(manifest?.objects[0]?.plainSha256).toBeUndefined();
    expect(manifest?.objects[1]?.plainSha256).toMatch(/^[0-9a-f]{64}$/);
    const text = JSON.stringify(manifest);
    for (const secret of ["customers", "orders", "Mixed Case", "shop_owner"]) expect(text).not.toContain(secret);

    const listed = await runCli(["list"], { STRONGROOM_STORE: store.url });
    expect(listed.stdout).toContain(backupId);
    expect(listed.stdout).toMatch(/BACKUP ID\s+FINISHED \(UTC\)\s+DATABASE\s+SERVER/);
    const json = JSON.parse((await runCli(["list", "--json"], { STRONGROOM_STORE: store.url })).stdout) as {
      backups: Manifest[];
      problems: unknown[];
    };
    expect(json.backups.map((m) => m.backupId)).toEqual([backupId]);
    expect(json.problems).toEqual([]);
  });
});

describe("pg_dump version matching", () => {
  it("dumps a PostgreSQL 14 server with pg_dump 15 and restores it", async () => {
    const pg14 = await startCluster(await embeddedServerBinDir(14), "postgres-14");
    try {
      const source = await createDatabase(pg14.url, "v14");
      await sql(
        source.url,
        "create table t(id int primary key, v text); insert into t select g, 'v' || g from generate_series(1, 1000) g",
      );
      const store = await newStore("file");
      const key = await identityFile();
      const backedUp = await runCli(["backup", "--recipient", key.recipient, "--json"], {
        DATABASE_URL: source.url,
        STRONGROOM_STORE: store.url,
      });
      expect(backedUp.code).toBe(0);
      const manifest = JSON.parse(backedUp.stdout) as Manifest;
      expect(manifest.server.version).toMatch(/^14\./);
      expect(manifest.pgDump.version).toMatch(/^15\./);
      const target = await createDatabase(pgUrl, "from14");
      const restored = await runCli(["restore", "--identity", key.file], {
        STRONGROOM_STORE: store.url,
        STRONGROOM_TARGET_URL: target.url,
      });
      expect(restored.code).toBe(0);
      expect(await contentDigest(target.url)).toEqual(await contentDigest(source.url));
    } finally {
      await pg14.stop();
    }
  });

  it("refuses a PostgreSQL 17 server with one clear line naming what to install", async () => {
    const pg17 = await startCluster(await embeddedServerBinDir(17), "postgres-17");
    try {
      const store = await newStore("file");
      const key = await identityFile();
      const result = await runCli(["backup", "--recipient", key.recipient], {
        DATABASE_URL: dbUrl(pg17.url, "postgres"),
        STRONGROOM_STORE: store.url,
      });
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(
        /strongroom: error: no suitable pg_dump for a PostgreSQL 17\.\d+ server \(PostgreSQL 17\): found pg_dump 15 in \/usr\/lib\/postgresql\/15\/bin \[NoSuitablePgDumpError\]\nHINT: install postgresql-client-17/,
      );
      expect(await committedBackups(store.store)).toBe(0);
    } finally {
      await pg17.stop();
    }
  });
});

describe("roles on a fresh cluster", () => {
  it("names the roles it cannot create and restores with --no-owner", async () => {
    // GIVEN a backup owned by shop_owner, and a cluster where the restoring role may not create roles
    const third = await startCluster();
    try {
      const store = await newStore("file");
      const key = await identityFile();
      expect(
        (
          await runCli(["backup", "--recipient", key.recipient], {
            DATABASE_URL: rich.url,
            STRONGROOM_STORE: store.url,
          })
        ).code,
      ).toBe(0);
      await sql(third.url, "create role restorer login password 'Restorer-Pw-1' createdb");
      await sql(third.url, "create database into_restorer owner restorer");
      const target = dbUrl(third.url, "into_restorer", "restorer", "Restorer-Pw-1");

      // WHEN it restores as that role
      const refused = await runCli(["restore", "--identity", key.file], {
        STRONGROOM_STORE: store.url,
        STRONGROOM_TARGET_URL: target,
      });

      // THEN it names the missing roles and offers --no-owner, and the target stays empty
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(
        "roles that own objects in the backup are missing in the target cluster and restorer cannot create them: shop_owner",
      );
      expect(refused.stderr).toContain("HINT: create them first, or pass --no-owner");
      expect(await sql(target, "select count(*)::int as n from pg_tables where schemaname = 'sales'")).toEqual([
        { n: 0 },
      ]);

      const owned = await runCli(["restore", "--identity", key.file, "--no-owner"], {
        STRONGROOM_STORE: store.url,
        STRONGROOM_TARGET_URL: target,
      });
      expect(owned.code).toBe(0);
      const digest = await contentDigest(target);
      const source = await contentDigest(rich.url);
      expect(digest["sales.orders"]).toEqual(source["sales.orders"]);
      expect(await sql(target, "select tableowner as o from pg_tables where tablename = 'orders'")).toEqual([
        { o: "restorer" },
      ]);
    } finally {
      await third.stop();
    }
  });
});

describe("least privilege", () => {
  const password = "ro-Secret-7788";
  beforeAll(async () => {
    await sql(
      pgUrl,
      `do $$ begin
         if not exists (select from pg_roles where rolname = 'strongroom_ro') then
           create role strongroom_ro login password '${password}';
         end if;
       end $$; grant pg_read_all_data to strongroom_ro`,
    );
  });

  it("backs up with a role that has only pg_read_all_data", async () => {
    // pg_read_all_data does not reach large objects (they carry their own ACLs), so this
    // uses a copy of the rich database without them; the next test covers the message.
    const name = `rich_no_lo_${process.pid}`;
    await sql(pgUrl, `create database ${name} template ${rich.name}`);
    const source = dbUrl(pgUrl, name);
    await sql(source, "select lo_unlink(oid) from pg_largeobject_metadata");
    const store = await newStore("file");
    const key = await identityFile();
    const backedUp = await runCli(["backup", "--recipient", key.recipient, "--json"], {
      DATABASE_URL: dbUrl(pgUrl, name, "strongroom_ro", password),
      STRONGROOM_STORE: store.url,
    });
    expect(backedUp.stderr).not.toMatch(/error/);
    expect(backedUp.code).toBe(0);
    const target = await createDatabase(second.url, "from_ro");
    const restored = await runCli(["restore", "--identity", key.file], {
      STRONGROOM_STORE: store.url,
      STRONGROOM_TARGET_URL: target.url,
    });
    expect(restored.code).toBe(0);
    expect(await contentDigest(target.url)).toEqual(await contentDigest(source));
  });

  it("names the missing grant when the role cannot read large objects, and commits nothing", async () => {
    const store = await newStore("file");
    const key = await identityFile();
    const result = await runCli(["backup", "--recipient", key.recipient], {
      DATABASE_URL: dbUrl(rich.url, rich.name, "strongroom_ro", password),
      STRONGROOM_STORE: store.url,
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/pg_dump exited 1: .*permission denied for large object/);
    expect(result.stderr).toMatch(/HINT: .*GRANT SELECT ON LARGE OBJECT/);
    expect(await committedBackups(store.store)).toBe(0);
  });
});

describe("secrets", () => {
  it("never shows the database password in output, logs, the store, or any child's argv", async () => {
    const canary = `Canary-${Date.now()}-Pw`;
    await sql(
      pgUrl,
      `do $$ begin
         if not exists (select from pg_roles where rolname = 'canary_user') then create role canary_user login superuser; end if;
       end $$; alter role canary_user password '${canary}'`,
    );
    const wrapped = await wrappedBinDir(binDir);
    const store = await newStore("file");
    const key = await identityFile();
    const env = { PG_BIN_DIRS: wrapped.dir, STRONGROOM_STORE: store.url };
    const source = dbUrl(rich.url, rich.name, "canary_user", canary);
    const target = await createDatabase(pgUrl, "canary_target");
    const outputs = [
      await runCli(["backup", "--recipient", key.recipient, "--log-level", "debug"], { ...env, DATABASE_URL: source }),
      await runCli(["--log-format", "json", "backup", "--recipient", key.recipient, "--json"], {
        ...env,
        DATABASE_URL: source,
      }),
      await runCli(["restore", "--identity", key.file, "--jobs", "2"], {
        ...env,
        STRONGROOM_TARGET_URL: dbUrl(target.url, target.name, "canary_user", canary),
      }),
      // A failing run echoes its inputs in errors: the password must be redacted there too.
      await runCli(["backup", "--recipient", key.recipient], {
        ...env,
        DATABASE_URL: dbUrl(rich.url, "no_such_db", "canary_user", canary),
      }),
      await runCli(["backup", "--db", source, "--recipient", key.recipient], env),
    ];
    expect(outputs.slice(0, 3).map((o) => o.code)).toEqual([0, 0, 0]);
    expect(outputs[3]?.stderr).toContain("database no_such_db does not exist");
    expect(outputs[4]?.stderr).toContain("visible to other local users");
    for (const o of outputs) {
      expect(o.stdout).not.toContain(canary);
      expect(o.stderr).not.toContain(canary);
    }
    const argv = await readFile(wrapped.log, "utf8");
    expect(argv).toMatch(/^pg_dump -Fc -Z0 --snapshot=/m);
    expect(argv).toMatch(/^pg_restore /m);
    expect(argv).not.toContain(canary);
    for (const m of await listManifests(store.store)) expect(JSON.stringify(m)).not.toContain(canary);
  });
});

describe("keygen", () => {
  it("writes the identity with mode 0600, prints the recipient and refuses to overwrite", async () => {
    const out = path.join(await tempDir(), "id.txt");
    const made = await runCli(["keygen", "--out", out]);
    expect(made.code).toBe(0);
    expect(made.stdout.trim()).toMatch(/^age1[02-9ac-hj-np-z]{58}$/);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    expect(await readFile(out, "utf8")).toContain("AGE-SECRET-KEY-1");
    const again = await runCli(["keygen", "--out", out]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`identity file ${out} already exists`);
  });
});

describe("a backup written in manifest format 1 (before 0.2)", () => {
  /** A copy of test/fixtures/manifest-v1 (restore appends audit rows to a file store's own log). */
  async function legacyStore(): Promise<{ url: string; identity: string }> {
    const dir = await tempDir();
    const fixture = path.resolve(import.meta.dirname, "../fixtures/manifest-v1");
    await cp(path.join(fixture, "store"), path.join(dir, "store"), { recursive: true });
    return { url: pathToFileURL(path.join(dir, "store")).href, identity: path.join(fixture, "identity.txt") };
  }

  it("is still listed, restored with its row counts checked, and passes an integrity check", async () => {
    const { url, identity } = await legacyStore();
    const listed = await runCli(["list", "--json"], { STRONGROOM_STORE: url });
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain("20261121T184524Z-brxipg");

    const target = await createDatabase(pgUrl, "legacy_v1");
    const restored = await runCli(["restore", "--identity", identity, "--database-id", "legacy"], {
      STRONGROOM_STORE: url,
      STRONGROOM_TARGET_URL: target.url,
    });
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.stdout).toMatch(/counts verified/);
    const [row] = await sql<{ notes: number; tags: number; tick: number }>(
      target.url,
      `select (select count(*)::int from notes) as notes, (select count(*)::int from tags) as tags,
         (select count(*)::int from notes where body like '%✓ "quoted"') as tick`,
    );
    expect(row).toEqual({ notes: 500, tags: 500, tick: 500 });

    const checked = await runCli(
      ["verify", "--integrity-only", "--identity", identity, "--database-id", "legacy", "--json"],
      {
        STRONGROOM_STORE: url,
      },
    );
    expect(checked.code, checked.stderr).toBe(0);
    expect(JSON.parse(checked.stdout)).toMatchObject({ ok: true, kind: "integrity" });
  });
});
