import { execFile } from "node:child_process";
import { copyFile, readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, inject, it } from "vitest";
import { listManifests } from "#core/backup-index.ts";
import { runCli } from "../helpers/cli.ts";
import { identityFile, newStore } from "../helpers/fixture.ts";
import { createDatabase, sql } from "../helpers/pg.ts";
import { tempDir } from "../helpers/temp.ts";

const run = promisify(execFile);
const README = path.resolve(import.meta.dirname, "../../README.md");

/** Usability item 9: the README's emergency restore runs, exactly as written. */
describe("restore without strongroom", () => {
  it("restores a backup with the README's age | zstd | pg_restore commands", async () => {
    const readme = await readFile(README, "utf8");
    const block = /<!-- restore-without-strongroom -->\n```sh\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeDefined();

    const source = await createDatabase(inject("pgUrl"), "emergency");
    await sql(
      source.url,
      "create table orders as select g as id, 'order ' || g as note from generate_series(1, 500) g",
    );
    const store = await newStore("file");
    const key = await identityFile();
    expect(
      (
        await runCli(["backup", "--recipient", key.recipient], {
          DATABASE_URL: source.url,
          STRONGROOM_STORE: store.url,
        })
      ).code,
    ).toBe(0);
    const [manifest] = await listManifests(store.store);
    const dir = await tempDir();
    const dump = manifest?.objects.find((o) => o.role === "dump")?.key as string;
    await copyFile(path.join(fileURLToPath(store.url), dump), path.join(dir, "dump.pgc.zst.age"));
    await writeFile(path.join(dir, "identity.txt"), `${key.identity}\n`, { mode: 0o600 });

    const server = new URL(inject("pgUrl"));
    const env = {
      ...process.env,
      PGHOST: server.hostname,
      PGPORT: server.port,
      PGUSER: decodeURIComponent(server.username),
      PGPASSWORD: decodeURIComponent(server.password),
      PATH: `${inject("pgBinDir")}:${process.env.PATH}`,
    };
    await run("dropdb", ["--if-exists", "shop_restored"], { env, timeout: 30_000 });
    await run("bash", ["-euo", "pipefail", "-c", block as string], { cwd: dir, env, timeout: 60_000 });
    const target = new URL(inject("pgUrl"));
    target.pathname = "/shop_restored";
    const [row] = await sql<{ n: string }>(target.href, "select count(*)::text as n from orders");
    expect(row?.n).toBe("500");
  });
});
