import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { Readable } from "node:stream";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { segmentName, signedBaseManifest } from "../../test/helpers/base-manifests.ts";
import { generateSigningKey, parseSigningKey } from "../audit/row-signature.ts";
import { walPrefix } from "../keys.ts";
import { FileStore } from "../store/file-store.ts";
import { baseKeys, serializeBaseManifest } from "./base-manifest.ts";
import { newestWalAge } from "./wal-age.ts";
import { encodeWalHeader, signWalRecord, WAL_FORMAT } from "./wal-record.ts";

/**
 * The archive's age from a handful of requests (core/pitr/wal-age.ts), over a file store
 * holding signed WAL headers: the walk up the log ids and timelines from the newest base,
 * and what a store writer's planted names can and cannot do to it.
 */
const dir = await mkdtemp(path.join(tmpdir(), "wal-age-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

const host = generateSigningKey();
const signer = parseSigningKey(host.secret);
const signers = new Set([host.signer]);
const NOW = new Date("2026-12-03T12:00:00Z");
const quiet = { debug() {}, info() {}, warn() {}, error() {} };
let store: FileStore;

/** Pushed `minutesAgo` before NOW, signed by the host (by `cluster`'s server). */
async function push(name: string, minutesAgo: number, timeline: number, cluster = "7000000000000000001", into = store) {
  const record = signWalRecord(
    {
      format: WAL_FORMAT,
      databaseId: "shop",
      name,
      kind: name.endsWith(".history") ? "history" : "segment",
      timeline,
      systemIdentifier: cluster,
      plainBytes: 1,
      plainSha256: "0".repeat(64),
      pushedAt: new Date(NOW.getTime() - minutesAgo * 60_000).toISOString(),
    },
    signer,
  );
  await into.put(`${walPrefix("shop")}${name}`, Readable.from([encodeWalHeader(record)]));
}

/** A store of its own with a signed base at segment `segment` of timeline 1. */
async function storeWithBase(segment: number): Promise<FileStore> {
  const own = new FileStore(pathToFileURL(await mkdtemp(path.join(dir, "own-"))).href);
  await own.create();
  const base = signedBaseManifest({
    secret: host.secret,
    baseId: "20261203T010000Z-bbbbbb",
    segment,
    startedAt: "2026-12-03T01:00:00.000Z",
  });
  await own.putIfAbsent(baseKeys("shop", base.baseId).manifest, serializeBaseManifest(base));
  return own;
}

const plant = (name: string) => store.put(`${walPrefix("shop")}${name}`, Readable.from([Buffer.from("forged")]));
const age = () => newestWalAge({ store, databaseId: "shop", signers, now: NOW, log: quiet });

beforeAll(async () => {
  store = new FileStore(pathToFileURL(await mkdtemp(path.join(dir, "store-"))).href);
  await store.create();
  const base = signedBaseManifest({
    secret: host.secret,
    baseId: "20261203T010000Z-aaaaaa",
    segment: 2,
    startedAt: "2026-12-03T01:00:00.000Z",
  });
  await store.putIfAbsent(baseKeys("shop", base.baseId).manifest, serializeBaseManifest(base));
  // Segments 0 to 600 of timeline 1: log ids 0, 1 and 2; the newest pushed a minute ago.
  for (let n = 0; n <= 600; n++) await push(segmentName(1, n), 601 - n, 1);
}, 120_000);

describe("the archive's age in a few requests", () => {
  it("walks up the log ids from the newest base to the newest segment, reading one header", async () => {
    const result = await age();
    expect(result.newest?.name).toBe(segmentName(1, 600));
    expect(result.ageMinutes).toBeCloseTo(1, 5);
    // Bases listed, the manifest read; log ids 1, 2 and 3 asked; timeline 2 asked; log id 2 listed; one header.
    expect(result.requests).toBeLessThanOrEqual(8);
  });

  it("passes over a log id a store writer filled with names of its own, for the one before it", async () => {
    await plant(segmentName(1, 3 * 256 + 5));
    const result = await age();
    expect(result.newest?.name).toBe(segmentName(1, 600));
  });

  it("follows a promotion to the newer timeline, and passes over a planted timeline past it", async () => {
    await push("00000002.history", 0.5, 2);
    await push(segmentName(2, 600), 0.2, 2);
    await plant(`${segmentName(3, 0)}`);
    const result = await age();
    expect(result.newest?.name).toBe(segmentName(2, 600));
    expect(result.ageMinutes).toBeCloseTo(0.2, 5);
  });

  it("takes the newest push over the timelines, not the newest timeline's: a restored server's short-lived timeline does not hide the live one", async () => {
    const own = await storeWithBase(2);
    await push(segmentName(1, 2), 30, 1, undefined, own);
    await push(segmentName(1, 3), 1, 1, undefined, own);
    await push("00000002.history", 600, 2, undefined, own);
    await push(segmentName(2, 3), 600, 2, undefined, own);
    const result = await newestWalAge({ store: own, databaseId: "shop", signers, now: NOW, log: quiet });
    expect(result.newest?.name).toBe(segmentName(1, 3));
    expect(result.ageMinutes).toBeCloseTo(1, 5);
  });

  it("never takes another cluster's WAL under the same id (a rebuilt server) for this one's", async () => {
    const own = await storeWithBase(2);
    await push(segmentName(1, 2), 90, 1, undefined, own);
    await push(segmentName(1, 3), 1, 1, "7999999999999999999", own);
    const result = await newestWalAge({ store: own, databaseId: "shop", signers, now: NOW, log: quiet });
    expect(result.newest?.name).toBe(segmentName(1, 2));
    expect(result.ageMinutes).toBeCloseTo(90, 5);
  });

  it("finds the newest of many log ids in a few listings (a galloping search), and stops within its bound on a store writer's endless prefixes", async () => {
    const own = await storeWithBase(2);
    // 40 log ids past the base's: a log id's first and last segment each.
    for (let x = 0; x <= 40; x++) await push(segmentName(1, x * 256), 1000 - x, 1, undefined, own);
    await push(segmentName(1, 40 * 256 + 255), 1, 1, undefined, own);
    const found = await newestWalAge({ store: own, databaseId: "shop", signers, now: NOW, log: quiet });
    expect(found.newest?.name).toBe(segmentName(1, 40 * 256 + 255));
    expect(found.requests).toBeLessThanOrEqual(20);
    // Planted timelines 2 to 300: passed over within the check's bound, the base's own still read.
    for (let t = 2; t <= 300; t++) {
      await own.put(`${walPrefix("shop")}${segmentName(t, 0)}`, Readable.from([Buffer.from("forged")]));
    }
    const planted = await newestWalAge({ store: own, databaseId: "shop", signers, now: NOW, log: quiet });
    expect(planted.requests).toBeLessThanOrEqual(64);
    expect(planted.newest?.name).toBe(segmentName(1, 40 * 256 + 255));
  });

  it("gives no age rather than a planted one when nothing it reads is signed", async () => {
    const empty = new FileStore(pathToFileURL(await mkdtemp(path.join(dir, "empty-"))).href);
    await empty.create();
    await empty.put(`${walPrefix("shop")}${segmentName(1, 1)}`, Readable.from([Buffer.from("forged")]));
    const result = await newestWalAge({ store: empty, databaseId: "shop", signers, now: NOW, log: quiet });
    expect(result.ageMinutes).toBeUndefined();
    expect(result.newest).toBeUndefined();
  });
});
