import { randomBytes, randomUUID } from "node:crypto";
import { chmod, chown, mkdir, readdir, readFile, stat, unlink, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, inject, it } from "vitest";
import { serverUser, startCluster } from "#worker/pg/scratch-cluster.ts";
import { keyPair } from "../helpers/age.ts";
import { runCli } from "../helpers/cli.ts";
import { createDatabase, dbUrl, sql } from "../helpers/pg.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * A dump is code as well as data: restoring one runs what the backed-up database's roles
 * wrote (CHECK constraints, domain checks and generated columns during COPY, index
 * expressions, materialized views, event triggers), and a superuser's code can run any
 * program. These tests plant such code in a source database, back it up, and let
 * `verify` and `restore` run it, the way a hostile or careless role would: it dumps
 * everything it can reach into files, and the tests look there for the worker's secrets.
 */
const pgUrl = inject("pgUrl");
const root = process.getuid?.() === 0;
const hex = (bytes: number) => randomBytes(bytes).toString("hex");

/** The server's OS user: `postgres` when we are root, else ourselves. */
async function serverOwner(): Promise<{ uid: number; gid: number }> {
  return (await serverUser()) ?? { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
}

/**
 * A directory laid out as a careful operator's host would be: searchable by every user
 * (as /var/backups or /etc are), with the identity file as keygen writes it (0600), the
 * file store created by `backup` itself, a scratch dir, and `out`, where the planted code
 * writes what it found (owned by the server's user, so that it can).
 */
async function host(): Promise<{
  dir: string;
  out: string;
  scratch: string;
  store: string;
  storeUrl: string;
  identityFile: string;
  spy: string;
  key: { identity: string; recipient: string };
}> {
  const dir = await tempDir("strongroom-isolation-");
  await chmod(dir, 0o755);
  const owner = await serverOwner();
  const out = path.join(dir, "out");
  await mkdir(out, { mode: 0o700 });
  await chown(out, owner.uid, owner.gid);
  const scratch = path.join(dir, "scratch");
  await mkdir(scratch, { mode: 0o755 });
  const key = await keyPair();
  const identityFile = path.join(dir, "identity.txt");
  await writeFile(identityFile, `${key.identity}\n`, { mode: 0o600 });
  const store = path.join(dir, "store");
  // What the code takes: the environment it was given, the environment of every
  // process above it (the worker among them) and their children (pg_restore), the
  // identity file, and whatever of the store it can list or read.
  const spy = path.join(dir, "spy.sh");
  await writeFile(
    spy,
    `#!/bin/sh
out="${out}/$1.$$"
{
  echo "== id"; id
  echo "== env"; env
  echo "== environ of the ancestors and their children"
  pid=$$
  while [ "$pid" -gt 1 ]; do
    for p in $pid $(pgrep -P "$pid"); do echo "-- $p"; tr '\\0' '\\n' < /proc/$p/environ; done
    pid=$(awk '/^PPid:/ { print $2 }' /proc/$pid/status)
  done
  echo "== identity"; cat "${identityFile}"
  echo "== store"; ls -laR "${store}"; find "${store}" -type f -exec cat {} +
} > "$out" 2>&1
exit 0
`,
    { mode: 0o755 },
  );
  return { dir, out, scratch, store, storeUrl: pathToFileURL(store).href, identityFile, spy, key };
}

/** The worker's secrets, as its environment holds them in a Fargate task. */
function secretEnv(identity: string): Record<string, string> {
  return {
    STRONGROOM_IDENTITY: identity,
    AWS_ACCESS_KEY_ID: `AKIA${hex(8).toUpperCase()}`,
    AWS_SECRET_ACCESS_KEY: hex(20),
    AWS_SESSION_TOKEN: hex(32),
    AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: `/v2/credentials/${randomUUID()}`,
  };
}

/**
 * Planted code, in every carrier that runs during a restore or a verify. `public.spy`
 * runs the spy script, but only in a restored copy (in its own database it does nothing,
 * so that the source can hold the rows). Checks, domains and generated columns are
 * written by an ordinary role; index expressions and materialized views run as their
 * owner, and event triggers need a superuser, so those are the source superuser's.
 */
function plantedCarriers(database: string, tenant: string, spy: string): string {
  return `
    create role ${tenant};
    grant create on schema public to ${tenant};
    set role ${tenant};
    create function public.spy(tag text) returns boolean language plpgsql as $f$
    begin
      if pg_catalog.current_database() <> ${pgLiteral(database)} then
        execute pg_catalog.format('copy (select 1) to program %L', ${pgLiteral(spy)} || ' ' || tag);
      end if;
      return true;
    end $f$;
    create function public.spy_immutable(tag text) returns boolean language plpgsql immutable
      as $f$ begin return public.spy(tag); end $f$;
    create table public.checked(note text check (public.spy('check')));
    insert into public.checked values ('a');
    create domain public.watched as text check (public.spy('domain'));
    create table public.typed(v public.watched);
    insert into public.typed values ('a');
    create table public.computed(v int, g boolean generated always as (public.spy_immutable('generated')) stored);
    insert into public.computed(v) values (1);
    create table public.defaulted(v int, d boolean default public.spy('default'));
    insert into public.defaulted(v) values (1);
    create function public.spy_trigger() returns trigger language plpgsql
      as $f$ begin perform public.spy('trigger'); return new; end $f$;
    create table public.triggered(v int);
    insert into public.triggered values (1);
    create trigger spy before insert on public.triggered for each row execute function public.spy_trigger();
    reset role;
    create table public.indexed(v int);
    insert into public.indexed values (1);
    create index on public.indexed ((public.spy_immutable('index')));
    create materialized view public.viewed as select public.spy('matview') as ok;
    create function public.spy_ddl() returns event_trigger language plpgsql
      as $f$ begin perform public.spy('event'); end $f$;
    create event trigger spy_ddl on ddl_command_start execute function public.spy_ddl();`;
}

const pgLiteral = (s: string) => `'${s.replaceAll("'", "''")}'`;

/** What the planted code wrote, by carrier (check, domain, …): one file per run. */
async function spied(out: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  for (const file of (await readdir(out)).sort()) {
    const tag = file.split(".")[0] as string;
    found.set(tag, (found.get(tag) ?? "") + (await readFile(path.join(out, file), "utf8")));
  }
  return found;
}

/** `carrier: SECRET_NAME` for each secret that turns up in what a carrier wrote. */
function leaks(found: Map<string, string>, secrets: Record<string, string>): string[] {
  return [...found].flatMap(([tag, text]) =>
    Object.entries(secrets)
      .filter(([, value]) => text.includes(value))
      .map(([name]) => `${tag}: ${name}`),
  );
}

describe("code in a dump cannot reach the worker's secrets", () => {
  it.skipIf(!root)(
    "verify runs the dump's code (CHECK and domain checks, generated columns, index expressions, materialized views, event triggers) where it can read none of the identity, the AWS credentials or the store",
    async () => {
      const h = await host();
      const db = await createDatabase(pgUrl, "planted");
      await sql(db.url, plantedCarriers(db.name, `tenant_${hex(4)}`, h.spy));
      const backedUp = await runCli(["backup", "--recipient", h.key.recipient, "--database-id", "planted"], {
        DATABASE_URL: db.url,
        STRONGROOM_STORE: h.storeUrl,
      });
      expect(backedUp.code, backedUp.stderr).toBe(0);
      const backupId = backedUp.stdout.trim();

      // The identity comes in the environment, as ECS injects it; the file is on disk too.
      const secrets = secretEnv(h.key.identity);
      const r = await runCli(["verify", "--deep", "--scratch-dir", h.scratch, "--json"], {
        STRONGROOM_STORE: h.storeUrl,
        ...secrets,
      });
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).scratch).toMatchObject({ kind: "auto", isolation: "separate-user" });

      const found = await spied(h.out);
      // Defaults and triggers do not run in a restore (COPY gives every column, triggers
      // come after the data). Each of the others ran as superuser and took what it could:
      // the event trigger already in pg_restore (it refreshes materialized views after
      // creating event triggers), and again on --deep's CREATE EXTENSION amcheck.
      expect([...found.keys()].sort()).toEqual(["check", "domain", "event", "generated", "index", "matview"]);
      for (const text of found.values()) expect(text).toMatch(/== id\nuid=\d+\(postgres\)/);
      expect(leaks(found, { ...secrets, "a backup id (listing the store)": backupId })).toEqual([]);
    },
  );

  it("starts a scratch server with only the allowlisted environment, whatever the worker's holds", async () => {
    const before = process.env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI;
    process.env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI = `/v2/credentials/${randomUUID()}`;
    const parentDir = await tempDir("strongroom-scratch-");
    await chmod(parentDir, 0o755);
    let cluster: Awaited<ReturnType<typeof startCluster>> | undefined;
    try {
      cluster = await startCluster(undefined, "isolated", { parentDir });
    } finally {
      if (before === undefined) delete process.env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI;
      else process.env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI = before;
    }
    try {
      const pid = (await readFile(path.join(cluster.dir, "data", "postmaster.pid"), "utf8")).split("\n")[0];
      const environ = (await readFile(`/proc/${pid}/environ`, "utf8")).split("\0").filter((v) => v !== "");
      // Names first: a failure must not print the values of whatever did get through.
      expect(environ.map((v) => v.split("=")[0]).sort()).toEqual(["LC_ALL", "PATH", ...(process.env.TZ ? ["TZ"] : [])]);
      expect(environ.sort()).toEqual([
        "LC_ALL=C",
        "PATH=/usr/bin:/bin",
        ...(process.env.TZ ? [`TZ=${process.env.TZ}`] : []),
      ]);
      expect((await stat(`/proc/${pid}`)).uid).toBe((await serverOwner()).uid);
      expect(cluster.separateUser).toBe(root);
    } finally {
      await cluster.stop();
    }
  });

  it.skipIf(!root)(
    "as a non-root user, verify still verifies but says, in its log and its --json result, that the dump's code runs as that same user and can read its environment, and points at --scratch URL",
    async () => {
      const h = await host();
      const db = await createDatabase(pgUrl, "sameuser");
      await sql(db.url, plantedCarriers(db.name, `tenant_${hex(4)}`, h.spy));
      const backedUp = await runCli(["backup", "--recipient", h.key.recipient, "--database-id", "sameuser"], {
        DATABASE_URL: db.url,
        STRONGROOM_STORE: h.storeUrl,
      });
      expect(backedUp.code, backedUp.stderr).toBe(0);
      // The worker, its store and its scratch dir are postgres's: the server can be no one else.
      const user = await serverOwner();
      for (const p of [h.dir, h.scratch, h.identityFile]) await chown(p, user.uid, user.gid);
      await chownTree(h.store, user);
      const secrets = secretEnv(h.key.identity);
      const r = await runCli(
        ["verify", "--scratch-dir", h.scratch, "--json"],
        { STRONGROOM_STORE: h.storeUrl, HOME: h.dir, ...secrets },
        { user },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, scratch: { kind: "auto", isolation: "same-user" } });
      expect(r.stderr).toMatch(
        /warn: the scratch server runs as the same OS user as strongroom \(postgres\): code in the backup .* can read this process's environment .*pass --scratch URL/,
      );
      // The warning is true: the planted code read the worker's environment through /proc.
      const found = await spied(h.out);
      expect(leaks(found, { AWS_SECRET_ACCESS_KEY: secrets.AWS_SECRET_ACCESS_KEY as string })).toContain(
        "check: AWS_SECRET_ACCESS_KEY",
      );
    },
  );
});

async function chownTree(dir: string, user: { uid: number; gid: number }): Promise<void> {
  await chown(dir, user.uid, user.gid);
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    await chown(path.join(entry.parentPath, entry.name), user.uid, user.gid);
  }
}

describe("verify --checks", () => {
  it("runs the checks as a login role that may only read: COPY … TO PROGRAM and pg_read_file fail the user-sql check and run nothing, on an auto cluster and on --scratch URL", async () => {
    const h = await host();
    const db = await createDatabase(pgUrl, "checked");
    await sql(db.url, "create table public.notes as select g from generate_series(1, 3) g");
    const backedUp = await runCli(["backup", "--recipient", h.key.recipient, "--database-id", "checked"], {
      DATABASE_URL: db.url,
      STRONGROOM_STORE: h.storeUrl,
    });
    expect(backedUp.code, backedUp.stderr).toBe(0);
    const marker = path.join(h.out, "copied");
    const checks = path.join(h.dir, "checks.sql");
    await writeFile(
      checks,
      `select count(*) = 3 from public.notes;\ncopy (select 1) to program 'touch ${marker}';\nselect length(pg_read_file('/etc/passwd')) > 0;\n`,
    );
    for (const scratch of [
      ["--scratch-dir", h.scratch],
      ["--scratch", dbUrl(pgUrl, "postgres")],
    ]) {
      const r = await runCli(["verify", "--identity", h.identityFile, "--checks", checks, ...scratch, "--json"], {
        STRONGROOM_STORE: h.storeUrl,
      });
      expect(r.code, r.stderr).toBe(1);
      const result = JSON.parse(r.stdout) as { checks: Array<{ name: string; ok: boolean; detail: string }> };
      expect(result.checks.filter((c) => !c.ok).map((c) => c.name)).toEqual(["user-sql"]);
      const detail = result.checks.find((c) => c.name === "user-sql")?.detail ?? "";
      expect(detail).not.toContain(`${checks}:1 `);
      expect(detail).toMatch(new RegExp(`${checks}:2 \\(copy .*\\) failed: .*to or from an external program`));
      expect(detail).toContain(
        `${checks}:3 (select length(pg_read_file('/etc/passwd')) > 0) failed: permission denied`,
      );
      await expect(stat(marker)).rejects.toThrow(/ENOENT/);
    }
    // The role the checks ran as is gone from the server it was made on.
    const left = await sql(pgUrl, "select rolname from pg_roles where rolname like 'strongroom_check%'");
    expect(left).toEqual([]);
  });
});

describe("restore --role", () => {
  /** A backup whose CHECK runs `body` in a restored copy, and a marker file it may touch. */
  async function armedBackup(name: string, body: (marker: string) => string) {
    const h = await host();
    const marker = path.join(h.out, "ran");
    const db = await createDatabase(pgUrl, name);
    await sql(
      db.url,
      `create function public.armed() returns boolean language plpgsql as $f$
       begin
         if pg_catalog.current_database() <> ${pgLiteral(db.name)} then ${body(marker)} end if;
         return true;
       end $f$;
       create table public.checked(note text check (public.armed()));
       insert into public.checked values ('a'), ('b');`,
    );
    const r = await runCli(["backup", "--recipient", h.key.recipient, "--database-id", name], {
      DATABASE_URL: db.url,
      STRONGROOM_STORE: h.storeUrl,
    });
    expect(r.code, r.stderr).toBe(0);
    return { h, marker };
  }

  /** A role that is no superuser (logging in with `password`, if given), and an empty database it owns. */
  async function ownedTarget(role: string, password?: string): Promise<{ name: string; url: string }> {
    await sql(pgUrl, `create role ${role} ${password ? `login password ${pgLiteral(password)}` : ""}`);
    const target = await createDatabase(pgUrl, "restored");
    await sql(pgUrl, `alter database ${target.name} owner to ${role}`);
    return target;
  }

  const copyToProgram = (marker: string) =>
    `execute pg_catalog.format('copy (select 1) to program %L', 'touch ${marker}');`;

  it("runs the dump as that role: without it the dump's code runs as the superuser connecting; with a role owning the target, code that needs superuser fails the restore instead", async () => {
    const { h, marker } = await armedBackup("armed", copyToProgram);
    const env = { STRONGROOM_STORE: h.storeUrl };

    // As the superuser connecting, the CHECK runs a program.
    const asSuperuser = await createDatabase(pgUrl, "restored");
    const plain = await runCli(["restore", "--identity", h.identityFile], {
      ...env,
      STRONGROOM_TARGET_URL: asSuperuser.url,
    });
    expect(plain.code, plain.stderr).toBe(0);
    expect((await stat(marker)).isFile()).toBe(true);
    await unlink(marker);

    // As a role that owns the target, the same code is refused and nothing is committed.
    const role = `restorer_${hex(4)}`;
    const target = await ownedTarget(role);
    const refused = await runCli(["restore", "--identity", h.identityFile, "--role", role, "--no-owner"], {
      ...env,
      STRONGROOM_TARGET_URL: target.url,
    });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/pg_restore exited 1: .*to or from an external program.*\[RestoreFailedError\]/s);
    await expect(stat(marker)).rejects.toThrow(/ENOENT/);
    expect(await sql(target.url, "select relname from pg_class where relname = 'checked'")).toEqual([]);

    // A dump that needs no more than the role has restores, owned by it (STRONGROOM_RESTORE_ROLE).
    const plainDb = await createDatabase(pgUrl, "benign");
    await sql(plainDb.url, "create table public.notes as select g from generate_series(1, 5) g");
    const benign = await runCli(["backup", "--recipient", h.key.recipient, "--database-id", "benign"], {
      DATABASE_URL: plainDb.url,
      ...env,
    });
    expect(benign.code, benign.stderr).toBe(0);
    const owner = `restorer_${hex(4)}`;
    const second = await ownedTarget(owner);
    const ok = await runCli(["restore", "--identity", h.identityFile, "--database-id", "benign", "--no-owner"], {
      ...env,
      STRONGROOM_TARGET_URL: second.url,
      STRONGROOM_RESTORE_ROLE: owner,
    });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain("1 table, 5 rows, counts verified");
    expect(await sql(second.url, "select tableowner from pg_tables where tablename = 'notes'")).toEqual([
      { tableowner: owner },
    ]);
  });

  it("is no wall against code that resets its role (the superuser connecting is a RESET ROLE away); connecting as the less privileged role is", async () => {
    const { h, marker } = await armedBackup("escaping", (m) => `execute 'reset role'; ${copyToProgram(m)}`);
    const env = { STRONGROOM_STORE: h.storeUrl };
    const role = `restorer_${hex(4)}`;
    const password = hex(12);
    const target = await ownedTarget(role, password);

    const escaped = await runCli(["restore", "--identity", h.identityFile, "--role", role, "--no-owner"], {
      ...env,
      STRONGROOM_TARGET_URL: target.url,
    });
    expect(escaped.code, escaped.stderr).toBe(0);
    expect((await stat(marker)).isFile()).toBe(true);

    const asRole = await createDatabase(pgUrl, "restored");
    await sql(pgUrl, `alter database ${asRole.name} owner to ${role}`);
    await unlink(marker);
    const refused = await runCli(["restore", "--identity", h.identityFile, "--no-owner"], {
      ...env,
      STRONGROOM_TARGET_URL: dbUrl(pgUrl, asRole.name, role, password),
    });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/to or from an external program.*\[RestoreFailedError\]/s);
    await expect(stat(marker)).rejects.toThrow(/ENOENT/);
  });
});
