import { execFile } from "node:child_process";
import { chmod, readFile } from "node:fs/promises";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeWalHeader } from "#core/pitr/wal-record.ts";
import { openStore } from "#core/store/open-store.ts";
import { buildHost } from "../../scripts/build-host.ts";
import { sql } from "../helpers/pg.ts";
import { type PitrRig, queryWhenUp, startPitrRig, stopRecovered, switchAndArchive } from "../helpers/pitr-rig.ts";
import { readAll } from "../helpers/streams.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * strongroom as one file for a database host without Node.js (npm run build:host): a
 * Node single executable. PostgreSQL 15 runs archive_command through it with an
 * environment that has no Node of strongroom's, and a recovery's restore_command is the
 * same file.
 */
const run = promisify(execFile);
let exe: string;
let rig: PitrRig;
const started: string[] = [];

const quoted = (words: string[]) => words.map((w) => (w === "%f" || w === "%p" ? w : `'${w}'`)).join(" ");

beforeAll(async () => {
  const dir = await tempDir("strongroom-host-");
  // The server's OS user runs it.
  await chmod(dir, 0o755);
  exe = await buildHost(dir);
  rig = await startPitrRig("host", "shop", { archiveCommand: (push) => quoted([exe, "wal-push", "%p", ...push]) });
}, 180_000);

afterAll(async () => {
  if (rig) await stopRecovered(rig, started);
  await rig?.stop();
});

describe("the host's single executable", () => {
  it("runs on its own: an empty environment, no node on PATH", async () => {
    const { stdout } = await run(exe, ["--version"], { env: {} });
    expect(stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("is PostgreSQL's archive_command: each segment archived, signed, by the one file", async () => {
    await sql(rig.cluster.url, "create table host (n int); insert into host values (1)");
    const name = await switchAndArchive(rig.cluster.url);
    const store = await openStore(rig.storeUrl);
    const object = await readAll(await store.get(`${rig.databaseId}/wal/${name}`));
    expect(decodeWalHeader(object, name).record).toMatchObject({ kind: "segment", signature: { signer: rig.signer } });
  }, 120_000);

  it("takes a base backup and recovers it, its restore_command being the same file", async () => {
    const b = await run(exe, ["basebackup", ...rig.pushArgs()], {
      env: { DATABASE_URL: rig.cluster.url },
      ...(rig.owner ? { uid: rig.owner.uid, gid: rig.owner.gid } : {}),
    });
    expect(b.stderr).not.toContain("error");
    await sql(rig.cluster.url, "insert into host values (2)");
    await switchAndArchive(rig.cluster.url);
    const dir = path.join(rig.work, "recovered");
    started.push(dir);
    const { stdout } = await run(
      exe,
      ["restore", "--pitr", ...rig.fetchArgs(), "--pgdata", dir, "--to-latest", "--start", "--json"],
      { env: {} },
    );
    const port = (JSON.parse(stdout) as { started: { port: number } }).started.port;
    expect(await queryWhenUp<{ n: number }>(rig.urlOn(port), "select n from host order by n")).toEqual([
      { n: 1 },
      { n: 2 },
    ]);
    const auto = await readFile(path.join(dir, "postgresql.auto.conf"), "utf8");
    expect(auto).toContain(`restore_command = '''${exe}'' ''wal-fetch''`);
  }, 180_000);
});
