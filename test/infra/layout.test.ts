import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

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
});
