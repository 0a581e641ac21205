import { readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, inject, it } from "vitest";
import { spawnTool } from "#worker/pg/tool-process.ts";
import { runCli } from "../helpers/cli.ts";
import { identityFile, newStore, wrappedBinDir } from "../helpers/fixture.ts";
import { createDatabase, sql } from "../helpers/pg.ts";
import { tempDir } from "../helpers/temp.ts";

const MiB = 1024 * 1024;

/**
 * The write(2) calls a tool made, itself and its reaped children (/proc/<pid>/io,
 * `syscw`), read while it still runs: `sleep` keeps it alive after the writer is done.
 */
async function writeCalls(stdoutWrites: number | undefined, file: string, bytes: number): Promise<number> {
  const tool = spawnTool("/bin/sh", ["-c", 'sed -n p "$0"; exec sleep 30', file], process.env, {
    ...(stdoutWrites ? { stdoutWrites } : {}),
  });
  try {
    let read = 0;
    for await (const chunk of tool.child.stdout as NodeJS.ReadableStream) {
      read += (chunk as Buffer).length;
      if (read === bytes) break;
    }
    // sed's counts join the shell's once it is reaped, which is done when the shell has
    // become `sleep`; a loaded machine may not be there yet when the last byte arrives.
    for (let i = 0; i < 200; i++) {
      if ((await readFile(`/proc/${tool.child.pid}/comm`, "utf8")).trim() === "sleep") break;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    const io = await readFile(`/proc/${tool.child.pid}/io`, "utf8");
    return Number(/syscw: (\d+)/.exec(io)?.[1]);
  } finally {
    tool.child.kill("SIGKILL");
    await tool.exited;
  }
}

describe("pg_dump's writes", () => {
  it("a stdio tool run with large writes writes its stdout in pieces that large, not 4 KiB ones", async () => {
    // GIVEN 4 MiB of text, written by sed through its stdio buffer
    const file = path.join(await tempDir(), "lines.txt");
    const text = Buffer.from("a line of text that pg_dump might have written\n".repeat((4 * MiB) / 48));
    await writeFile(file, text);

    // THEN with 1 MiB writes it takes a handful of write calls; without, one per 4 KiB
    expect(await writeCalls(MiB, file, text.length)).toBeLessThanOrEqual(8);
    expect(await writeCalls(undefined, file, text.length)).toBeGreaterThan(500);
  });

  it("the backup runs pg_dump with a 1 MiB stdout buffer", async () => {
    const db = await createDatabase(inject("pgUrl"), "dump_writes");
    await sql(db.url, "create table t as select g from generate_series(1, 1000) g");
    const wrapped = await wrappedBinDir(inject("pgBinDir"), {
      pgDumpBody: 'printf "stdout buffer %s\\n" "$_STDBUF_O" >> "$(dirname "$0")/argv.log"; exec "$REAL" "$@"',
    });
    const { url } = await newStore("file");
    const key = await identityFile();
    const r = await runCli(["backup", "--recipient", key.recipient], {
      DATABASE_URL: db.url,
      STRONGROOM_STORE: url,
      PG_BIN_DIRS: wrapped.dir,
    });
    expect(r.code).toBe(0);
    expect(await readFile(wrapped.log, "utf8")).toContain(`stdout buffer ${MiB}`);
  });
});
