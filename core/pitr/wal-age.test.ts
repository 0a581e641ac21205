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

/** Pushed `minutesAgo` before NOW, signed by the host. */
async function push(name: string, minutesAgo: number, timeline: number) {
  const record = signWalRecord(
    {
      format: WAL_FORMAT,
      databaseId: "shop",
      name,
      kind: name.endsWith(".history") ? "history" : "segment",
      timeline,
      systemIdentifier: "7000000000000000001",
      plainBytes: 1,
      plainSha256: "0".repeat(64),
      pushedAt: new Date(NOW.getTime() - minutesAgo * 60_000).toISOString(),
    },
    signer,
  );
  await store.put(`${walPrefix("shop")}${name}`, Readable.from([encodeWalHeader(record)]));
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

  it("gives no age rather than a planted one when nothing it reads is signed", async () => {
    const empty = new FileStore(pathToFileURL(await mkdtemp(path.join(dir, "empty-"))).href);
    await empty.create();
    await empty.put(`${walPrefix("shop")}${segmentName(1, 1)}`, Readable.from([Buffer.from("forged")]));
    const result = await newestWalAge({ store: empty, databaseId: "shop", signers, now: NOW, log: quiet });
    expect(result.ageMinutes).toBeUndefined();
    expect(result.newest).toBeUndefined();
  });
});
