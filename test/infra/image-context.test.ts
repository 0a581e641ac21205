import { execFile } from "node:child_process";
import { cp, mkdir, readdir, readFile, symlink } from "node:fs/promises";
import * as path from "node:path";
import { promisify } from "node:util";
import { IgnoreStrategy } from "aws-cdk-lib";
import { describe, expect, it } from "vitest";
import { tempDir } from "../helpers/temp.ts";

/**
 * The worker image's build context is what .dockerignore lets through, and the CDK asset
 * hashes exactly that (ignore mode DOCKER). No Docker engine runs here, so the test does
 * what the Dockerfile's build stage does with that context: the bundle is built from it
 * alone and runs. And a change to what the image does not read changes nothing.
 */
const root = path.resolve(import.meta.dirname, "../..");
const run = promisify(execFile);

async function contextFiles(): Promise<string[]> {
  const patterns = (await readFile(path.join(root, ".dockerignore"), "utf8"))
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  const ignore = IgnoreStrategy.docker(root, patterns);
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.name === "node_modules" || entry.name === ".git") continue;
      if (entry.isDirectory()) await walk(full);
      else if (!ignore.ignores(full)) out.push(path.relative(root, full));
    }
  };
  await walk(root);
  return out.sort();
}

describe("the worker image's build context", () => {
  it("holds what the build reads and nothing a docs, test or infra edit touches", async () => {
    const files = await contextFiles();
    expect(files).toEqual(expect.arrayContaining(["package.json", "package-lock.json", "scripts/build.ts"]));
    expect(files).toContain("containers/worker/src/run.ts");
    for (const outside of ["README.md", "docs/", "test/", "infra/", "functions/", "bench/", ".ci/", "dist/"]) {
      expect(
        files.filter((f) => f.startsWith(outside)),
        outside,
      ).toEqual([]);
    }
    expect(files.filter((f) => f.endsWith(".test.ts"))).toEqual([]);
  });

  it("is enough to build the bundle the image runs, and the bundle runs", async () => {
    const context = await tempDir("strongroom-image-context-");
    for (const file of await contextFiles()) {
      await mkdir(path.dirname(path.join(context, file)), { recursive: true });
      await cp(path.join(root, file), path.join(context, file));
    }
    // The image's build stage runs npm ci in the context; the checkout's modules stand in.
    await symlink(path.join(root, "node_modules"), path.join(context, "node_modules"));
    await run(process.execPath, ["scripts/build.ts", "dist"], { cwd: context, timeout: 120_000 });
    const { stdout } = await run(process.execPath, [path.join(context, "dist", "strongroom.mjs"), "--version"], {
      timeout: 60_000,
    });
    const { version } = JSON.parse(await readFile(path.join(root, "package.json"), "utf8")) as { version: string };
    expect(stdout.trim()).toContain(version);
  }, 180_000);
});
