import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.ts";
import { identityFile } from "../helpers/fixture.ts";
import { tempDir } from "../helpers/temp.ts";

/** The house rules of docs/architecture.md ("Where things are"), checked on every tracked source file. */
const root = path.resolve(import.meta.dirname, "../..");
const sources = execFileSync("git", ["ls-files", "*.ts", "*.mjs"], { cwd: root, encoding: "utf8" })
  .split("\n")
  .filter((f) => f !== "");
const importsOf = (file: string) =>
  [...readFileSync(path.join(root, file), "utf8").matchAll(/(?:from|import\()\s*"([^"]+)"/g)].map(
    (m) => m[1] as string,
  );

describe("layout", () => {
  it("keeps core/ at the bottom: it imports nothing from the worker, the Lambdas, infra or tests", () => {
    const upward = sources
      .filter((f) => f.startsWith("core/") && !f.endsWith(".test.ts"))
      .flatMap((f) => importsOf(f).map((spec) => ({ f, spec })))
      .filter(({ f, spec }) => {
        if (spec.startsWith("#worker/")) return true;
        if (!spec.startsWith(".")) return false;
        return !path.normalize(path.join(path.dirname(f), spec)).startsWith("core/");
      });
    expect(upward).toEqual([]);
  });

  it("reaches core/ and the worker through #core/ and #worker/, never by climbing three folders", () => {
    const climbing = sources.flatMap((f) =>
      importsOf(f)
        .filter((s) => s.startsWith("../../../"))
        .map((s) => `${f}: ${s}`),
    );
    expect(climbing).toEqual([]);
  });

  it("gives every CLI command its own file under commands/", () => {
    const cli = readFileSync(path.join(root, "containers/worker/src/cli.ts"), "utf8");
    const registered = [...cli.matchAll(/import \{ (\w+)Command \} from "\.\/commands\/([\w-]+)\.ts"/g)];
    expect(registered.length).toBeGreaterThanOrEqual(9);
    // The file is named as the command is typed: recoverTableCommand in commands/recover-table.ts.
    const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    for (const [, name, file] of registered) expect(file).toBe(kebab(name as string));
    // cli.ts composes; it declares no command itself.
    expect(cli).not.toMatch(/\.command\(/);
  });

  it("keeps start-up light: command files import the SDK, pg, age, zstd, stores and pipelines only inside their actions", () => {
    const heavy =
      /^(@aws-sdk\/|pg$|age-encryption|@mongodb-js\/zstd|#core\/store\/(open|s3|file)-store|\.\.\/pipeline\/|\.\.\/pg\/conn)/;
    const offenders = sources
      .filter((f) => f.startsWith("containers/worker/src/commands/") && !f.endsWith(".test.ts"))
      .flatMap((f) =>
        [...readFileSync(path.join(root, f), "utf8").matchAll(/^import (?!type )[^;]*? from "([^"]+)";/gm)]
          .map((m) => m[1] as string)
          .filter((spec) => heavy.test(spec))
          .map((spec) => `${f}: ${spec}`),
      );
    expect(offenders).toEqual([]);
  });

  it("loads no AWS SDK for a backup to a file store, up to its connection", async () => {
    // A module hook records every module the CLI loads; the backup fails at connect,
    // after its store, pipeline and stages are loaded.
    const dir = await tempDir();
    const hooks = path.join(dir, "hooks.mjs");
    const loaded = path.join(dir, "loaded.txt");
    writeFileSync(
      hooks,
      `import { appendFileSync } from "node:fs";
export async function load(url, context, next) { appendFileSync(${JSON.stringify(loaded)}, url + "\\n"); return next(url, context); }\n`,
    );
    const register = path.join(dir, "register.mjs");
    writeFileSync(
      register,
      `import { register } from "node:module";\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`,
    );
    const key = await identityFile();
    const r = await runCli(
      ["backup", "--recipient", key.recipient, "--store", pathToFileURL(path.join(dir, "store")).href],
      { DATABASE_URL: "postgres://nobody@127.0.0.1:1/db", NODE_OPTIONS: `--import ${pathToFileURL(register).href}` },
    );
    expect(r.stderr).toContain("cannot connect");
    const modules = readFileSync(loaded, "utf8").split("\n");
    expect(modules.some((m) => m.endsWith("/pipeline/backup.ts"))).toBe(true);
    expect(modules.some((m) => m.endsWith("/core/store/file-store.ts"))).toBe(true);
    expect(modules.filter((m) => m.includes("@aws-sdk/") || m.endsWith("/s3-store.ts"))).toEqual([]);
  });
});
