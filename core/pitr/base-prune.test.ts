import { mkdtemp, rm, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { Readable } from "node:stream";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { segmentName, signedBaseManifest } from "../../test/helpers/base-manifests.ts";
import { appendAudit, readAll } from "../audit/audit-log.ts";
import { generateSigningKey } from "../audit/row-signature.ts";
import { StoreAuditLog } from "../audit/store-audit-log.ts";
import { PruneHaltedError } from "../errors.ts";
import type { RetentionPolicy } from "../gfs.ts";
import { FileStore } from "../store/file-store.ts";
import { listAll } from "../store/object-store.ts";
import { baseKeys, serializeBaseManifest } from "./base-manifest.ts";
import { baseRetirementRows, planBasePrune, removeRetiredBases } from "./base-prune.ts";
import { baseRowsIn } from "./bases.ts";

/**
 * The deployed prune's two steps over a file store (the retention-prune Lambda runs the
 * same functions over S3): the plan's rows, appended as the flow's audit-append would,
 * then `removeRetiredBases`, which deletes only what the log retired and only WAL that is
 * both in the audited range and still expired by a fresh plan.
 */
const dir = await mkdtemp(path.join(tmpdir(), "base-prune-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

const host = generateSigningKey();
const signers = new Set([host.signer]);
const newestOnly: RetentionPolicy = { daily: 1, weekly: 0, monthly: 0, timeZone: "UTC" };
const NOW = new Date("2026-12-03T12:00:00Z");

const segment = segmentName;

const roots = new WeakMap<FileStore, string>();

async function freshStore(): Promise<FileStore> {
  const root = await mkdtemp(path.join(dir, "store-"));
  const store = new FileStore(pathToFileURL(root).href);
  await store.create();
  roots.set(store, root);
  return store;
}

/** Before every base here: WAL archived at 00:30. */
const EARLY = new Date("2026-12-03T00:30:00Z");

/** A signed base on `timeline` whose WAL is segment `n`, started and stopped at `at`. */
async function putBase(store: FileStore, baseId: string, timeline: number, n: number, at: string) {
  const manifest = signedBaseManifest({ secret: host.secret, baseId, timeline, segment: n, startedAt: at });
  await store.putIfAbsent(baseKeys("shop", baseId).manifest, serializeBaseManifest(manifest));
  await store.put(baseKeys("shop", baseId).object, Readable.from([Buffer.from("x")]));
}

/** WAL files as archived at `at` (the listing's last-modified time: the file's mtime). */
async function putWal(store: FileStore, at: Date, ...names: string[]) {
  for (const name of names) {
    await store.put(`shop/wal/${name}`, Readable.from([Buffer.from("w")]));
    await utimes(path.join(roots.get(store) as string, "shop", "wal", name), at, at);
  }
}

async function keys(store: FileStore, folder: "base" | "wal"): Promise<string[]> {
  const out: string[] = [];
  for await (const o of listAll(store, `shop/${folder}/`)) out.push(o.key.slice(`shop/${folder}/`.length));
  return out.sort();
}

/** The delete step, as the flow gives it the plan's WAL range. */
const remove = (store: FileStore, audit: StoreAuditLog, wal: { first: string; last: string; keptFrom: string }) =>
  removeRetiredBases({ store, databaseId: "shop", signers, policy: newestOnly, audit, now: NOW, wal });

/** Two bases of timeline 1 (segments 2 and 9) and WAL 2–9 archived before them, planned and audited: base 2 and WAL 2–8 retired. */
async function twoBasesPlanned() {
  const store = await freshStore();
  const audit = new StoreAuditLog(store, "db#shop");
  await putBase(store, "20261203T010000Z-aaaaaa", 1, 2, "2026-12-03T01:00:00.000Z");
  await putBase(store, "20261203T020000Z-bbbbbb", 1, 9, "2026-12-03T02:00:00.000Z");
  await putWal(store, EARLY, ...[2, 3, 4, 5, 6, 7, 8, 9].map((n) => segment(1, n)));
  await planAndAppend(store, audit);
  return { store, audit, wal: { first: segment(1, 2), last: segment(1, 8), keptFrom: segment(1, 9) } };
}

/** The plan step, and its rows appended as the flow's audit-append appends them. */
async function planAndAppend(store: FileStore, audit: StoreAuditLog) {
  const plan = await planBasePrune(store, "shop", signers, newestOnly, NOW, await baseRowsIn(audit, "shop"));
  for (const row of baseRetirementRows(plan)) {
    await appendAudit(audit, {
      at: NOW.toISOString(),
      event: "retain.delete",
      actor: "BackupFlow",
      databaseId: "shop",
      ...row,
    });
  }
  return plan;
}

describe("the deployed prune of base backups and WAL", () => {
  it("deletes the retired base and the audited WAL below the kept base, keeping every .history", async () => {
    const store = await freshStore();
    const audit = new StoreAuditLog(store, "db#shop");
    await putBase(store, "20261203T010000Z-aaaaaa", 1, 2, "2026-12-03T01:00:00.000Z");
    await putBase(store, "20261203T020000Z-bbbbbb", 1, 5, "2026-12-03T02:00:00.000Z");
    await putWal(store, EARLY, segment(1, 2), segment(1, 3), segment(1, 4), segment(1, 5), segment(1, 6));
    await putWal(store, EARLY, "00000002.history");
    const plan = await planAndAppend(store, audit);
    expect(plan.expire.map((b) => b.baseId)).toEqual(["20261203T010000Z-aaaaaa"]);
    const rows = await readAll(audit);
    expect(rows.map((r) => r.details?.kind)).toEqual(["base", "wal"]);
    expect(rows[0]?.details?.manifestSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(rows[1]?.details).toMatchObject({ first: segment(1, 2), last: segment(1, 4), keptFrom: segment(1, 5) });

    const wal = { first: segment(1, 2), last: segment(1, 4), keptFrom: segment(1, 5) };
    const result = await remove(store, audit, wal);
    expect(result.halted).toBeUndefined();
    expect(result.bases.map((b) => b.baseId)).toEqual(["20261203T010000Z-aaaaaa"]);
    expect(result.wal).toEqual({ deleted: 3, first: segment(1, 2), last: segment(1, 4) });
    expect(await keys(store, "base")).toEqual([
      "20261203T020000Z-bbbbbb/base.tar.zst.age",
      "20261203T020000Z-bbbbbb/manifest.json",
    ]);
    expect(await keys(store, "wal")).toEqual([segment(1, 5), segment(1, 6), "00000002.history"]);
  });

  it("deletes no WAL a base needs that came in after the plan: a new timeline's segments, numbered lower, inside the audited range", async () => {
    const { store, audit, wal } = await twoBasesPlanned();
    // Between the plan and the delete: a recovery to an earlier point promoted timeline 2
    // at segment 4, and a base was taken on it. Its segments are below the audited floor.
    await putWal(store, new Date("2026-12-03T02:30:00Z"), "00000002.history", segment(2, 4), segment(2, 5));
    await putBase(store, "20261203T030000Z-cccccc", 2, 4, "2026-12-03T03:00:00.000Z");
    const result = await remove(store, audit, wal);
    // The fresh plan keeps from timeline 2's segment 4: only what is below both goes.
    expect(result.wal).toEqual({ deleted: 2, first: segment(1, 2), last: segment(1, 3) });
    expect(await keys(store, "wal")).toEqual(
      expect.arrayContaining([segment(2, 4), segment(2, 5), segment(1, 4), segment(1, 9)]),
    );
  });

  it("deletes no WAL of a base still being taken on a newer timeline: below the floor, inside the audited range, but archived after the oldest kept base started", async () => {
    const { store, audit, wal } = await twoBasesPlanned();
    // Timeline 2 forked at segment 4 at 02:30; a base of it is being taken: no manifest yet.
    await putWal(store, new Date("2026-12-03T02:30:00Z"), "00000002.history", segment(2, 4), segment(2, 5));
    const result = await remove(store, audit, wal);
    expect(result.wal).toEqual({ deleted: 7, first: segment(1, 2), last: segment(1, 8) });
    expect(await keys(store, "wal")).toEqual([segment(1, 9), "00000002.history", segment(2, 4), segment(2, 5)].sort());
  });

  it("deletes no WAL without a row naming the range: a range the log never saw is ignored", async () => {
    const store = await freshStore();
    const audit = new StoreAuditLog(store, "db#shop");
    await putBase(store, "20261203T020000Z-bbbbbb", 1, 5, "2026-12-03T02:00:00.000Z");
    await putWal(store, EARLY, segment(1, 2), segment(1, 3), segment(1, 5));
    const wal = { first: segment(1, 2), last: segment(1, 3), keptFrom: segment(1, 5) };
    const result = await remove(store, audit, wal);
    expect(result.wal.deleted).toBe(0);
    expect(await keys(store, "wal")).toEqual([segment(1, 2), segment(1, 3), segment(1, 5)]);
  });

  it("finishes a retirement an interrupted prune left, instead of halting on its manifest; a store writer's manifest halts the WAL only", async () => {
    const store = await freshStore();
    const audit = new StoreAuditLog(store, "db#shop");
    await putBase(store, "20261203T010000Z-aaaaaa", 1, 2, "2026-12-03T01:00:00.000Z");
    await putBase(store, "20261203T020000Z-bbbbbb", 1, 5, "2026-12-03T02:00:00.000Z");
    await putWal(store, EARLY, segment(1, 2), segment(1, 5));
    await planAndAppend(store, audit); // the rows, and no delete: the flow stopped there
    // The next plan neither halts on the retired base's manifest nor retires it again.
    const next = await planBasePrune(store, "shop", signers, newestOnly, NOW, await baseRowsIn(audit, "shop"));
    expect(next.retired).toEqual(["20261203T010000Z-aaaaaa"]);
    expect(next.expire).toEqual([]);
    // A store writer plants a manifest: the retired base still goes, no WAL does, and it says why.
    await store.put("shop/base/29991231T000000Z-ffffff/manifest.json", Readable.from([Buffer.from("{}")]));
    const wal = { first: segment(1, 2), last: segment(1, 2), keptFrom: segment(1, 5) };
    const result = await remove(store, audit, wal);
    expect(result.bases.map((b) => b.baseId)).toEqual(["20261203T010000Z-aaaaaa"]);
    expect(result.halted).toBeInstanceOf(PruneHaltedError);
    expect(result.halted?.message).toContain("29991231T000000Z-ffffff");
    expect(result.wal.deleted).toBe(0);
    expect(await keys(store, "wal")).toEqual([segment(1, 2), segment(1, 5)]);
  });
});
