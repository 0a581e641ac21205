import { execFile } from "node:child_process";
import { rm } from "node:fs/promises";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, inject, it } from "vitest";
import { buildWorker } from "../../scripts/build.ts";
import { committedBackups, identityFile, newStore } from "../helpers/fixture.ts";
import { createDatabase, sql } from "../helpers/pg.ts";

const run = promisify(execFile);
// Inside the repository, so the bundle finds the native zstd addon as the image does.
const outDir = path.resolve(import.meta.dirname, `../../dist/test-${process.pid}`);
afterAll(() => rm(outDir, { recursive: true, force: true }));

describe("worker image bundle", () => {
  it("builds into an entry point and chunks that back up a database like the sources do", async () => {
    const outfile = await buildWorker(outDir);
    const db = await createDatabase(inject("pgUrl"), "bundle");
    await sql(db.url, "create table t as select g from generate_series(1, 100) g");
    const store = await newStore("file");
    const key = await identityFile();
    const { stdout } = await run(process.execPath, [outfile, "backup", "--recipient", key.recipient], {
      env: { ...process.env, DATABASE_URL: db.url, STRONGROOM_STORE: store.url },
    });
    expect(stdout.trim()).toMatch(/^\d{8}T\d{6}Z-[a-z2-7]{6}$/);
    expect(await committedBackups(store.store)).toBe(1);
  });
});
