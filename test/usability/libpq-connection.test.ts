import { chmod, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, inject, it } from "vitest";
import { runCli } from "../helpers/cli.ts";
import { identityFile, newStore } from "../helpers/fixture.ts";
import { createDatabase, dbUrl, sql } from "../helpers/pg.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * Usability item 3: strongroom connects as libpq does, and so do the tools it runs
 * (pg_dump, pg_restore), whichever way the password is given.
 */

/** None of the runner's own libpq settings leak into a case. */
const CLEAN: NodeJS.ProcessEnv = {
  PGPASSWORD: undefined,
  PGPASSFILE: undefined,
  PGSERVICE: undefined,
  PGSERVICEFILE: undefined,
  PGHOST: undefined,
  PGPORT: undefined,
  PGUSER: undefined,
  PGDATABASE: undefined,
};

interface Way {
  /** Environment for the whole case, and the --db / --target URLs. */
  setup(home: string, source: string, target: string): Promise<{ env: NodeJS.ProcessEnv; db: string; to: string }>;
}

function withoutPassword(url: string): string {
  const u = new URL(url);
  u.password = "";
  return u.toString();
}

const server = () => new URL(inject("pgUrl"));
const password = () => decodeURIComponent(server().password);

const WAYS: Record<string, Way> = {
  "a password in the URL": {
    setup: async (home, db, to) => ({ env: { HOME: home }, db, to }),
  },
  PGPASSWORD: {
    setup: async (home, db, to) => ({
      env: { HOME: home, PGPASSWORD: password() },
      db: withoutPassword(db),
      to: withoutPassword(to),
    }),
  },
  "~/.pgpass": {
    setup: async (home, db, to) => {
      const file = path.join(home, ".pgpass");
      // A comment, a line for another port, and an escaped colon in a field that cannot match.
      await writeFile(
        file,
        `# strongroom test\n127.0.0.1:1:*:postgres:wrong\nx\\:y:*:*:*:wrong\n127.0.0.1:${server().port}:*:postgres:${password()}\n`,
        { mode: 0o600 },
      );
      return { env: { HOME: home }, db: withoutPassword(db), to: withoutPassword(to) };
    },
  },
  "PGSERVICE and pg_service.conf": {
    setup: async (home, db, to) => {
      const file = path.join(home, "services.conf");
      // The service's host is wrong on purpose: the URL's host must win, for strongroom's
      // session and for the child tools alike (libpq would let a PGSERVICE override PGHOST).
      await writeFile(
        file,
        `[other]\nhost=nowhere.invalid\n\n[strongroom_test]\n# the cluster's superuser\nhost=nowhere.invalid\nuser=postgres\npassword=${password()}\n`,
        { mode: 0o600 },
      );
      const hostOnly = (url: string) => {
        const u = new URL(url);
        return `postgres://${u.host}${u.pathname}`;
      };
      return {
        env: { HOME: home, PGSERVICEFILE: file, PGSERVICE: "strongroom_test" },
        db: hostOnly(db),
        to: `${hostOnly(to)}?service=strongroom_test`,
      };
    },
  },
};

describe("connecting like libpq", () => {
  it.each(Object.keys(WAYS))(
    "backs up and restores with %s (its own session, pg_dump and pg_restore alike)",
    async (way) => {
      const source = await createDatabase(inject("pgUrl"), "libpq");
      await sql(source.url, "create table t as select g from generate_series(1, 100) g");
      const target = await createDatabase(inject("pgUrl"), "libpq_target");
      const home = await tempDir("strongroom-home-");
      const { env, db, to } = await (WAYS[way] as Way).setup(home, source.url, target.url);
      const store = await newStore("file");
      const key = await identityFile();
      const base = { ...CLEAN, ...env, STRONGROOM_STORE: store.url };

      const backup = await runCli(["backup", "--recipient", key.recipient, "--database-id", "libpq"], {
        ...base,
        DATABASE_URL: db,
      });
      expect(backup.stderr).not.toMatch(/no password|fe_sendauth|deprecated/);
      expect(backup.code).toBe(0);
      const restore = await runCli(["restore", "--identity", key.file, "--database-id", "libpq"], {
        ...base,
        STRONGROOM_TARGET_URL: to,
      });
      expect(restore.stderr).not.toMatch(/no password|fe_sendauth|deprecated/);
      expect(restore.code).toBe(0);
      expect(restore.stdout).toMatch(/1 table, 100 rows, counts verified/);
      expect(await sql(target.url, "select count(*)::int as n from t")).toEqual([{ n: 100 }]);
    },
  );

  it("says no password was supplied, and where to put one, when the server asks and none is given", async () => {
    const home = await tempDir("strongroom-home-");
    const store = await newStore("file");
    const key = await identityFile();
    const r = await runCli(["backup", "--recipient", key.recipient], {
      ...CLEAN,
      HOME: home,
      DATABASE_URL: withoutPassword(dbUrl(inject("pgUrl"), "postgres")),
      STRONGROOM_STORE: store.url,
    });
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/no password was supplied for postgres@127\.0\.0\.1:\d+\/postgres/);
    expect(r.stderr).toMatch(/HINT: set PGPASSWORD, ~\/\.pgpass, or the URL/);
    expect(r.stderr).not.toMatch(/check that the server is running/);
  });

  it("ignores a ~/.pgpass others can read, as libpq does, and says why", async () => {
    const home = await tempDir("strongroom-home-");
    const file = path.join(home, ".pgpass");
    await writeFile(file, `*:*:*:*:${password()}\n`);
    await chmod(file, 0o644);
    const store = await newStore("file");
    const key = await identityFile();
    const r = await runCli(["--log-format", "json", "backup", "--recipient", key.recipient], {
      ...CLEAN,
      HOME: home,
      DATABASE_URL: withoutPassword(dbUrl(inject("pgUrl"), "postgres")),
      STRONGROOM_STORE: store.url,
    });
    expect(r.code).not.toBe(0);
    // Every line of stderr is JSON (no warning printed raw), and the password is nowhere.
    const lines = r.stderr.trim().split("\n");
    for (const line of lines) expect(() => JSON.parse(line)).not.toThrow();
    expect(r.stderr).toContain("group or world access");
    expect(r.stderr).not.toContain(password());
  });

  it("names an undefined service and where it looked, before connecting", async () => {
    const home = await tempDir("strongroom-home-");
    const store = await newStore("file");
    const r = await runCli(["backup", "--recipient", (await identityFile()).recipient], {
      ...CLEAN,
      HOME: home,
      PGSYSCONFDIR: home,
      DATABASE_URL: "postgres:///?service=prod",
      STRONGROOM_STORE: store.url,
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('the connection service "prod" is not defined');
    expect(r.stderr).toContain(path.join(home, ".pg_service.conf"));
  });

  it("keeps stderr JSON under --log-format json when sslmode=require meets a server without TLS", async () => {
    const store = await newStore("file");
    const r = await runCli(
      ["--log-format", "json", "backup", "--recipient", (await identityFile()).recipient, "--json"],
      {
        DATABASE_URL: `${dbUrl(inject("pgUrl"), "postgres")}?sslmode=require`,
        STRONGROOM_STORE: store.url,
      },
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).not.toContain("SECURITY WARNING");
    for (const line of r.stderr.trim().split("\n")) expect(() => JSON.parse(line)).not.toThrow();
    expect(JSON.parse(r.stdout).error.message).toMatch(/does not accept TLS/);
  });
});
