import { execFile } from "node:child_process";
import { readFile, stat, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it, onTestFinished } from "vitest";
import { startCluster } from "#worker/pg/scratch-cluster.ts";
import { CLI } from "../helpers/cli.ts";
import { dbUrl, sql } from "../helpers/pg.ts";
import { tempDir } from "../helpers/temp.ts";

const run = promisify(execFile);
const README = path.resolve(import.meta.dirname, "../../README.md");

/** Every ```sh block between the README's walkthrough markers, in order. */
async function walkthroughBlocks(): Promise<string[]> {
  const readme = await readFile(README, "utf8");
  const section = /<!-- walkthrough -->\n([\s\S]*?)<!-- \/walkthrough -->/.exec(readme)?.[1] ?? "";
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1] as string);
}

/** Issue 24: the README's walkthrough runs, exactly as written, and does what its prose says. */
describe("the README's walkthrough", () => {
  it("takes a newcomer through the eight commands the issue names, on a file:// store", async () => {
    const blocks = await walkthroughBlocks();
    const commands = blocks
      .join("\n")
      .split("\n")
      .flatMap((line) => /\bstrongroom ([a-z-]+)/.exec(line)?.[1] ?? []);

    expect([...new Set(commands)]).toEqual([
      "keygen",
      "backup",
      "list",
      "restore",
      "verify",
      "status",
      "recover-table",
      "prune",
    ]);
    expect(blocks.join("\n")).toMatch(/^export STRONGROOM_STORE=file:\/\//m);
    expect(blocks.join("\n")).toMatch(/^strongroom restore .*--create/m);
  });

  it("runs as written: backs up, restores a copy, verifies, is ready, recovers a table, prunes", {
    timeout: 300_000,
  }, async () => {
    // GIVEN a throwaway cluster of its own, since the walkthrough names its databases
    // (shop, shop_copy) and reaches them as postgres://localhost/…, with the port, user and
    // password in libpq's variables, as the README tells a user to set them
    const cluster = await startCluster();
    onTestFinished(() => cluster.stop());
    await sql(cluster.url, "create database shop");
    await sql(
      dbUrl(cluster.url, "shop"),
      "create table orders (id int primary key, note text); insert into orders select g, 'order ' || g from generate_series(1, 500) g",
    );
    // `strongroom` on PATH stands for the installed CLI (test/usability/pack-install.test.ts
    // installs the packed tarball); here it runs the checkout's, on this Node.
    const bin = await tempDir("strongroom-bin-");
    await writeFile(path.join(bin, "strongroom"), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`, {
      mode: 0o755,
    });
    const home = await tempDir("strongroom-walkthrough-");
    const env: NodeJS.ProcessEnv = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !/^(PG|STRONGROOM_|DATABASE_URL$)/.test(name)),
    );
    Object.assign(env, {
      PATH: `${bin}:${process.env.PATH}`,
      HOME: home,
      PGPORT: String(cluster.port),
      PGUSER: cluster.user,
      PGPASSWORD: cluster.password,
      STRONGROOM_LOG_FORMAT: "text",
    });
    const blocks = await walkthroughBlocks();

    // WHEN the blocks run in one shell, in order, stopping at the first command that fails
    const { stdout, stderr } = await run("bash", ["-euxo", "pipefail", "-c", blocks.join("\n")], {
      cwd: home,
      env,
      timeout: 240_000,
      maxBuffer: 16 * 1024 * 1024,
    }).catch((err: { stdout: string; stderr: string }) => {
      throw new Error(`the README's walkthrough failed:\n${err.stdout}\n${err.stderr}`);
    });

    // THEN each command printed what the README says it does
    const backupId = /^(\d{8}T\d{6}Z-[a-z2-7]{6})$/m.exec(stdout)?.[1] as string;
    expect(backupId).toBeDefined();
    expect(stdout).toMatch(/^srsigner1\S+$/m);
    expect(stdout).toMatch(new RegExp(`^${backupId} .* shop `, "m"));
    expect(stdout).toContain(
      `restored ${backupId} into postgres@localhost:${cluster.port}/shop_copy: 1 table, 500 rows`,
    );
    expect(stdout).toContain(`verified shop/${backupId}`);
    expect(stdout).toMatch(new RegExp(`^shop +yes +${backupId} `, "m"));
    expect(stdout).toContain("recovered public.orders as public.orders_recovered: 500 rows");
    expect(stdout).toMatch(/^1 kept, 0 deleted$/m);
    // The signing key was in use: no command warned that the store's log is unsigned.
    expect(stderr).not.toContain("not signed");

    // AND the copy, the recovered table, the private identity and the store are where it says
    const [copy] = await sql<{ n: string }>(dbUrl(cluster.url, "shop_copy"), "select count(*)::text as n from orders");
    expect(copy?.n).toBe("500");
    const [recovered] = await sql<{ n: string }>(
      dbUrl(cluster.url, "shop"),
      "select count(*)::text as n from orders_recovered",
    );
    expect(recovered?.n).toBe("500");
    expect((await stat(path.join(home, "identity.txt"))).mode & 0o777).toBe(0o600);
    await expect(
      stat(path.join(home, "strongroom-backups/shop/backups", backupId, "manifest.json")),
    ).resolves.toBeTruthy();
  });
});
