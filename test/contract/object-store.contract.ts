import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import { AbortedError, AlreadyExistsError, BucketNotFoundError, InvalidKeyError, NotFoundError } from "#core/errors.ts";
import { type GetOptions, getBytes, listAll, type ObjectStore } from "#core/store/object-store.ts";
import { readRanged } from "#core/store/ranged-read.ts";
import { storeSink } from "#core/store/store-sink.ts";
import { sha256Tap } from "#worker/stages/sha256-tap.ts";
import { randomStream, readAll, sha256 } from "../helpers/streams.ts";

export interface StoreFixture {
  store: ObjectStore;
  /** Multipart uploads still open under the store (S3 only; 0 elsewhere). */
  openUploads: () => Promise<number>;
  /** The same kind of store whose root (directory, bucket) does not exist. */
  missing: ObjectStore;
}

const MiB = 1024 * 1024;

/** The behaviour every ObjectStore must have (WAL-G style: one suite, every backend). */
export function objectStoreContract(name: string, fixture: () => Promise<StoreFixture>): void {
  describe(`ObjectStore contract: ${name}`, () => {
    it("returns exactly the bytes that were put, and stats their size", async () => {
      const { store } = await fixture();
      const data = randomBytes(3 * MiB + 17);
      const result = await store.put("db/a/object.bin", Readable.from([data]));
      expect(result.bytes).toBe(data.length);
      expect(sha256(await getBytes(store, "db/a/object.bin"))).toBe(sha256(data));
      expect((await store.stat("db/a/object.bin")).bytes).toBe(data.length);
    });

    it("streams a multi-part-sized object through put and get", async () => {
      const { store, openUploads } = await fixture();
      const tap = sha256Tap();
      await store.put("big/object.bin", randomStream(40 * MiB).pipe(tap), { expectedBytes: 40 * MiB });
      expect(sha256(await readAll(await store.get("big/object.bin")))).toBe(tap.result().sha256);
      expect(await openUploads()).toBe(0);
    });

    it("as a pipeline sink, commits the object only when the whole stream has arrived", async () => {
      const { store, openUploads } = await fixture();
      const tap = sha256Tap();
      const sink = storeSink(store, "sink/whole.bin", { expectedBytes: 20 * MiB });
      await pipeline(randomStream(20 * MiB), tap, sink);
      expect(sink.result().bytes).toBe(20 * MiB);
      expect(sha256(await getBytes(store, "sink/whole.bin"))).toBe(tap.result().sha256);
      expect(await openUploads()).toBe(0);
    });

    it("as a pipeline sink, fails the pipeline with an upstream error and leaves nothing behind", async () => {
      const { store, openUploads } = await fixture();
      const failing = randomStream(40 * MiB, { failAfterBytes: 20 * MiB });
      await expect(pipeline(failing, storeSink(store, "sink/failed.bin", { expectedBytes: 40 * MiB }))).rejects.toThrow(
        "source failed on purpose",
      );
      await expect(store.stat("sink/failed.bin")).rejects.toBeInstanceOf(NotFoundError);
      expect(await openUploads()).toBe(0);
    });

    it("replaces an object on a second put", async () => {
      const { store } = await fixture();
      await store.put("k", Readable.from([Buffer.from("one")]));
      await store.put("k", Readable.from([Buffer.from("two")]));
      expect((await getBytes(store, "k")).toString()).toBe("two");
    });

    it("put with ifAbsent writes a new key, and never replaces one: AlreadyExistsError, the original kept and no upload left open, in one request or many parts", async () => {
      const { store, openUploads } = await fixture();
      const small = Buffer.from("first");
      await store.put("t/small.bin", Readable.from([small]), { ifAbsent: true });
      await expect(
        store.put("t/small.bin", Readable.from([Buffer.from("second")]), { ifAbsent: true }),
      ).rejects.toBeInstanceOf(AlreadyExistsError);
      expect((await getBytes(store, "t/small.bin")).toString()).toBe("first");
      const big = randomBytes(12 * MiB);
      await store.put("t/big.bin", Readable.from([big]), { ifAbsent: true, expectedBytes: 12 * MiB });
      await expect(
        store.put("t/big.bin", randomStream(12 * MiB), { ifAbsent: true, expectedBytes: 12 * MiB }),
      ).rejects.toBeInstanceOf(AlreadyExistsError);
      expect(sha256(await getBytes(store, "t/big.bin"))).toBe(sha256(big));
      expect(await openUploads()).toBe(0);
    });

    it("serves inclusive byte ranges, with and without an end", async () => {
      const { store } = await fixture();
      const data = randomBytes(100_000);
      await store.put("ranged", Readable.from([data]));
      expect(await readAll(await store.get("ranged", { range: { start: 10, end: 19 } }))).toEqual(
        data.subarray(10, 20),
      );
      expect(await readAll(await store.get("ranged", { range: { start: 99_990 } }))).toEqual(data.subarray(99_990));
    });

    it("reports a missing object as NotFoundError from get and stat", async () => {
      const { store } = await fixture();
      await expect(store.get("missing/object")).rejects.toBeInstanceOf(NotFoundError);
      await expect(store.stat("missing/object")).rejects.toBeInstanceOf(NotFoundError);
    });

    it("put-if-absent of the very bytes already there succeeds, as a retry after a lost answer must", async () => {
      const { store } = await fixture();
      await store.putIfAbsent("m/retried.json", '{"v":1}');
      await expect(store.putIfAbsent("m/retried.json", '{"v":1}')).resolves.toEqual({
        key: "m/retried.json",
        bytes: 7,
      });
    });

    it("put-if-absent refuses an existing key with AlreadyExistsError and keeps the original", async () => {
      const { store } = await fixture();
      await store.putIfAbsent("m/manifest.json", '{"v":1}');
      await expect(store.putIfAbsent("m/manifest.json", '{"v":2}')).rejects.toBeInstanceOf(AlreadyExistsError);
      expect((await getBytes(store, "m/manifest.json")).toString()).toBe('{"v":1}');
    });

    it("lets exactly one of many concurrent put-if-absent calls win", async () => {
      const { store } = await fixture();
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) => store.putIfAbsent("race/commit", `writer-${i}`)),
      );
      const won = results.filter((r) => r.status === "fulfilled");
      expect(won).toHaveLength(1);
      for (const r of results) {
        if (r.status === "rejected") expect(r.reason).toBeInstanceOf(AlreadyExistsError);
      }
    });

    it("lists by prefix in key order across pages, and nothing outside the prefix", async () => {
      const { store } = await fixture();
      const keys = ["p/b/3", "p/a/1", "p/a/2", "p/c", "p/a/10", "q/x", "pz"];
      for (const k of keys) await store.putIfAbsent(k, k);
      const first = await store.list("p/", { pageSize: 2 });
      expect(first.objects.map((o) => o.key)).toEqual(["p/a/1", "p/a/10"]);
      expect(first.nextToken).toBeDefined();
      const all: string[] = [];
      let pageToken: string | undefined;
      do {
        const page = await store.list("p/", { pageSize: 2, ...(pageToken ? { pageToken } : {}) });
        all.push(...page.objects.map((o) => o.key));
        pageToken = page.nextToken;
      } while (pageToken);
      expect(all).toEqual(["p/a/1", "p/a/10", "p/a/2", "p/b/3", "p/c"]);
      const viaHelper: string[] = [];
      for await (const o of listAll(store, "p/a/")) viaHelper.push(o.key);
      expect(viaHelper).toEqual(["p/a/1", "p/a/10", "p/a/2"]);
      expect((await store.list("nothing-here/")).objects).toEqual([]);
    });

    it("deletes an object, and deleting a missing one succeeds", async () => {
      const { store } = await fixture();
      await store.putIfAbsent("d/1", "x");
      await store.delete("d/1");
      await expect(store.stat("d/1")).rejects.toBeInstanceOf(NotFoundError);
      await expect(store.delete("d/1")).resolves.toBeUndefined();
    });

    it("leaves no object and no open upload when the body fails mid-upload", async () => {
      const { store, openUploads } = await fixture();
      const body = randomStream(64 * MiB, { failAfterBytes: 36 * MiB });
      await expect(store.put("failed/dump", body, { expectedBytes: 64 * MiB })).rejects.toThrow(/failed on purpose/);
      await expect(store.stat("failed/dump")).rejects.toBeInstanceOf(NotFoundError);
      expect((await store.list("failed/")).objects).toEqual([]);
      expect(await openUploads()).toBe(0);
    });

    it("aborts on its signal with AbortedError, leaving no object and no open upload", async () => {
      const { store, openUploads } = await fixture();
      const controller = new AbortController();
      const body = randomStream(256 * MiB, {
        onProgress: (sent) => {
          if (sent === 40 * MiB) controller.abort();
        },
      });
      await expect(
        store.put("aborted/dump", body, { expectedBytes: 256 * MiB, signal: controller.signal }),
      ).rejects.toBeInstanceOf(AbortedError);
      await expect(store.stat("aborted/dump")).rejects.toBeInstanceOf(NotFoundError);
      expect((await store.list("aborted/")).objects).toEqual([]);
      expect(await openUploads()).toBe(0);
    });

    it("lists a store whose root does not exist as BucketNotFoundError, never as an empty store", async () => {
      const { missing } = await fixture();
      await expect(missing.list("")).rejects.toBeInstanceOf(BucketNotFoundError);
    });

    it("reads an object back through ranged reads in order, with no more GETs in flight than asked", async () => {
      const { store } = await fixture();
      const data = randomBytes(5 * MiB + 123);
      await store.put("ranged/whole.bin", Readable.from([data]));
      let open = 0;
      let most = 0;
      const counting: ObjectStore = Object.assign(Object.create(store) as ObjectStore, {
        get: async (key: string, options?: GetOptions) => {
          open++;
          most = Math.max(most, open);
          const body = await store.get(key, options);
          body.once("close", () => open--);
          return body;
        },
      });
      for (const rangeBytes of [MiB, 3 * MiB, 8 * MiB]) {
        const read = readRanged(counting, "ranged/whole.bin", { bytes: data.length, rangeBytes, inFlight: 3 });
        expect(sha256(await readAll(read))).toBe(sha256(data));
      }
      expect(most).toBeGreaterThan(1);
      expect(most).toBeLessThanOrEqual(3);
      expect(await readAll(readRanged(store, "ranged/whole.bin", { bytes: 0 }))).toHaveLength(0);
    });

    it("fails a ranged read of a missing object with NotFoundError, without retrying it", async () => {
      const { store } = await fixture();
      const retries: unknown[] = [];
      const read = readRanged(store, "ranged/missing.bin", { bytes: MiB, onRetry: (r) => retries.push(r) });
      await expect(readAll(read)).rejects.toBeInstanceOf(NotFoundError);
      expect(retries).toEqual([]);
    });

    it("rejects keys that could escape the store with InvalidKeyError", async () => {
      const { store } = await fixture();
      for (const key of ["", "/abs", "a/../b", "a//b", "./a", "a/"]) {
        await expect(store.putIfAbsent(key, "x")).rejects.toBeInstanceOf(InvalidKeyError);
      }
    });
  });
}
