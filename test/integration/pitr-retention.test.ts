import { chown, utimes, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readAll as readAuditRows } from "#core/audit/audit-log.ts";
import { generateSigningKey, parseSigningKey } from "#core/audit/row-signature.ts";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { type BaseManifest, readBaseManifest, signBaseManifest } from "#core/pitr/base-manifest.ts";
import { listAll } from "#core/store/object-store.ts";
import { openStore } from "#core/store/open-store.ts";
import { runCli } from "../helpers/cli.ts";
import { sql } from "../helpers/pg.ts";
import { type PitrRig, startPitrRig, stopRecovered, switchAndArchive, waitFor } from "../helpers/pitr-rig.ts";
import { readAll } from "../helpers/streams.ts";

/**
 * GFS retention of base backups and their WAL through the CLI, on a real PostgreSQL 15
 * that archives through `strongroom wal-push` (the setup of wal-archive.test.ts): three
 * base backups with WAL between them, a prune that keeps only the newest, and the newest
 * still recovered by `restore --pitr --to-latest --start` from what is left.
 */
const DB = "shop";

let rig: PitrRig;
let work: string;
let storeDir: string;
let storeUrl: string;
let key: PitrRig["key"];
let signer: string;
let cluster: PitrRig["cluster"];
const bases: BaseManifest[] = [];
const recovered: string[] = [];

/** As the server's OS user, as on the database host: the archiver shares the file store. */
const asHost = () => (rig.owner ? { user: rig.owner } : {});
/** Keeps today's newest base only. */
const newestOnly = ["--keep-daily", "1", "--keep-weekly", "0", "--keep-monthly", "0"];
const pruneArgs = (...more: string[]) => ["prune", "--store", storeUrl, "--database-id", DB, ...newestOnly, ...more];

/** Every key under `<db>/<folder>/`, without the prefix, sorted. */
async function names(folder: "base" | "wal"): Promise<string[]> {
  const store = await openStore(storeUrl);
  const prefix = `${DB}/${folder}/`;
  const out: string[] = [];
  for await (const o of listAll(store, prefix)) out.push(o.key.slice(prefix.length));
  return out.sort();
}

beforeAll(async () => {
  rig = await startPitrRig("retention", DB);
  ({ work, storeUrl, key, signer, cluster } = rig);
  storeDir = new URL(storeUrl).pathname;
  // Three base backups, a row and a segment switch after each: WAL between them, and
  // after the newest, which a recovery from it must replay.
  await sql(cluster.url, "create table kept (n int)");
  for (const n of [1, 2, 3]) {
    const b = await runCli(["basebackup", ...rig.pushArgs(), "--json"], { DATABASE_URL: cluster.url }, asHost());
    expect(b.code, b.stderr).toBe(0);
    bases.push(JSON.parse(b.stdout) as BaseManifest);
    await sql(cluster.url, `insert into kept values (${n})`);
    await switchAndArchive(cluster.url);
  }
  // A timeline history far below nothing: recovery never asks for timeline 9 here, and prune must keep it.
  const history = path.join(work, "00000009.history");
  await writeFile(history, "1\t0/3000000\tno recovery target specified\n");
  if (rig.owner) await chown(history, rig.owner.uid, rig.owner.gid);
  const pushed = await runCli(["wal-push", history, ...rig.pushArgs()], {}, asHost());
  expect(pushed.code, pushed.stderr).toBe(0);
}, 300_000);

afterAll(async () => {
  if (rig) await stopRecovered(rig, recovered);
  await rig?.stop();
});

describe("strongroom prune of base backups and WAL", () => {
  it("refuses, as a usage error and deleting nothing, to prune base backups without a signer to read them", async () => {
    const before = [...(await names("base")), ...(await names("wal"))];
    const r = await runCli(pruneArgs());
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("shop has base backups, and prune counts only those a signer it trusts signed");
    expect(r.stderr).toContain("HINT: pass --signer");
    expect([...(await names("base")), ...(await names("wal"))]).toEqual(before);
  }, 60_000);

  it("halts on a base manifest another key signed, deletes nothing of the bases or WAL, and says which", async () => {
    const store = await openStore(storeUrl);
    const newest = bases.at(-1) as BaseManifest;
    const plantedId = "20260101T000000Z-planta";
    const plantedKey = `${DB}/base/${plantedId}/manifest.json`;
    // A store writer's own key signs a base stopped now, whose WAL starts at the very first segment.
    const forger = parseSigningKey(generateSigningKey().secret);
    const { signature: _genuine, ...fields } = newest;
    const forged = signBaseManifest(
      {
        ...fields,
        baseId: plantedId,
        stoppedAt: new Date().toISOString(),
        walSegments: { ...fields.walSegments, first: "000000010000000000000001" },
      },
      forger,
    );
    await store.putIfAbsent(plantedKey, `${JSON.stringify(forged, null, 2)}\n`);
    try {
      const before = [...(await names("base")), ...(await names("wal"))];
      const r = await runCli(pruneArgs("--signer", signer));
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("[PruneHaltedError]");
      expect(r.stderr).toContain(`${plantedKey} is not signed by a trusted signer`);
      expect(r.stdout).toContain("base backups and WAL: not pruned");
      // With --json: one document, the halt in it, and still a failure.
      const json = await runCli(pruneArgs("--signer", signer, "--json"));
      expect(json.code).toBe(1);
      expect(JSON.parse(json.stdout)).toMatchObject({ bases: { halted: { error: "PruneHaltedError" } } });
      expect([...(await names("base")), ...(await names("wal"))]).toEqual(before);
    } finally {
      await store.delete(plantedKey);
    }
  }, 60_000);

  it("prints the plan with --dry-run and deletes nothing", async () => {
    const before = [...(await names("base")), ...(await names("wal"))];
    const r = await runCli(pruneArgs("--signer", signer, "--dry-run"));
    expect(r.code, r.stderr).toBe(0);
    const [oldest, middle, newest] = bases as [BaseManifest, BaseManifest, BaseManifest];
    expect(r.stdout).toMatch(new RegExp(`${oldest.baseId} +\\S+ +would delete`));
    expect(r.stdout).toMatch(new RegExp(`${middle.baseId} +\\S+ +would delete`));
    expect(r.stdout).toMatch(new RegExp(`${newest.baseId} +\\S+ +keep +newest`));
    expect(r.stdout).toMatch(new RegExp(`WAL: \\d+ files below ${newest.walSegments.first}, .* to delete`));
    expect([...(await names("base")), ...(await names("wal"))]).toEqual(before);
  }, 60_000);

  it("keeping only the newest: deletes the older bases (manifest and object) and the WAL below its first segment, keeps every .history, audits each", async () => {
    const [oldest, middle, newest] = bases as [BaseManifest, BaseManifest, BaseManifest];
    const floor = newest.walSegments.first.slice(8);
    const walBefore = await names("wal");
    const below = walBefore.filter((n) => !n.endsWith(".history") && n.slice(8, 24) < floor);
    // The older bases' own WAL, and their backup history files, are in the archive to be pruned.
    expect(below).toContain(oldest.walSegments.first);
    expect(below.some((n) => n.endsWith(".backup"))).toBe(true);

    const r = await runCli(pruneArgs("--signer", signer, "--json"));
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as {
      bases: {
        keep: Array<{ baseId: string }>;
        expire: string[];
        wal: { keptFrom: string; delete: { count: number; first: string; last: string } };
        deleted: { bases: Array<{ baseId: string }>; wal: { deleted: number } };
      };
    };
    expect(out.bases.keep.map((k) => k.baseId)).toEqual([newest.baseId]);
    expect(out.bases.expire).toEqual([oldest.baseId, middle.baseId]);
    expect(out.bases.wal.keptFrom).toBe(newest.walSegments.first);
    expect(out.bases.deleted.wal.deleted).toBe(below.length);

    expect(await names("base")).toEqual([`${newest.baseId}/base.tar.zst.age`, `${newest.baseId}/manifest.json`]);
    const walAfter = await names("wal");
    expect(walAfter).toEqual(walBefore.filter((n) => !below.includes(n)));
    expect(walAfter).toContain("00000009.history");
    expect(walAfter).toContain(newest.walSegments.first);
    expect(walAfter).toContain(newest.walSegments.last);

    const store = await openStore(storeUrl);
    const rows = (await readAuditRows(new StoreAuditLog(store, `db#${DB}`))).filter((x) => x.event === "retain.delete");
    expect(rows.filter((x) => x.details?.kind === "base").map((x) => x.backupId)).toEqual([
      oldest.baseId,
      middle.baseId,
    ]);
    expect(rows.filter((x) => x.details?.kind === "wal").map((x) => x.details)).toEqual([
      { kind: "wal", objects: below.length, first: below[0], last: below.at(-1), keptFrom: newest.walSegments.first },
    ]);

    // Run again: nothing more goes.
    const again = await runCli(pruneArgs("--signer", signer, "--json"));
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ bases: { expire: [], wal: { delete: { count: 0 } } } });
  }, 120_000);

  it("leaves the newest base recoverable: restore --pitr --to-latest --start replays what was written after it", async () => {
    const newest = bases.at(-1) as BaseManifest;
    const dir = path.join(work, "recovered-latest");
    recovered.push(dir);
    const r = await runCli([
      "restore",
      "--pitr",
      "--store",
      storeUrl,
      "--database-id",
      DB,
      "--identity",
      key.file,
      "--signer",
      signer,
      "--pgdata",
      dir,
      "--to-latest",
      "--start",
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as { baseId: string; started: { port: number; timeline: number } };
    expect(result.baseId).toBe(newest.baseId);
    expect(result.started.timeline).toBe(2);
    const password = decodeURIComponent(new URL(cluster.url).password);
    const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${result.started.port}/postgres`;
    const rows = await waitFor("the recovered server", async () => {
      try {
        return await sql<{ n: number }>(url, "select n from kept order by n");
      } catch {
        return undefined;
      }
    });
    expect(rows).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
  }, 180_000);
});

describe("strongroom gc of uncommitted base backups", () => {
  it("removes a base object left without its manifest once it is older than the grace period, audited; the committed base stays", async () => {
    const store = await openStore(storeUrl);
    const newest = bases.at(-1) as BaseManifest;
    const stale = "20260102T030405Z-killed";
    const fresh = `${new Date().toISOString().slice(0, 19).replace(/[-:]/g, "")}Z-runnin`;
    for (const id of [stale, fresh])
      await store.putIfAbsent(`${DB}/base/${id}/base.tar.zst.age`, "age-encryption.org/v1\n…");
    const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000);
    await utimes(path.join(storeDir, DB, "base", stale, "base.tar.zst.age"), twoDaysAgo, twoDaysAgo);
    const gc = ["gc", "--store", storeUrl, "--database-id", DB, "--older-than", "1h"];

    const dry = await runCli([...gc, "--dry-run"]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain(`would remove ${DB}/base/${stale}/ (1 objects, an uncommitted base backup)`);
    expect(dry.stdout).not.toContain(fresh);
    const r = await runCli([...gc, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ orphans: [{ databaseId: DB, backupId: stale, kind: "base" }] });

    expect(await names("base")).toEqual(
      [`${fresh}/base.tar.zst.age`, `${newest.baseId}/base.tar.zst.age`, `${newest.baseId}/manifest.json`].sort(),
    );
    const rows = (await readAuditRows(new StoreAuditLog(store, `db#${DB}`))).filter((x) => x.event === "gc.delete");
    expect(rows.map((x) => [x.backupId, x.details?.reason])).toEqual([[stale, "uncommitted base backup"]]);
    // The committed base is still read as one.
    const text = (await readAll(await store.get(`${DB}/base/${newest.baseId}/manifest.json`))).toString();
    expect(readBaseManifest(text, `${DB}/base/${newest.baseId}/manifest.json`, new Set([signer])).baseId).toBe(
      newest.baseId,
    );
  }, 60_000);
});
