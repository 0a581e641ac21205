import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { NotFoundError } from "../errors.ts";
import type { GetOptions, ObjectStore } from "./object-store.ts";
import { readRanged } from "./ranged-read.ts";

const MiB = 1024 * 1024;

/**
 * A store whose bodies can be cut: `cut(start)` says after how many bytes the body of a
 * GET starting at `start` fails with a connection reset. The ranges, offsets and resume
 * logic are what is under test; the contract suite runs readRanged on the real stores.
 */
function cuttingStore(data: Buffer, cut: (start: number, attempt: number) => number | undefined) {
  const starts: number[] = [];
  const store = {
    get: async (_key: string, options: GetOptions = {}) => {
      const start = options.range?.start ?? 0;
      const end = (options.range?.end ?? data.length - 1) + 1;
      const after = cut(start, starts.filter((s) => s === start).length);
      starts.push(start);
      const body = data.subarray(start, end);
      return Readable.from(
        (async function* () {
          for (let at = 0; at < body.length; at += 64 * 1024) {
            if (after !== undefined && at >= after) {
              throw Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
            }
            yield body.subarray(at, Math.min(body.length, at + 64 * 1024, after ?? Number.POSITIVE_INFINITY));
          }
        })(),
        { objectMode: false },
      );
    },
  } as unknown as ObjectStore;
  return { store, starts };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe("readRanged", () => {
  it("asks for a cut range again from the byte it reached, and returns every byte once, in order", async () => {
    const data = randomBytes(20 * MiB + 5);
    // The second range (8 MiB on) is cut after 3 MiB, once.
    const { store, starts } = cuttingStore(data, (start, attempt) =>
      start === 8 * MiB && attempt === 0 ? 3 * MiB : undefined,
    );
    const retries: { resumedAt: number; attempt: number }[] = [];
    const read = readRanged(store, "k", { bytes: data.length, retryDelayMs: 1, onRetry: (r) => retries.push(r) });
    expect((await readAll(read)).equals(data)).toBe(true);
    expect(starts).toEqual([0, 8 * MiB, 16 * MiB, 11 * MiB]);
    expect(retries).toEqual([expect.objectContaining({ start: 8 * MiB, resumedAt: 11 * MiB, attempt: 1 })]);
  });

  it("gives up on a range after its attempts, with the connection's error", async () => {
    const data = randomBytes(3 * MiB);
    // The first range is cut after 512 KiB, and every request to resume it is cut at once.
    const { store, starts } = cuttingStore(data, (start) => (start === 0 ? MiB / 2 : start < MiB ? 0 : undefined));
    const read = readRanged(store, "k", { bytes: data.length, rangeBytes: MiB, attempts: 3, retryDelayMs: 1 });
    await expect(readAll(read)).rejects.toMatchObject({ code: "ECONNRESET" });
    // The first range: at 0, then twice from 512 KiB; three attempts in all.
    expect(starts.filter((s) => s < MiB)).toEqual([0, MiB / 2, MiB / 2]);
  });

  it("does not retry what a new request cannot mend", async () => {
    const store = {
      get: async () => {
        throw new NotFoundError("no such object: k");
      },
    } as unknown as ObjectStore;
    const retries: unknown[] = [];
    await expect(readAll(readRanged(store, "k", { bytes: MiB, onRetry: (r) => retries.push(r) }))).rejects.toThrow(
      NotFoundError,
    );
    expect(retries).toEqual([]);
  });
});
