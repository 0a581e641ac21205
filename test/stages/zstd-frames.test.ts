import { randomBytes } from "node:crypto";
import type { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import { zstdCompressFrames, zstdDecompressFrames } from "../../containers/worker/src/stages/zstd-frames.ts";
import { CorruptStreamError, TruncatedStreamError } from "../../core/errors.ts";
import { runCommand } from "../helpers/run.ts";
import { chunked, flipByte } from "../helpers/streams.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const BOUNDARIES = [0, 1, 64 * KiB - 1, 64 * KiB, 64 * KiB + 1, 4 * MiB, 4 * MiB + 1, 9 * MiB + 7];

/** Text-like data that compresses a few times over, like a dump. */
function dumpLike(bytes: number): Buffer {
  const words = ["alpha", "beta", "gamma", "delta", "2026-11-21", "\\N", '{"k": 1}', "row"];
  const out = Buffer.alloc(bytes);
  let offset = 0;
  const noise = randomBytes(Math.ceil(bytes / 4) + 16).toString("base64");
  let n = 0;
  while (offset < bytes) {
    const piece = n % 3 === 0 ? noise.slice(n, n + 12) : (words[n % words.length] as string);
    offset += out.write(`${piece}\t`, offset);
    n++;
  }
  return out;
}

async function through(data: Buffer, stage: Transform, sizes?: number[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(chunked(data, sizes), stage, async (source) => {
    for await (const c of source) out.push(c);
  });
  return Buffer.concat(out);
}

const compress = (data: Buffer, sizes?: number[]) => through(data, zstdCompressFrames({ frameBytes: 1 * MiB }), sizes);
const decompress = (data: Buffer, sizes?: number[]) => through(data, zstdDecompressFrames(), sizes);

describe("framed zstd", () => {
  it.for(BOUNDARIES)("round-trips %i bytes byte for byte, and zstd -d reads the same bytes", async (size) => {
    const plain = dumpLike(size);
    const framed = await compress(plain, [65536, 1, 300_000]);
    expect((await decompress(framed, [7, 65536])).equals(plain)).toBe(true);
    const cli = await runCommand("zstd", ["-d", "-c", "-q"], framed);
    expect(cli.stderr).toBe("");
    expect(cli.stdout.equals(plain)).toBe(true);
  });

  it("keeps frames in input order with several frames in flight", async () => {
    const plain = Buffer.concat(Array.from({ length: 12 }, (_, i) => Buffer.alloc(300 * KiB, i)));
    const framed = await through(plain, zstdCompressFrames({ frameBytes: 256 * KiB, maxInFlight: 4 }));
    expect((await through(framed, zstdDecompressFrames({ maxInFlight: 4 }))).equals(plain)).toBe(true);
  });

  it("compresses dump-like data", async () => {
    const plain = dumpLike(8 * MiB);
    expect((await compress(plain)).length).toBeLessThan(plain.length / 2);
  });

  it("rejects a stream cut inside a frame with TruncatedStreamError", async () => {
    const framed = await compress(dumpLike(3 * MiB));
    for (const cut of [3, 10, 25, framed.length - 1]) {
      await expect(decompress(framed.subarray(0, cut))).rejects.toBeInstanceOf(TruncatedStreamError);
    }
    await expect(decompress(Buffer.alloc(0))).rejects.toBeInstanceOf(TruncatedStreamError);
  });

  it("rejects garbled input with CorruptStreamError", async () => {
    const framed = await compress(dumpLike(3 * MiB));
    const badMagic = Buffer.from(framed);
    flipByte(badMagic, 0);
    await expect(decompress(badMagic)).rejects.toBeInstanceOf(CorruptStreamError);

    const badBody = Buffer.from(framed);
    for (let i = 40; i < 80; i++) flipByte(badBody, i);
    await expect(decompress(badBody)).rejects.toBeInstanceOf(CorruptStreamError);

    const badSize = Buffer.from(framed);
    badSize.writeUInt32LE(badSize.readUInt32LE(16) + 1, 16); // plainBytes of frame 0
    await expect(decompress(badSize)).rejects.toThrow(/header says/);

    const plainZstd = (await runCommand("zstd", ["-c", "-q"], Buffer.from("hello"))).stdout;
    await expect(decompress(plainZstd)).rejects.toThrow(/not a strongroom framed stream/);
  });
});
