import { execFile } from "node:child_process";
import { readFile, symlink, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { promisify } from "node:util";
import { describe, expect, inject, it, onTestFinished } from "vitest";
import { createDatabase, sql } from "../helpers/pg.ts";
import { tempDir } from "../helpers/temp.ts";

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "../..");

/**
 * Usability item 7: Quick start 1 (`npm run cycle`) needs Node and Debian's PostgreSQL,
 * nothing the tests need besides: no moto (python3), no Java, no age or zstd CLIs.
 */
describe("quick start", () => {
  it("runs the whole local cycle with only Node and PostgreSQL on PATH", { timeout: 120_000 }, async () => {
    // A PATH of one directory holding node and `id` (the cluster's owner is looked up with
    // it); PostgreSQL's binaries are found where Debian installs them, as for a user.
    const bin = await tempDir("strongroom-bin-");
    await symlink(process.execPath, path.join(bin, "node"));
    await symlink("/usr/bin/id", path.join(bin, "id"));
    const home = await tempDir("strongroom-cycle-");
    const env: NodeJS.ProcessEnv = { PATH: bin, HOME: home, STRONGROOM_CYCLE_DIR: home, LANG: "C.UTF-8" };
    const { stdout, stderr } = await run(process.execPath, [path.join(root, "scripts/local-cycle.ts")], {
      cwd: root,
      env,
      maxBuffer: 16 * 1024 * 1024,
    }).catch((err: { stdout: string; stderr: string }) => {
      throw new Error(`the cycle failed:\n${err.stdout}\n${err.stderr}`);
    });
    expect(stdout).toMatch(/\[6\/8\] compare source and restore/);
    expect(stdout).toMatch(/\d+ tables match\./);
    expect(stdout).toMatch(/\[7\/8\] verify[\s\S]*verified shop\/\d{8}T\d{6}Z-[a-z2-7]{6}: restore/);
    expect(stdout).toMatch(/shop +yes +\S+ \(\d+m ago\)/);
    expect(stdout).toMatch(/Full cycle in [\d.]+ s\./);
    // Its output went to a pipe, not a terminal: no escape codes.
    expect(stdout).not.toContain("\x1b[");
    expect(stderr).not.toMatch(/moto|java|age:|zstd:/i);
  });

  it("drops the restored copy from DATABASE_URL's server at the end and says so; --keep keeps it and says how to drop it", {
    timeout: 240_000,
  }, async () => {
    const source = await createDatabase(inject("pgUrl"), "cycle");
    await sql(source.url, "create table t as select g from generate_series(1, 100) g");
    const home = await tempDir("strongroom-cycle-");
    const cycle = (args: string[]) =>
      run(process.execPath, [path.join(root, "scripts/local-cycle.ts"), ...args], {
        cwd: root,
        env: { ...process.env, DATABASE_URL: source.url, STRONGROOM_CYCLE_DIR: home },
        maxBuffer: 16 * 1024 * 1024,
      });
    const copies = async () =>
      (
        await sql<{ datname: string }>(
          inject("pgUrl"),
          "select datname from pg_database where datname like 'strongroom_restore_%'",
        )
      ).map((r) => r.datname);
    const before = await copies();

    const dropped = await cycle([]);
    expect(dropped.stdout).toMatch(
      /\ndropped the restored copy strongroom_restore_\d{8}t\d{6} \(\d+ [kM]B\) on 127\.0\.0\.1:\d+; `npm run cycle -- --keep` keeps it\n/,
    );
    expect(await copies()).toEqual(before);

    const kept = await cycle(["--keep"]);
    const name =
      /kept the restored copy (strongroom_restore_\d{8}t\d{6}) \(\d+ [kM]B\) on 127\.0\.0\.1:\d+ \(--keep\); drop it with: dropdb strongroom_restore_/.exec(
        kept.stdout,
      )?.[1];
    expect(name).toBeDefined();
    onTestFinished(() => sql(inject("pgUrl"), `drop database if exists ${name}`).then(() => undefined));
    expect(await copies()).toEqual([...before, name]);
  });

  it("refuses an argument it does not know, naming the one it takes", async () => {
    const r = await run(process.execPath, [path.join(root, "scripts/local-cycle.ts"), "--kep"], { cwd: root }).catch(
      (err: { code: number; stdout: string; stderr: string }) => err,
    );
    expect(r).toMatchObject({ code: 2, stdout: "" });
    expect((r as { stderr: string }).stderr).toBe(
      "local cycle: unknown argument --kep\nusage: npm run cycle [-- --keep]  (--keep: leave the restored copy on DATABASE_URL's server)\n",
    );
  });

  it("is what CI runs: .ci/run holds the README's test command verbatim", async () => {
    const readme = await readFile(path.join(root, "README.md"), "utf8");
    const command = /# 2\. The tests[^\n]*\n(.+)\n/.exec(readme)?.[1];
    expect(command).toBe("./scripts/bootstrap.sh --tests && npm test");
    expect((await readFile(path.join(root, ".ci/run"), "utf8")).split("\n")).toContain(command);
  });

  describe("scripts/bootstrap.sh", () => {
    /** A PATH whose python3 has no moto (and no pip that can fetch it), before the real one. */
    async function withoutMoto(): Promise<NodeJS.ProcessEnv> {
      const bin = await tempDir("strongroom-nomoto-");
      await writeFile(path.join(bin, "python3"), "#!/bin/sh\necho 'No module named moto' >&2\nexit 1\n", {
        mode: 0o755,
      });
      const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${bin}:${process.env.PATH}` };
      delete env.AWS_ENDPOINT_URL_S3;
      return env;
    }
    const bootstrap = (args: string[], env: NodeJS.ProcessEnv) =>
      run(path.join(root, "scripts/bootstrap.sh"), args, { cwd: root, env }).then(
        (r) => ({ code: 0, ...r }),
        (err: { code: number; stdout: string; stderr: string }) => err,
      );

    it("sets up for the cycle without moto", { timeout: 120_000 }, async () => {
      const r = await bootstrap([], await withoutMoto());
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/bootstrap: ready: v22\.\d+\.\d+, pg_dump \(PostgreSQL\)/);
    });

    it("with --tests, says what to install when moto is missing", { timeout: 120_000 }, async () => {
      const r = await bootstrap(["--tests"], await withoutMoto());
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("the tests need moto for S3: install it (pip install 'moto[server]==5.2.1')");
      expect(r.stderr).toContain("or set AWS_ENDPOINT_URL_S3");
    });

    it("refuses an argument it does not know, naming the ones it does", async () => {
      const r = await bootstrap(["--test"], process.env);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("unknown argument --test; use no argument");
    });
  });
});
