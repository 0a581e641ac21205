import { execFile } from "node:child_process";
import { chmod, chown, readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, libpqEnv, parsePgUrl } from "#worker/pg/conn.ts";
import { type Cluster, serverUser, startCluster } from "#worker/pg/scratch-cluster.ts";
import { databaseTlsEnvironment, RDS_CA_BUNDLE_PATH } from "../../infra/constructs/tls.ts";
import { serverCertificates } from "../helpers/certificates.ts";
import { runCli } from "../helpers/cli.ts";
import { identityFile, newStore, wrappedBinDir } from "../helpers/fixture.ts";
import { sql } from "../helpers/pg.ts";
import { tempDir } from "../helpers/temp.ts";

const run = promisify(execFile);

/**
 * One PostgreSQL cluster with ssl=on and a certificate for `localhost` from a CA made
 * here; `otherCa` signed nothing the server holds.
 */
let cluster: Cluster;
let ca: string;
let otherCa: string;
let dir: string;
let db: string;

beforeAll(async () => {
  dir = await tempDir("strongroom-tls-");
  const mine = await serverCertificates(dir, "server");
  otherCa = (await serverCertificates(dir, "other")).ca;
  ca = mine.ca;
  // The server reads its key as its own user, and insists on mode 0600.
  const owner = await serverUser();
  if (owner) for (const f of [dir, mine.cert, mine.key]) await chown(f, owner.uid, owner.gid);
  cluster = await startCluster(undefined, "postgres-tls", {
    settings: ["ssl=on", `ssl_cert_file=${mine.cert}`, `ssl_key_file=${mine.key}`],
  });
  db = `tls_${process.pid}`;
  await sql(cluster.url, `create database ${db}`);
  await sql(cluster.url.replace(/\/postgres$/, `/${db}`), "create table t as select generate_series(1, 100) as id");
});
afterAll(async () => {
  await cluster?.stop();
});

describe("TLS to the database, as libpq means each sslmode", () => {
  /** A backup over TLS; `host` and the query string choose what is verified. */
  async function backupVia(host: string, query: string, binDir = cluster.binDir) {
    const store = await newStore("file");
    const key = await identityFile();
    const url = `postgres://postgres:${cluster.password}@${host}:${cluster.port}/${db}?${query}`;
    return runCli(["backup", "--recipient", key.recipient], {
      DATABASE_URL: url,
      STRONGROOM_STORE: store.url,
      PG_BIN_DIRS: binDir,
    });
  }

  it("verify-full succeeds against the right CA and the host the certificate names, pg_dump included", async () => {
    // pg_dump records the TLS settings it was given, then runs.
    const seen = path.join(await tempDir(), "pgssl.env");
    const wrapped = await wrappedBinDir(cluster.binDir, {
      pgDumpBody: `env | grep ^PGSSL >> "${seen}"\nexec "$REAL" "$@"`,
    });
    const r = await backupVia("localhost", `sslmode=verify-full&sslrootcert=${ca}`, wrapped.dir);
    expect(r.code, r.stderr).toBe(0);
    expect((await readFile(seen, "utf8")).split("\n").sort()).toEqual(
      ["", "PGSSLMODE=verify-full", `PGSSLROOTCERT=${ca}`].sort(),
    );
  });

  it("verify-full refuses a host the certificate does not name", async () => {
    const r = await backupVia("127.0.0.1", `sslmode=verify-full&sslrootcert=${ca}`);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("failed verification (ERR_TLS_CERT_ALTNAME_INVALID)");
    expect(r.stderr).toContain("HINT: sslmode=verify-full needs the certificate to name the host");
  });

  it("verify-ca checks the chain but not the host name", async () => {
    expect((await backupVia("127.0.0.1", `sslmode=verify-ca&sslrootcert=${ca}`)).code).toBe(0);
    const wrong = await backupVia("127.0.0.1", `sslmode=verify-ca&sslrootcert=${otherCa}`);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/the server's certificate for postgres@127\.0\.0\.1:\d+\/tls_\d+ failed verification/);
  });

  it("require encrypts without verifying, unless given a root certificate, as libpq does", async () => {
    expect((await backupVia("127.0.0.1", "sslmode=require")).code).toBe(0);
    expect((await backupVia("127.0.0.1", `sslmode=require&sslrootcert=${otherCa}`)).code).toBe(1);
  });

  it("names an unknown sslmode as a usage error", async () => {
    const r = await backupVia("127.0.0.1", "sslmode=verify_full");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("has sslmode=verify_full, which libpq does not know");
  });
});

/**
 * A deployed backup or restore task connects with DATABASE_URL=postgres://, the PG*
 * variables ECS injects from the database's secret, and databaseTlsEnvironment's
 * PGSSLMODE and PGSSLROOTCERT. Here the CA bundle is a file made for the test in place of
 * the image's RDS bundle (RDS_CA_BUNDLE_PATH), and holds several CAs, as RDS's does.
 */
describe("TLS from a deployed task's environment (verify-full against a CA bundle)", () => {
  let bundle: string;
  let wrongBundle: string;

  beforeAll(async () => {
    bundle = path.join(dir, "bundle.pem");
    wrongBundle = path.join(dir, "wrong-bundle.pem");
    // The server's CA is not the first: every certificate in the file counts.
    await writeFile(bundle, `${await readFile(otherCa, "utf8")}${await readFile(ca, "utf8")}`);
    await writeFile(wrongBundle, await readFile(otherCa, "utf8"));
    // The worker reads the bundle as the image's `node` user would: any user may read it.
    await chmod(bundle, 0o644);
  });

  /** A task's variables: the secret's, then the TLS ones, with the test's bundle. */
  function taskEnv(host: string, rootCert: string | undefined, tls = databaseTlsEnvironment("rds")) {
    expect(tls.PGSSLROOTCERT ?? RDS_CA_BUNDLE_PATH).toBe(RDS_CA_BUNDLE_PATH);
    const { PGSSLROOTCERT: _inImage, ...rest } = tls;
    return {
      DATABASE_URL: "postgres://",
      PGHOST: host,
      PGPORT: String(cluster.port),
      PGUSER: "postgres",
      PGPASSWORD: cluster.password,
      PGDATABASE: db,
      ...rest,
      ...(rootCert !== undefined ? { PGSSLROOTCERT: rootCert } : {}),
    };
  }

  async function backupWith(env: Record<string, string>, binDir = cluster.binDir) {
    const store = await newStore("file");
    const key = await identityFile();
    return runCli(["backup", "--recipient", key.recipient], {
      ...env,
      STRONGROOM_STORE: store.url,
      PG_BIN_DIRS: binDir,
    });
  }

  /** Whether the worker's own session to the server is TLS, from the server's side. */
  async function sessionUsesTls(env: Record<string, string>): Promise<boolean> {
    const client = await connect(parsePgUrl("postgres://", "--db", env));
    try {
      const { rows } = await client.query<{ ssl: boolean }>("select ssl from pg_stat_ssl where pid = pg_backend_pid()");
      return rows[0]?.ssl === true;
    } finally {
      await client.end();
    }
  }

  /** pg_dump alone, with the environment the worker hands its tools for this connection. */
  async function pgDumpWith(env: Record<string, string>): Promise<{ code: number; stderr: string }> {
    const toolEnv = libpqEnv(parsePgUrl("postgres://", "--db", env), "strongroom-test");
    try {
      await run(path.join(cluster.binDir, "pg_dump"), ["--schema-only", "--no-password"], { env: toolEnv });
      return { code: 0, stderr: "" };
    } catch (err) {
      return { code: (err as { code: number }).code, stderr: (err as { stderr: string }).stderr };
    }
  }

  it("connects with verify-full when the bundle holds the server's CA, and hands pg_dump the same settings", async () => {
    const seen = path.join(await tempDir(), "pgssl.env");
    const wrapped = await wrappedBinDir(cluster.binDir, {
      pgDumpBody: `env | grep ^PGSSL >> "${seen}"\nexec "$REAL" "$@"`,
    });
    const env = taskEnv("localhost", bundle);

    const r = await backupWith(env, wrapped.dir);

    expect(r.code, r.stderr).toBe(0);
    expect((await readFile(seen, "utf8")).split("\n").sort()).toEqual(
      ["", "PGSSLMODE=verify-full", `PGSSLROOTCERT=${bundle}`].sort(),
    );
    expect(await sessionUsesTls(env)).toBe(true);
  });

  it("refuses a server whose CA is not in the bundle, naming the bundle, before pg_dump runs", async () => {
    const log = await wrappedBinDir(cluster.binDir);

    const r = await backupWith(taskEnv("localhost", wrongBundle), log.dir);

    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /the server's certificate for postgres@localhost:\d+\/tls_\d+ failed verification \(\w+\)/,
    );
    expect(r.stderr).toContain(`HINT: check sslrootcert (${wrongBundle}, from the URL or PGSSLROOTCERT)`);
    const dumps = (await readFile(log.log, "utf8").catch(() => "")).split("\n").filter((l) => l.startsWith("pg_dump"));
    expect(dumps.filter((l) => l !== "pg_dump --version")).toEqual([]);
  });

  it("refuses a host the server's certificate does not name, though its CA is in the bundle", async () => {
    const r = await backupWith(taskEnv("127.0.0.1", bundle));

    expect(r.code).toBe(1);
    expect(r.stderr).toContain("failed verification (ERR_TLS_CERT_ALTNAME_INVALID)");
    expect(r.stderr).toContain("HINT: sslmode=verify-full needs the certificate to name the host");
  });

  it("pg_dump verifies on its own from the worker's tool environment: the right bundle dumps, a wrong CA or host is refused", async () => {
    expect(await pgDumpWith(taskEnv("localhost", bundle))).toEqual({ code: 0, stderr: "" });

    const wrongCa = await pgDumpWith(taskEnv("localhost", wrongBundle));
    expect(wrongCa.code).not.toBe(0);
    expect(wrongCa.stderr).toContain("certificate verify failed");

    const wrongHost = await pgDumpWith(taskEnv("127.0.0.1", bundle));
    expect(wrongHost.code).not.toBe(0);
    expect(wrongHost.stderr).toMatch(/server certificate for "localhost".* does not match host name "127\.0\.0\.1"/);
  });

  it('"require" encrypts without a bundle (a server no CA here vouches for), for the worker and pg_dump', async () => {
    const env = taskEnv("127.0.0.1", undefined, databaseTlsEnvironment("require"));

    expect(env).not.toHaveProperty("PGSSLROOTCERT");
    expect(await sessionUsesTls(env)).toBe(true);
    expect((await pgDumpWith(env)).code).toBe(0);
  });

  it("a verify task's scratch cluster ignores the TLS settings meant for the user's databases", async () => {
    const store = await newStore("file");
    const key = await identityFile();
    const url = `postgres://postgres:${cluster.password}@localhost:${cluster.port}/${db}?sslmode=verify-full&sslrootcert=${bundle}`;
    const made = await runCli(["backup", "--recipient", key.recipient], {
      DATABASE_URL: url,
      STRONGROOM_STORE: store.url,
    });
    expect(made.code, made.stderr).toBe(0);
    const scratchDir = await tempDir("strongroom-scratch-");
    await chmod(scratchDir, 0o755);

    // As a task's environment would carry them, naming a bundle that is not on this machine.
    const r = await runCli(["verify", "--identity", key.file, "--scratch-dir", scratchDir, "--json"], {
      STRONGROOM_STORE: store.url,
      ...databaseTlsEnvironment("rds"),
    });

    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true });
  });
});
