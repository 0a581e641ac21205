import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { promisify } from "node:util";
import { IgnoreStrategy } from "aws-cdk-lib";
import { beforeAll, describe, expect, it } from "vitest";
import { CaBundleError, checkRdsCaBundle } from "../../containers/worker/rds-ca-bundle.ts";
import {
  DEFAULT_DATABASE_TLS,
  databaseTlsEnvironment,
  databaseTlsWarning,
  PUBLIC_CA_BUNDLE_PATH,
  RDS_CA_BUNDLE_PATH,
} from "../../infra/constructs/tls.ts";
import { signedCertificate, testCa } from "../helpers/certificates.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * The worker image trusts the RDS CA bundle it fetched at build time, at the path the task
 * environment names. No Docker engine runs here: the Dockerfile is read as text, and its
 * check of the bundle is run as the build stage runs it, on bundles made by openssl.
 */
const root = path.resolve(import.meta.dirname, "../..");
const run = promisify(execFile);
const RDS_SUBJECT = (region: string) =>
  `/C=US/ST=WA/L=Seattle/O=Amazon Web Services, Inc./OU=Amazon RDS/CN=Amazon RDS ${region} Root CA RSA2048 G1`;

describe("the RDS CA bundle in the worker image", () => {
  it("is fetched from AWS, checked, and installed at exactly RDS_CA_BUNDLE_PATH, readable by the tasks' node user", async () => {
    const dockerfile = await readFile(path.join(root, "containers/worker/Dockerfile"), "utf8");
    const [build, final] = dockerfile.split(/^FROM .*$/m).slice(1);
    expect(build).toContain(
      "ARG RDS_CA_BUNDLE_URL=https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem\n",
    );
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the Dockerfile's own build-arg expansion
    expect(build).toContain("ADD ${RDS_CA_BUNDLE_URL} /src/rds-global-bundle.pem\n");
    // ADD leaves a download 0600 (root's); backup and restore tasks run as `node`.
    expect(build).toContain(
      "RUN node containers/worker/rds-ca-bundle.ts rds-global-bundle.pem && chmod 0644 rds-global-bundle.pem\n",
    );
    expect(final).toContain(`COPY --from=build /src/rds-global-bundle.pem ${RDS_CA_BUNDLE_PATH}\n`);
    expect(final).toMatch(/^USER node$/m);
  });

  it("keeps Debian's public CAs, which the public-ca setting names, in the image", async () => {
    const dockerfile = await readFile(path.join(root, "containers/worker/Dockerfile"), "utf8");
    const final = dockerfile.split(/^FROM .*$/m)[2] ?? "";
    expect(final).toMatch(/apt-get install -y --no-install-recommends ca-certificates /);
    expect(final).not.toMatch(/apt-get (purge|remove)[^\n]*ca-certificates/);
    expect(PUBLIC_CA_BUNDLE_PATH).toBe("/etc/ssl/certs/ca-certificates.crt");
  });

  it("lets the check into the image's build context", async () => {
    const patterns = (await readFile(path.join(root, ".dockerignore"), "utf8"))
      .split("\n")
      .filter((l) => l.trim() !== "" && !l.startsWith("#"));
    const ignore = IgnoreStrategy.docker(root, patterns);
    expect(ignore.ignores(path.join(root, "containers/worker/rds-ca-bundle.ts"))).toBe(false);
  });
});

describe("the build's check of the RDS CA bundle", () => {
  let dir: string;
  let rds: Array<{ cert: string; key: string }>;
  let bundle: string;

  beforeAll(async () => {
    dir = await tempDir("strongroom-rds-ca-");
    rds = [await testCa(dir, "rds-1", RDS_SUBJECT("test-1")), await testCa(dir, "rds-2", RDS_SUBJECT("test-2"))];
    bundle = path.join(dir, "bundle.pem");
    await writeFile(bundle, (await Promise.all(rds.map((ca) => readFile(ca.cert, "utf8")))).join("\n"));
  });

  /** The check as the Dockerfile's build stage runs it. */
  async function checkAsBuild(file: string, env: NodeJS.ProcessEnv = {}) {
    try {
      const { stdout } = await run(process.execPath, ["containers/worker/rds-ca-bundle.ts", file], {
        cwd: root,
        env: { PATH: process.env.PATH, ...env },
      });
      return { code: 0, stdout, stderr: "" };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  }

  it("accepts a bundle of Amazon RDS CA certificates, and prints how many and their sha256", async () => {
    const sha256 = createHash("sha256")
      .update(await readFile(bundle))
      .digest("hex");

    const r = await checkAsBuild(bundle);

    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toBe(`${bundle}: 2 Amazon RDS CA certificates, sha256 ${sha256}\n`);
    expect((await checkAsBuild(bundle, { RDS_CA_BUNDLE_SHA256: sha256.toUpperCase() })).code).toBe(0);
  });

  it("fails the build on a download that is no bundle (an error page), naming the file", async () => {
    const page = path.join(dir, "page.pem");
    await writeFile(page, "<html><body>403 Forbidden</body></html>");

    const r = await checkAsBuild(page);

    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `rds-ca-bundle: error: ${page}: holds no PEM certificate (39 bytes, starting "<html><body>403 Forbidden</body></html>")\n`,
    );
  });

  it("fails the build when the bundle's bytes are not the pinned ones", async () => {
    const r = await checkAsBuild(bundle, { RDS_CA_BUNDLE_SHA256: "0".repeat(64) });

    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the bundle's sha256 is [0-9a-f]{64}, not the pinned 0{64}: AWS may have updated it/);
  });

  it("refuses a CA that is not Amazon RDS's, wherever it is in the bundle", async () => {
    const other = await testCa(dir, "other", "/O=Example Corp/CN=Example Root CA");
    const mixed = Buffer.from(
      [await readFile(rds[0]?.cert as string, "utf8"), await readFile(other.cert, "utf8")].join("\n"),
    );

    expect(() => checkRdsCaBundle(mixed)).toThrow(CaBundleError);
    expect(() => checkRdsCaBundle(mixed)).toThrow(
      /^certificate 2 of 2 \(O=Example Corp, CN=Example Root CA\) is not an Amazon RDS CA/,
    );
  });

  it("refuses a certificate named like RDS's that is no CA (a server's)", async () => {
    const leaf = await signedCertificate(dir, "leaf", rds[0] as { cert: string; key: string }, RDS_SUBJECT("leaf"));
    const leafPem = await readFile(leaf.cert);

    expect(() => checkRdsCaBundle(leafPem)).toThrow(
      /^certificate 1 of 1 \(.*CN=Amazon RDS leaf Root CA RSA2048 G1\) is not a CA certificate$/,
    );
  });

  it("refuses a PEM block that does not parse", () => {
    const broken = Buffer.from("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");

    expect(() => checkRdsCaBundle(broken)).toThrow(/^certificate 1 of 1 does not parse: /);
  });
});

describe("databaseTlsEnvironment: what a backup or restore task is told to trust", () => {
  it("verifies an RDS server's certificate and host name against the image's RDS bundle by default", () => {
    expect(DEFAULT_DATABASE_TLS).toBe("rds");
    expect(databaseTlsEnvironment()).toEqual({ PGSSLMODE: "verify-full", PGSSLROOTCERT: RDS_CA_BUNDLE_PATH });
  });

  it("verifies against the public CAs with public-ca (RDS Proxy, hosted services)", () => {
    expect(databaseTlsEnvironment("public-ca")).toEqual({
      PGSSLMODE: "verify-full",
      PGSSLROOTCERT: PUBLIC_CA_BUNDLE_PATH,
    });
  });

  it("encrypts without verifying with require, gives no root certificate (libpq would then verify the chain), and warns", () => {
    expect(databaseTlsEnvironment("require")).toEqual({ PGSSLMODE: "require" });
    expect(databaseTlsWarning("databases[1].tls", "require")).toMatch(
      /^databases\[1\]\.tls: "require" encrypts the connection but does not authenticate the server/,
    );
    expect([databaseTlsWarning("databases[0].tls", "rds"), databaseTlsWarning("x", undefined)]).toEqual([
      undefined,
      undefined,
    ]);
  });
});
