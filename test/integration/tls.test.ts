import { execFile } from "node:child_process";
import { chown, readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Cluster, serverUser, startCluster } from "#worker/pg/scratch-cluster.ts";
import { runCli } from "../helpers/cli.ts";
import { identityFile, newStore, wrappedBinDir } from "../helpers/fixture.ts";
import { sql } from "../helpers/pg.ts";
import { tempDir } from "../helpers/temp.ts";

const run = promisify(execFile);

/** A CA and a server certificate for CN/SAN localhost (not 127.0.0.1), made with openssl. */
async function certificates(dir: string, name: string): Promise<{ ca: string; cert: string; key: string }> {
  const at = (f: string) => path.join(dir, `${name}-${f}`);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await run("openssl", [
    "req",
    "-x509",
    ...ec,
    "-keyout",
    at("ca.key"),
    "-out",
    at("ca.crt"),
    "-days",
    "2",
    "-subj",
    `/CN=${name} test CA`,
  ]);
  await run("openssl", ["req", ...ec, "-keyout", at("server.key"), "-out", at("server.csr"), "-subj", "/CN=localhost"]);
  await writeFile(at("ext"), "subjectAltName=DNS:localhost\n");
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    at("server.csr"),
    "-CA",
    at("ca.crt"),
    "-CAkey",
    at("ca.key"),
    "-CAcreateserial",
    "-out",
    at("server.crt"),
    "-days",
    "2",
    "-extfile",
    at("ext"),
  ]);
  return { ca: at("ca.crt"), cert: at("server.crt"), key: at("server.key") };
}

describe("TLS to the database, as libpq means each sslmode", () => {
  let cluster: Cluster;
  let ca: string;
  let otherCa: string;
  let db: string;

  beforeAll(async () => {
    const dir = await tempDir("strongroom-tls-");
    const mine = await certificates(dir, "server");
    otherCa = (await certificates(dir, "other")).ca;
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
