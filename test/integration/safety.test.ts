import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { runCli } from "../helpers/cli.ts";
import { identityFile, newStore, type StoreUnderTest } from "../helpers/fixture.ts";
import { createDatabase, sql } from "../helpers/pg.ts";
import { tempDir } from "../helpers/temp.ts";

const pgUrl = inject("pgUrl");

describe("boolean environment variables", () => {
  it("STRONGROOM_FORCE=0 does not overwrite an existing identity", async () => {
    const out = path.join(await tempDir(), "id.txt");
    expect((await runCli(["keygen", "--out", out])).code).toBe(0);
    const before = await readFile(out, "utf8");
    for (const value of ["0", "false", "no", "FALSE", ""]) {
      const r = await runCli(["keygen", "--out", out], { STRONGROOM_FORCE: value });
      expect(r.code, `STRONGROOM_FORCE=${value}`).toBe(1);
      expect(r.stderr).toContain(`identity file ${out} already exists`);
    }
    expect(await readFile(out, "utf8")).toBe(before);
  });

  it("refuses a boolean variable that is neither true nor false, as a usage error", async () => {
    const out = path.join(await tempDir(), "id.txt");
    const r = await runCli(["keygen", "--out", out], { STRONGROOM_FORCE: "maybe" });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('STRONGROOM_FORCE must be 1, true, yes, 0, false or no, got "maybe"');
    await expect(stat(out)).rejects.toThrow();
  });

  it("keygen --force keeps the replaced identity beside the new one", async () => {
    const dir = await tempDir();
    const out = path.join(dir, "id.txt");
    await runCli(["keygen", "--out", out]);
    const old = await readFile(out, "utf8");
    const r = await runCli(["keygen", "--out", out, "--json"], { STRONGROOM_FORCE: "yes" });
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout) as { recipient: string; previousIdentityFile: string };
    expect(result.previousIdentityFile).toMatch(/id\.txt\.bak-\d{8}T\d{6}Z$/);
    expect(await readFile(result.previousIdentityFile, "utf8")).toBe(old);
    const now = await readFile(out, "utf8");
    expect(now).not.toBe(old);
    expect(now).toContain(result.recipient);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    // No temp files are left behind.
    expect((await readdir(dir)).sort()).toEqual(["id.txt", path.basename(result.previousIdentityFile)].sort());
  });

  describe("on restore", () => {
    let store: StoreUnderTest;
    let key: Awaited<ReturnType<typeof identityFile>>;
    beforeAll(async () => {
      const source = await createDatabase(pgUrl, "envbool_src");
      await sql(source.url, "create table t(id int); insert into t select generate_series(1, 10)");
      store = await newStore("file");
      key = await identityFile();
      const r = await runCli(["backup", "--recipient", key.recipient], {
        DATABASE_URL: source.url,
        STRONGROOM_STORE: store.url,
      });
      expect(r.code).toBe(0);
    });

    it("STRONGROOM_CLEAN=false does not enable --clean", async () => {
      const target = await createDatabase(pgUrl, "envbool_t");
      await sql(target.url, "create table keep_me(x int); insert into keep_me values (42)");
      const r = await runCli(["restore", "--identity", key.file], {
        STRONGROOM_STORE: store.url,
        STRONGROOM_TARGET_URL: target.url,
        STRONGROOM_CLEAN: "false",
      });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("already holds 1 user objects");
      expect(await sql(target.url, "select x from keep_me")).toEqual([{ x: 42 }]);
    });

    it("parses STRONGROOM_NO_OWNER=0 and STRONGROOM_JSON=0 as off, and a command-line flag wins over its variable", async () => {
      const target = await createDatabase(pgUrl, "envbool_o");
      const r = await runCli(["restore", "--identity", key.file, "--json"], {
        STRONGROOM_STORE: store.url,
        STRONGROOM_TARGET_URL: target.url,
        STRONGROOM_NO_OWNER: "0",
        STRONGROOM_JSON: "0",
      });
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ tables: 1, rows: 10 });
    });
  });
});
