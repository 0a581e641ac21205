import { cp, readdir, readFile, stat, utimes, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { CreateMultipartUploadCommand, S3Client } from "@aws-sdk/client-s3";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { nextRow, rowHash, verifyChain } from "#core/audit/audit-chain.ts";
import { readAll } from "#core/audit/audit-log.ts";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { executeGc, planGc } from "#core/gc.ts";
import { newBackupId, objectKey } from "#core/keys.ts";
import { type Manifest, serializeManifest } from "#core/manifest.ts";
import { getBytes } from "#core/store/object-store.ts";
import { S3Store, s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import { writeBackup } from "../helpers/backups.ts";
import { runCli } from "../helpers/cli.ts";
import { createTable, dynamoClient } from "../helpers/dynamo.ts";
import {
  allKeys,
  committedBackups,
  identityFile,
  newStore,
  type StoreUnderTest,
  wrappedBinDir,
} from "../helpers/fixture.ts";
import { createDatabase, sql } from "../helpers/pg.ts";
import { partNumber, startS3Proxy } from "../helpers/s3-proxy.ts";
import { tempDir } from "../helpers/temp.ts";

const pgUrl = inject("pgUrl");
const s3Endpoint = inject("s3Endpoint");

/** Sessions still open on a database, other than ours: a stopped backup leaves none. */
async function otherSessions(url: string): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const [row] = await sql<{ n: number }>(
      url,
      "select count(*)::int as n from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()",
    );
    if (row?.n === 0) return 0;
    await sleep(100);
  }
  return -1;
}

/**
 * ~110 MB of dump that compresses poorly (base64 of hashes), so ~80 MB stored: five
 * 16 MiB parts or more, and a failure at part 2 strikes with most of the dump unread.
 */
async function bigDatabase(prefix: string): Promise<{ name: string; url: string }> {
  const db = await createDatabase(pgUrl, prefix);
  await sql(
    db.url,
    `create table big(id int, v text);
     insert into big select g, encode(sha256(g::text::bytea) || sha256((g * 3)::text::bytea)
       || sha256((g * 7)::text::bytea) || sha256((g * 11)::text::bytea), 'base64')
     from generate_series(1, 600000) g`,
  );
  return db;
}

describe("a store that fails mid-upload", () => {
  let big: { name: string; url: string };
  beforeAll(async () => {
    big = await bigDatabase("s3fail");
  });

  /** A backup of `big` to a fresh bucket through a proxy injecting `fault`; it must end, not hang. */
  async function backupThrough(fault: Parameters<typeof startS3Proxy>[1]) {
    const store = await newStore("s3");
    const key = await identityFile();
    const proxy = await startS3Proxy(s3Endpoint, fault);
    try {
      const r = await runCli(
        ["backup", "--recipient", key.recipient],
        { DATABASE_URL: big.url, STRONGROOM_STORE: store.url, AWS_ENDPOINT_URL_S3: proxy.url },
        { timeoutMs: 60_000 },
      );
      expect(r.signal).toBeNull();
      expect(r.code).toBe(1);
      expect(await committedBackups(store.store)).toBe(0);
      expect(await otherSessions(big.url)).toBe(0);
      return { r, store };
    } finally {
      await proxy.close();
    }
  }

  it("fails the backup with the store's error, aborts the upload and stops pg_dump when parts are denied", async () => {
    // Every part after the first is refused, as with a policy change mid-backup.
    const { r, store } = await backupThrough((req) =>
      (partNumber(req) ?? 0) >= 2 ? { kind: "error", status: 403, code: "AccessDenied" } : { kind: "forward" },
    );
    expect(r.stderr).toContain("strongroom: error: access denied to s3://");
    expect(await store.openUploads()).toBe(0);
    expect(await allKeys(store.store, `${big.name}/`)).toEqual([]);
  });

  it("fails the backup and stops pg_dump when the S3 endpoint dies mid-upload", async () => {
    const { r } = await backupThrough((req) => (partNumber(req) === 2 ? { kind: "die" } : { kind: "forward" }));
    expect(r.stderr).toMatch(/strongroom: error: cannot reach s3 endpoint for bucket \S+ \(ECONNREFUSED\)/);
  });
});

describe("a store that drops the connection mid-read", () => {
  let big: { name: string; url: string };
  let backup: { url: string; key: Awaited<ReturnType<typeof identityFile>> };
  beforeAll(async () => {
    big = await bigDatabase("s3read");
    const { url } = await newStore("s3");
    const key = await identityFile();
    const r = await runCli(["backup", "--recipient", key.recipient], { DATABASE_URL: big.url, STRONGROOM_STORE: url });
    expect(r.code, r.stderr).toBe(0);
    backup = { url, key };
  });

  const dumpGet = (req: { method: string; url: string }) => req.method === "GET" && req.url.includes("dump.pgc");
  const rangeStart = (req: { headers: Record<string, unknown> }) =>
    Number(/^bytes=(\d+)-/.exec(String(req.headers.range ?? ""))?.[1]);

  async function restoreThrough(fault: Parameters<typeof startS3Proxy>[1]) {
    const proxy = await startS3Proxy(s3Endpoint, fault);
    const target = await createDatabase(pgUrl, "s3read_t");
    try {
      const r = await runCli(
        ["restore", "--identity", backup.key.file],
        { STRONGROOM_STORE: backup.url, STRONGROOM_TARGET_URL: target.url, AWS_ENDPOINT_URL_S3: proxy.url },
        { timeoutMs: 120_000 },
      );
      return { r, proxy, target };
    } finally {
      await proxy.close();
    }
  }

  it("resumes a ranged GET cut by a connection reset where it stopped, and restores every row", async () => {
    let cut = 0;
    const { r, proxy, target } = await restoreThrough((req) =>
      dumpGet(req) && rangeStart(req) === 8 * 1024 * 1024 && cut++ === 0
        ? { kind: "cut-response", afterBytes: 3 * 1024 * 1024 }
        : { kind: "forward" },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("store read interrupted; resuming");
    const gets = proxy.requests.filter(dumpGet);
    expect(gets.every((g) => /^bytes=\d+-\d+$/.test(String(g.headers.range)))).toBe(true);
    // The cut range is asked for once more, from the byte the reader had reached. How many
    // of the 3 MiB arrived before the reset depends on the load (the range may still have
    // been waiting, paused, behind the one before): ranged-read.test.ts pins the offset.
    const inCutRange = gets.map(rangeStart).filter((s) => s >= 8 * 1024 * 1024 && s < 16 * 1024 * 1024);
    expect(inCutRange).toHaveLength(2);
    const resumedAt = Number(/resumedAt=(\d+)/.exec(r.stderr)?.[1]);
    expect(inCutRange[1]).toBe(resumedAt);
    const [row] = await sql<{ n: number }>(target.url, "select count(*)::int as n from big");
    expect(row?.n).toBe(600000);
  });

  it("fails the restore with the store's error after a range is cut on every attempt, committing nothing", async () => {
    const { r, target } = await restoreThrough((req) =>
      dumpGet(req) && rangeStart(req) >= 8 * 1024 * 1024
        ? { kind: "cut-response", afterBytes: 1024 }
        : { kind: "forward" },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/strongroom: error: .*(ECONNRESET|cannot reach s3|ended after)/);
    // Five attempts per range: the first and four resumed ones, then the error.
    expect(r.stderr).toContain("store read interrupted; resuming");
    expect(r.stderr).toMatch(/ attempt=4 /);
    expect(r.stderr).not.toMatch(/ attempt=5 /);
    const [row] = await sql<{ n: number }>(target.url, "select count(*)::int as n from pg_class where relname = 'big'");
    expect(row?.n).toBe(0);
  });
});

describe("boolean environment variables", () => {
  it("STRONGROOM_FORCE=0 does not overwrite an existing identity", async () => {
    const out = path.join(await tempDir(), "id.txt");
    expect((await runCli(["keygen", "--out", out])).code).toBe(0);
    const before = await readFile(out, "utf8");
    for (const value of ["0", "false", "no", "FALSE", ""]) {
      const r = await runCli(["keygen", "--out", out], { STRONGROOM_FORCE: value });
      expect(r.code, `STRONGROOM_FORCE=${value}`).toBe(1);
      expect(r.stderr).toContain(`identity file ${out} already exists`);
    }
    expect(await readFile(out, "utf8")).toBe(before);
  });

  it("refuses a boolean variable that is neither true nor false, as a usage error", async () => {
    const out = path.join(await tempDir(), "id.txt");
    const r = await runCli(["keygen", "--out", out], { STRONGROOM_FORCE: "maybe" });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('STRONGROOM_FORCE must be 1, true, yes, 0, false or no, got "maybe"');
    await expect(stat(out)).rejects.toThrow();
  });

  it("keygen --force keeps the replaced identity beside the new one", async () => {
    const dir = await tempDir();
    const out = path.join(dir, "id.txt");
    await runCli(["keygen", "--out", out]);
    const old = await readFile(out, "utf8");
    const r = await runCli(["keygen", "--out", out, "--json"], { STRONGROOM_FORCE: "yes" });
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout) as { recipient: string; previousIdentityFile: string };
    expect(result.previousIdentityFile).toMatch(/id\.txt\.bak-\d{8}T\d{6}Z$/);
    expect(await readFile(result.previousIdentityFile, "utf8")).toBe(old);
    const now = await readFile(out, "utf8");
    expect(now).not.toBe(old);
    expect(now).toContain(result.recipient);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    // No temp files are left behind.
    expect((await readdir(dir)).sort()).toEqual(["id.txt", path.basename(result.previousIdentityFile)].sort());
  });

  describe("on restore", () => {
    let store: StoreUnderTest;
    let key: Awaited<ReturnType<typeof identityFile>>;
    beforeAll(async () => {
      const source = await createDatabase(pgUrl, "envbool_src");
      await sql(source.url, "create table t(id int); insert into t select generate_series(1, 10)");
      store = await newStore("file");
      key = await identityFile();
      const r = await runCli(["backup", "--recipient", key.recipient], {
        DATABASE_URL: source.url,
        STRONGROOM_STORE: store.url,
      });
      expect(r.code).toBe(0);
    });

    it("STRONGROOM_CLEAN=false does not enable --clean", async () => {
      const target = await createDatabase(pgUrl, "envbool_t");
      await sql(target.url, "create table keep_me(x int); insert into keep_me values (42)");
      const r = await runCli(["restore", "--identity", key.file], {
        STRONGROOM_STORE: store.url,
        STRONGROOM_TARGET_URL: target.url,
        STRONGROOM_CLEAN: "false",
      });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("already holds 1 user objects");
      expect(await sql(target.url, "select x from keep_me")).toEqual([{ x: 42 }]);
    });

    it("parses STRONGROOM_NO_OWNER=0 and STRONGROOM_JSON=0 as off, and a command-line flag wins over its variable", async () => {
      const target = await createDatabase(pgUrl, "envbool_o");
      const r = await runCli(["restore", "--identity", key.file, "--json"], {
        STRONGROOM_STORE: store.url,
        STRONGROOM_TARGET_URL: target.url,
        STRONGROOM_NO_OWNER: "0",
        STRONGROOM_JSON: "0",
      });
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ tables: 1, rows: 10 });
    });
  });
});

describe("roles in a backup", () => {
  const tag = `${process.pid}_${Date.now() % 100000}`;
  const quoted = (name: string) => `"${name.replaceAll('"', '""')}"`;

  /** Backs up `setup`'s database, then drops it and `dropRoles`, as if restoring into a fresh cluster. */
  async function backupThenForget(setup: string, dropRoles: string[], beforeRestore = "select 1") {
    const src = await createDatabase(pgUrl, "roles_src");
    await sql(src.url, setup);
    const store = await newStore("file");
    const key = await identityFile();
    const r = await runCli(["backup", "--recipient", key.recipient], {
      DATABASE_URL: src.url,
      STRONGROOM_STORE: store.url,
    });
    expect(r.code, r.stderr).toBe(0);
    await sql(pgUrl, `drop database ${src.name}`);
    for (const role of dropRoles) await sql(pgUrl, `drop role ${quoted(role)}`);
    await sql(pgUrl, beforeRestore);
    const target = await createDatabase(pgUrl, "roles_t");
    const restored = await runCli(["restore", "--identity", key.file, "--json"], {
      STRONGROOM_STORE: store.url,
      STRONGROOM_TARGET_URL: target.url,
    });
    return { restored, target };
  }

  it("recreates a role whose setting holds a newline and SQL as that literal value, never as a statement", async () => {
    const evil = `evil_${tag}`;
    const pwned = `pwned_${tag}`;
    const odd = `we"ird\nname ✓ ${tag}`;
    const payload = `x\nCREATE ROLE ${pwned} SUPERUSER;--`;
    await sql(pgUrl, `create role ${evil} login connection limit 3`);
    await sql(pgUrl, `create role ${quoted(odd)}`);
    // Any login role may do this to itself.
    await sql(pgUrl, `alter role ${evil} set application_name = E'x\\nCREATE ROLE ${pwned} SUPERUSER;--'`);
    await sql(pgUrl, `alter role ${evil} set search_path = "we,ird", public`);
    await sql(pgUrl, `comment on role ${evil} is 'it''s; evil'`);
    await sql(pgUrl, `grant ${quoted(odd)} to ${evil}`);
    const { restored } = await backupThenForget(
      `create table t(id int); alter table t owner to ${evil};
       create table u(id int); alter table u owner to ${quoted(odd)}`,
      [evil, odd],
    );
    expect(restored.code, restored.stderr).toBe(0);
    expect((JSON.parse(restored.stdout) as { createdRoles: string[] }).createdRoles.sort()).toEqual([evil, odd].sort());
    expect(await sql(pgUrl, "select 1 from pg_roles where rolname = $1", [pwned])).toEqual([]);
    const [role] = await sql<{ settings: string[]; comment: string; connlimit: number; login: boolean }>(
      pgUrl,
      `select s.setconfig as settings, shobj_description(r.oid, 'pg_authid') as comment,
              r.rolconnlimit as connlimit, r.rolcanlogin as login
         from pg_roles r join pg_db_role_setting s on s.setrole = r.oid where r.rolname = $1`,
      [evil],
    );
    expect(role).toEqual({
      settings: [`application_name=${payload}`, 'search_path="we,ird", public'],
      comment: "it's; evil",
      connlimit: 3,
      login: true,
    });
    expect(
      await sql(
        pgUrl,
        `select r.rolname as role from pg_auth_members m join pg_roles r on r.oid = m.roleid
          join pg_roles u on u.oid = m.member where u.rolname = $1`,
        [evil],
      ),
    ).toEqual([{ role: odd }]);
  });

  it("never grants to or alters a role that already exists on the target", async () => {
    const kept = `kept_${tag}`;
    const fresh = `fresh_${tag}`;
    await sql(pgUrl, `create role ${kept}; create role ${fresh}; grant ${fresh} to ${kept}`);
    await sql(pgUrl, `alter role ${kept} set application_name = 'from the source'`);
    const { restored } = await backupThenForget(
      `create table t(id int); alter table t owner to ${fresh}; create table k(id int); alter table k owner to ${kept}`,
      [fresh],
      // Meanwhile the target's admin configured `kept` their own way.
      `alter role ${kept} set application_name = 'the target admin''s'`,
    );
    expect(restored.code, restored.stderr).toBe(0);
    expect((JSON.parse(restored.stdout) as { createdRoles: string[] }).createdRoles).toEqual([fresh]);
    const memberships = await sql(
      pgUrl,
      `select 1 from pg_auth_members m join pg_roles u on u.oid = m.member where u.rolname = $1`,
      [kept],
    );
    expect(memberships).toEqual([]);
    const [setting] = await sql<{ settings: string[] }>(
      pgUrl,
      "select s.setconfig as settings from pg_db_role_setting s join pg_roles r on r.oid = s.setrole where r.rolname = $1",
      [kept],
    );
    expect(setting?.settings).toEqual(["application_name=the target admin's"]);
  });
});

describe("servers with non-default settings", () => {
  const binDir = inject("pgBinDir");

  /** Backs `sourceUrl` up to a new file store and restores it into a new database; both must succeed. */
  async function backupAndRestore(
    sourceUrl: string,
    env: NodeJS.ProcessEnv = {},
    prepareTarget: (name: string) => Promise<unknown> = async () => undefined,
  ) {
    const store = await newStore("file");
    const key = await identityFile();
    const b = await runCli(["backup", "--recipient", key.recipient], {
      DATABASE_URL: sourceUrl,
      STRONGROOM_STORE: store.url,
      ...env,
    });
    expect(b.code, b.stderr).toBe(0);
    const target = await createDatabase(pgUrl, "roundtrip_t");
    await prepareTarget(target.name);
    const r = await runCli(["restore", "--identity", key.file, "--json"], {
      STRONGROOM_STORE: store.url,
      STRONGROOM_TARGET_URL: target.url,
      ...env,
    });
    expect(r.code, r.stderr).toBe(0);
    return { restored: JSON.parse(r.stdout) as Record<string, unknown>, target };
  }

  it("backs up and restores where idle, idle-in-transaction and statement timeouts are 1s", async () => {
    const timeouts = (db: string) =>
      ["idle_in_transaction_session_timeout", "idle_session_timeout", "statement_timeout"]
        .map((name) => `alter database ${db} set ${name} = '1s'`)
        .join("; ");
    const src = await createDatabase(pgUrl, "timeouts_src");
    await sql(src.url, "create table t(id int); insert into t select generate_series(1, 1000)");
    await sql(pgUrl, timeouts(src.name));
    // The tools take longer than the timeouts, while our own sessions wait on them.
    const wrapped = await wrappedBinDir(binDir, {
      pgDumpBody: '"$REAL" "$@"; status=$?; sleep 2; exit $status',
      pgRestoreBody: 'sleep 2; exec "$REAL" "$@"',
    });
    const { restored } = await backupAndRestore(src.url, { PG_BIN_DIRS: wrapped.dir }, (target) =>
      sql(pgUrl, timeouts(target)),
    );
    expect(restored).toMatchObject({ tables: 1, rows: 1000 });
  });

  it("verifies row counts of inheritance parents and children, each counting only its own rows", async () => {
    const src = await createDatabase(pgUrl, "inherit_src");
    await sql(
      src.url,
      `create table parent(id int, note text); create table child(extra int) inherits (parent);
       insert into parent select g, 'p' from generate_series(1, 30) g;
       insert into child select g, 'c', g from generate_series(1, 20) g;
       create table secret(id int); insert into secret select generate_series(1, 5);
       alter table secret enable row level security; alter table secret force row level security;
       create policy nobody on secret using (false)`,
    );
    const { restored } = await backupAndRestore(src.url);
    expect(restored).toMatchObject({ tables: 3, rows: 55 });
  });

  it("verifies an extension configuration table by the rows its extension dumps", async (ctx) => {
    const [share] = await sql<{ dir: string }>(pgUrl, "select setting as dir from pg_config where name = 'SHAREDIR'");
    const extDir = path.join(share?.dir as string, "extension");
    const name = "strongroom_test_config";
    try {
      await writeFile(
        path.join(extDir, `${name}.control`),
        "default_version = '1.0'\nrelocatable = false\nschema = public\n",
      );
      await writeFile(
        path.join(extDir, `${name}--1.0.sql`),
        `create table ${name}(id int primary key, standard boolean not null default false, v text);
         insert into ${name} values (1, true, 'shipped'), (2, true, 'shipped');
         select pg_catalog.pg_extension_config_dump('${name}', 'WHERE NOT standard');\n`,
      );
    } catch (err) {
      // Installing an extension needs write access to the server's share dir (root in CI).
      ctx.skip(`cannot install a test extension into ${extDir}: ${(err as Error).message}`);
    }
    const src = await createDatabase(pgUrl, "extcfg_src");
    await sql(src.url, `create extension ${name}; insert into ${name} values (3, false, 'mine')`);
    const { restored, target } = await backupAndRestore(src.url);
    expect(restored).toMatchObject({ tables: 1, rows: 1 });
    expect(await sql(target.url, `select id from ${name} order by id`)).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }]);
  });
});

describe("what a second writer to the store can make prune and backup do", () => {
  it("prune refuses a manifest copied into another backup's directory and deletes nothing", async () => {
    const store = await newStore("file");
    const now = Date.now();
    const live = await writeBackup(store.store, "shop", new Date(now - 3600_000));
    await writeBackup(store.store, "shop", new Date(now - 40 * 86_400_000));
    // A forged (or misplaced) manifest: the live backup's manifest, under an old backup id.
    const forgedId = newBackupId(new Date(now - 30 * 86_400_000));
    await store.store.putIfAbsent(
      objectKey("shop", forgedId, "manifest"),
      await getBytes(store.store, objectKey("shop", live, "manifest")),
    );
    const before = await allKeys(store.store, "shop/");
    const r = await runCli(
      ["prune", "--database-id", "shop", "--keep-daily", "1", "--keep-weekly", "0", "--keep-monthly", "0"],
      {
        STRONGROOM_STORE: store.url,
      },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`shop/backups/${forgedId}/manifest.json does not describe the backup at its location`);
    expect(await allKeys(store.store, "shop/")).toEqual(before);
  });

  it("refuses to add a backup of another database to a series, unless told the database moved", async () => {
    const store = await newStore("file");
    const key = await identityFile();
    const a = await createDatabase(pgUrl, "series_a");
    const b = await createDatabase(pgUrl, "series_b");
    const backupOf = (url: string, extra: string[] = []) =>
      runCli(["backup", "--recipient", key.recipient, "--database-id", "app", ...extra], {
        DATABASE_URL: url,
        STRONGROOM_STORE: store.url,
      });
    expect((await backupOf(a.url)).code).toBe(0);
    const refused = await backupOf(b.url);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      new RegExp(`the backups of app in this store come from system:\\d+/${a.name}, not from system:\\d+/${b.name}`),
    );
    expect(refused.stderr).toContain("HINT: pass --database-id to give this database its own series");
    expect(await committedBackups(store.store)).toBe(1);
    expect((await backupOf(b.url, ["--allow-source-change"])).code).toBe(0);
    expect(await committedBackups(store.store)).toBe(2);
  });

  it("never lets a planted manifest of another source stop a series' backups, with or without an audit log", async () => {
    const store = await newStore("file");
    const key = await identityFile();
    const ours = await createDatabase(pgUrl, "series_ours");
    const theirs = await createDatabase(pgUrl, "series_theirs");
    const backupOf = (url: string, s: string, extra: string[] = []) =>
      runCli(["backup", "--recipient", key.recipient, "--database-id", "app", ...extra], {
        DATABASE_URL: url,
        STRONGROOM_STORE: s,
      });
    expect((await backupOf(ours.url, store.url)).code).toBe(0);
    // The writer's own backup of another database, copied in under a later id: not committed.
    const other = await newStore("file");
    const planted = await backupOf(theirs.url, other.url, ["--audit", "none"]);
    expect(planted.code, planted.stderr).toBe(0);
    const id = planted.stdout.trim();
    await cp(
      path.join(fileURLToPath(other.url), "app", "backups", id),
      path.join(fileURLToPath(store.url), "app", "backups", id),
      { recursive: true },
    );
    const next = await backupOf(ours.url, store.url);
    expect(next.code, next.stderr).toBe(0);
    // A flow's task (--audit none) has no ledger to tell ours from theirs: it does not check.
    const task = await backupOf(ours.url, store.url, ["--audit", "none"]);
    expect(task.code, task.stderr).toBe(0);
  });
});

describe("what audit rows may say", () => {
  it("records a failed backup's error name only, never the message with schema or row data", async () => {
    const binDir = inject("pgBinDir");
    const src = await createDatabase(pgUrl, "auditleak");
    const wrapped = await wrappedBinDir(binDir, {
      pgDumpBody: `echo 'pg_dump: error: Dumping the contents of table "customers" failed' >&2
echo 'DETAIL: Key (email)=(alice@example.com) is duplicated.' >&2
exit 1`,
    });
    const store = await newStore("file");
    const key = await identityFile();
    const r = await runCli(["backup", "--recipient", key.recipient], {
      DATABASE_URL: src.url,
      STRONGROOM_STORE: store.url,
      PG_BIN_DIRS: wrapped.dir,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("alice@example.com");
    const rows = await readAll(new StoreAuditLog(store.store, `db#${src.name}`));
    expect(rows.map((row) => [row.event, row.details])).toEqual([
      ["backup.start", expect.anything()],
      ["backup.fail", { error: "DumpFailedError" }],
    ]);
    expect(JSON.stringify(rows)).not.toMatch(/alice|customers/);
  });
});

describe("restore options", () => {
  it("refuses --clean with --jobs > 1, which cannot roll back", async () => {
    const key = await identityFile();
    const r = await runCli(["restore", "--identity", key.file, "--clean", "--jobs", "2"], {
      STRONGROOM_STORE: "file:///nonexistent",
      STRONGROOM_TARGET_URL: "postgres://localhost/x",
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("strongroom: error: --clean cannot be combined with --jobs > 1");
  });
});

describe("put-if-absent under retries", () => {
  it("reports a manifest commit whose answer was lost as committed, after the SDK's retry meets it", async () => {
    const { store: direct, url } = await newStore("s3");
    let lost = 0;
    const proxy = await startS3Proxy(s3Endpoint, (req) =>
      req.method === "PUT" && req.headers["if-none-match"] === "*" && lost++ === 0
        ? { kind: "lose-response" }
        : { kind: "forward" },
    );
    try {
      const store = new S3Store(url, { client: new S3Client({ ...s3ClientConfigFromEnv(), endpoint: proxy.url }) });
      await expect(store.putIfAbsent("db/backups/x/manifest.json", "committed")).resolves.toMatchObject({ bytes: 9 });
      expect(proxy.requests.filter((r) => r.method === "PUT")).toHaveLength(2);
      await expect(store.putIfAbsent("db/backups/x/manifest.json", "another")).rejects.toThrow("object already exists");
      expect((await getBytes(direct, "db/backups/x/manifest.json")).toString()).toBe("committed");
    } finally {
      await proxy.close();
    }
  });
});

describe("audit verify", () => {
  const sources = new Map<string, string>();
  /** Backs up one database per id (a series has one source), the first time creating it. */
  async function backupInto(url: string, databaseId: string, extra: string[] = []) {
    const key = await identityFile();
    let dbUrl = sources.get(`${url} ${databaseId}`);
    if (!dbUrl) {
      const db = await createDatabase(pgUrl, "audit_v");
      await sql(db.url, "create table t as select g from generate_series(1, 10) g");
      dbUrl = db.url;
      sources.set(`${url} ${databaseId}`, dbUrl);
    }
    const r = await runCli(["backup", "--recipient", key.recipient, "--database-id", databaseId, ...extra], {
      DATABASE_URL: dbUrl,
      STRONGROOM_STORE: url,
    });
    expect(r.code, r.stderr).toBe(0);
    return r.stdout.trim();
  }

  it("with no scope, verifies every chain and fails a database whose backups have an empty chain", async () => {
    const { url } = await newStore("file");
    await backupInto(url, "recorded");
    await backupInto(url, "unrecorded", ["--audit", "none"]);
    const r = await runCli(["audit", "verify", "--json"], { STRONGROOM_STORE: url });
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      ok: false,
      chains: [
        { scope: "db#recorded", ok: true, rows: 2 },
        {
          scope: "db#unrecorded",
          ok: false,
          rows: 0,
          problems: ["the store holds 1 backup but the chain is empty"],
        },
      ],
    });
    expect(r.stderr).toContain(
      "strongroom: error: audit chain db#unrecorded: the store holds 1 backup but the chain is empty",
    );
  });

  it("detects rows deleted from the end of a chain, which the hash chain alone cannot", async () => {
    const store = await newStore("file");
    const url = store.url;
    await backupInto(url, "shop");
    const second = await backupInto(url, "shop");
    expect((await runCli(["audit", "verify"], { STRONGROOM_STORE: url })).code).toBe(0);
    // A second writer removes the newest two rows: the second backup's start and ok.
    const log = new StoreAuditLog(store.store, "db#shop");
    await store.store.delete(log.keyOf("000000000004"));
    await store.store.delete(log.keyOf("000000000003"));
    const r = await runCli(["audit", "verify"], { STRONGROOM_STORE: url });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(
      `backup ${second}: its backup.start row 000000000003 is beyond the chain's head 000000000002 (rows were deleted from the end)`,
    );
  });

  it("detects a committed backup deleted without prune, and a manifest changed after its commit", async () => {
    const store = await newStore("file");
    const url = store.url;
    const gone = await backupInto(url, "shop");
    const changed = await backupInto(url, "shop");
    await store.store.delete(objectKey("shop", gone, "manifest"));
    const key = objectKey("shop", changed, "manifest");
    const manifest = JSON.parse((await getBytes(store.store, key)).toString()) as { worker: { version: string } };
    manifest.worker.version = "tampered";
    await store.store.delete(key);
    await store.store.putIfAbsent(key, `${JSON.stringify(manifest, null, 2)}\n`);
    const r = await runCli(["audit", "verify", "--scope", "db#shop"], { STRONGROOM_STORE: url });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`backup ${changed}: its manifest changed since it was committed`);
    expect(r.stdout).toContain(`backup ${gone}: committed at row 000000000002, but its manifest is gone`);
  });

  it("names a row whose seq is not 12 digits instead of skipping the gap check", () => {
    const first = nextRow(undefined, { at: "2026-11-21T00:00:00Z", event: "probe.ok", actor: "t" });
    const { hash: _h, ...rest } = { ...first, seq: "1e1" };
    const forged = { ...rest, hash: rowHash(rest) };
    expect(verifyChain([forged])).toMatchObject({ ok: false, firstBad: { problem: "malformed" } });
  });
});

describe("a dump replaced by a second writer", () => {
  let key: Awaited<ReturnType<typeof identityFile>>;
  let table: string;
  let store: StoreUnderTest;
  let backupId: string;
  let databaseId: string;
  /** Another valid backup's dump, encrypted to the same (public) recipient. */
  let intruder: { bytes: Buffer; entry: Record<string, unknown> };

  beforeAll(async () => {
    key = await identityFile();
    table = await createTable(dynamoClient(), "audit");
    const good = await createDatabase(pgUrl, "replaced_good");
    await sql(good.url, "create table accounts(id int primary key, balance int); insert into accounts values (1, 100)");
    databaseId = good.name;
    store = await newStore("file");
    const b = await runCli(["backup", "--recipient", key.recipient, "--audit-table", table], {
      DATABASE_URL: good.url,
      STRONGROOM_STORE: store.url,
    });
    expect(b.code, b.stderr).toBe(0);
    backupId = b.stdout.trim();

    const evil = await createDatabase(pgUrl, "replaced_evil");
    await sql(evil.url, "create table planted(x text); insert into planted values ('the intruder was here')");
    const other = await newStore("file");
    const e = await runCli(["backup", "--recipient", key.recipient, "--json"], {
      DATABASE_URL: evil.url,
      STRONGROOM_STORE: other.url,
    });
    const evilManifest = JSON.parse(e.stdout) as Manifest;
    const entry = evilManifest.objects.find((o) => o.role === "dump") as unknown as Record<string, unknown>;
    intruder = { bytes: await getBytes(other.store, entry.key as string), entry };
  });

  /** A copy of the store whose dump is the intruder's and whose manifest is edited by `edit`. */
  async function tampered(edit: (dump: Record<string, unknown>) => void): Promise<StoreUnderTest> {
    const copy = await newStore("file");
    await cp(fileURLToPath(store.url), fileURLToPath(copy.url), { recursive: true });
    const dumpKey = objectKey(databaseId, backupId, "dump");
    await copy.store.delete(dumpKey);
    await copy.store.putIfAbsent(dumpKey, intruder.bytes);
    const manifestKey = objectKey(databaseId, backupId, "manifest");
    const manifest = JSON.parse((await getBytes(copy.store, manifestKey)).toString()) as Manifest;
    edit(manifest.objects.find((o) => o.role === "dump") as unknown as Record<string, unknown>);
    await copy.store.delete(manifestKey);
    await copy.store.putIfAbsent(manifestKey, serializeManifest(manifest));
    return copy;
  }

  it("is refused before the target is touched when the manifest no longer matches its backup.ok row", async () => {
    const copy = await tampered((dump) => {
      for (const field of ["plainBytes", "storedBytes", "plainSha256", "storedSha256"])
        dump[field] = intruder.entry[field];
    });
    const target = await createDatabase(pgUrl, "replaced_t1");
    const r = await runCli(["restore", "--identity", key.file, "--audit-table", table], {
      STRONGROOM_STORE: copy.url,
      STRONGROOM_TARGET_URL: target.url,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`backup ${backupId}: its manifest is not the one committed`);
    expect(r.stderr).toContain("[UncommittedBackupError]");
    expect(await sql(target.url, "select count(*)::int as n from pg_tables where schemaname = 'public'")).toEqual([
      { n: 0 },
    ]);
  });

  it("is never committed by pg_restore when only its stored digest gives it away", async () => {
    // Sizes edited to match, digest left as committed: only the hash of the stored bytes can tell.
    const copy = await tampered((dump) => {
      dump.plainBytes = intruder.entry.plainBytes;
      dump.storedBytes = intruder.entry.storedBytes;
    });
    const target = await createDatabase(pgUrl, "replaced_t2");
    // A pg_restore that our kill cannot reach (SIGTERM ignored, as exec inherits): only
    // input that never ends keeps it from committing what it was fed.
    const wrapped = await wrappedBinDir(inject("pgBinDir"), { pgRestoreBody: `trap '' TERM; exec "$REAL" "$@"` });
    // Without an audit log (--trust-store): the stream's own checks must hold alone.
    const r = await runCli(["restore", "--identity", key.file, "--audit", "none", "--trust-store"], {
      STRONGROOM_STORE: copy.url,
      STRONGROOM_TARGET_URL: target.url,
      PG_BIN_DIRS: wrapped.dir,
    });
    expect(r.code).toBe(1);
    // Caught at its age header now (docs/formats.md, storedHeadSha256), before a byte is decrypted.
    expect(r.stderr).toMatch(/dump\.pgc\.zst\.age: the age header is not the one committed/);
    expect(await sql(target.url, "select count(*)::int as n from pg_tables where schemaname = 'public'")).toEqual([
      { n: 0 },
    ]);
  });
});

describe("gc", () => {
  const DAY = 86_400_000;
  /** Sets a file store object's mtime, as if written `ageMs` ago. */
  const age = (store: StoreUnderTest, key: string, ageMs: number) => {
    const when = new Date(Date.now() - ageMs);
    return utimes(path.join(fileURLToPath(store.url), key), when, when);
  };

  it("removes old partial files and payloads without a manifest, auditing each, and never a backup", async () => {
    const store = await newStore("file");
    const committed = await writeBackup(store.store, "shop", new Date(Date.now() - 3 * DAY));
    for (const role of ["dump", "roles", "stats", "manifest"] as const)
      await age(store, objectKey("shop", committed, role), 3 * DAY);
    // A backup that failed after uploading its dump, two days ago, and one still being written.
    const failed = newBackupId(new Date(Date.now() - 2 * DAY));
    await store.store.putIfAbsent(objectKey("shop", failed, "dump"), "payload");
    await age(store, objectKey("shop", failed, "dump"), 2 * DAY);
    const running = newBackupId(new Date());
    await store.store.putIfAbsent(objectKey("shop", running, "dump"), "payload");
    // A partial file a crash left behind.
    const partials = path.join(fileURLToPath(store.url), ".strongroom-partial");
    await writeFile(path.join(partials, "crashed"), "half a dump");
    await age(store, ".strongroom-partial/crashed", 2 * DAY);

    const dry = await runCli(["gc", "--dry-run", "--json"], { STRONGROOM_STORE: store.url });
    expect(JSON.parse(dry.stdout)).toMatchObject({
      dryRun: true,
      partials: 1,
      orphans: [{ databaseId: "shop", backupId: failed, objects: 1 }],
    });
    expect(await allKeys(store.store, `shop/backups/${failed}/`)).toHaveLength(1);

    const r = await runCli(["gc"], { STRONGROOM_STORE: store.url });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`removed shop/backups/${failed}/ (1 objects, no manifest)`);
    expect(await allKeys(store.store, `shop/backups/${failed}/`)).toEqual([]);
    expect(await allKeys(store.store, `shop/backups/${running}/`)).toHaveLength(1);
    expect(await allKeys(store.store, `shop/backups/${committed}/`)).toHaveLength(4);
    expect(await readdir(partials)).toEqual([]);
    const rows = await readAll(new StoreAuditLog(store.store, "db#shop"));
    expect(rows.filter((row) => row.event !== "backup.ok").map((row) => [row.event, row.backupId])).toEqual([
      ["gc.delete", failed],
    ]);
    expect((await readAll(new StoreAuditLog(store.store, "org"))).map((row) => row.details)).toEqual([
      { partials: 1, bytes: 11 },
    ]);
  });

  it("aborts multipart uploads older than the grace period in an S3 store", async () => {
    const store = await newStore("s3");
    const s3 = new S3Client(s3ClientConfigFromEnv());
    const { bucket, prefix } = store.store as S3Store;
    await s3.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: `${prefix}shop/backups/x/dump.pgc.zst.age` }),
    );
    expect(await store.openUploads()).toBe(1);
    // moto stamps uploads with the current time: a grace period of 1h keeps it, so check
    // the plan against a clock two hours ahead.
    const plan = await planGc(store.store, { now: new Date(Date.now() + 2 * 3600_000), graceMs: 3600_000 });
    expect(plan.partials).toHaveLength(1);
    await executeGc(
      store.store,
      plan,
      () => undefined,
      "test",
      () => new Date(),
    );
    expect(await store.openUploads()).toBe(0);
  });

  it("refuses a grace period under an hour, which could catch a backup being written", async () => {
    const store = await newStore("file");
    const r = await runCli(["gc", "--older-than", "10m"], { STRONGROOM_STORE: store.url });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("the grace period must be at least 1h");
  });
});

describe("how failures are printed", () => {
  it("prints a filesystem refusal as one line with a stable name and a hint, the stack only at debug", async () => {
    const key = await identityFile();
    const db = await createDatabase(pgUrl, "printed");
    // /sys refuses new directories even to root, as a read-only or foreign mount would.
    const env = { DATABASE_URL: db.url, STRONGROOM_STORE: "file:///sys/strongroom-store" };
    const r = await runCli(["backup", "--recipient", key.recipient], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^strongroom: error: permission denied in the file store at \/sys\/strongroom-store \(EPERM\) \[AccessDeniedError\]$/m,
    );
    expect(r.stderr).toContain("HINT: check that the directory is on a writable filesystem");
    expect(r.stderr).not.toMatch(/^\s+at /m);
    const debug = await runCli(["--log-level", "debug", "backup", "--recipient", key.recipient], env);
    expect(debug.stderr).toMatch(/^\s+at .*file-store\.ts/m);
  });

  it("joins a tool's multi-line error output into the one error line", async () => {
    const binDir = inject("pgBinDir");
    const db = await createDatabase(pgUrl, "printed_ml");
    const wrapped = await wrappedBinDir(binDir, {
      pgDumpBody: "echo 'pg_dump: error: query failed' >&2\necho 'DETAIL: something specific' >&2\nexit 1",
    });
    const key = await identityFile();
    const store = await newStore("file");
    const r = await runCli(["backup", "--recipient", key.recipient], {
      DATABASE_URL: db.url,
      STRONGROOM_STORE: store.url,
      PG_BIN_DIRS: wrapped.dir,
    });
    expect(r.stderr).toMatch(
      /^strongroom: error: pg_dump exited 1: pg_dump: error: query failed \| DETAIL: something specific \[DumpFailedError\]$/m,
    );
  });
});
