import { randomBytes } from "node:crypto";
import type { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { compress as zstdWithoutChecksum } from "@mongodb-js/zstd";
import { describe, expect, it } from "vitest";
import { CorruptStreamError, TruncatedStreamError } from "#core/errors.ts";
import { SKIPPABLE_MAGIC, zstdCompressFrames, zstdDecompressFrames } from "#worker/stages/zstd-frames.ts";
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

describe("framed zstd from a hostile writer", () => {
  /** A strongroom size header followed by `frame`, declaring `plainBytes`. */
  function framed(frame: Buffer, plainBytes: number): Buffer {
    const header = Buffer.alloc(20);
    header.writeUInt32LE(SKIPPABLE_MAGIC, 0);
    header.writeUInt32LE(12, 4);
    header.write("SRZ1", 8);
    header.writeUInt32LE(frame.length, 12);
    header.writeUInt32LE(plainBytes, 16);
    return Buffer.concat([header, frame]);
  }

  /** A zstd frame of `blocks` RLE blocks of 128 KiB each, with no declared content size. */
  function rleBomb(blocks: number): Buffer {
    const parts = [Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, (17 - 10) << 3])];
    for (let i = 0; i < blocks; i++) {
      const header = Buffer.alloc(4);
      header.writeUIntLE((i === blocks - 1 ? 1 : 0) | (1 << 1) | ((128 * KiB) << 3), 0, 3);
      header[3] = 0x41;
      parts.push(header);
    }
    return Buffer.concat(parts);
  }

  it("refuses, before decoding, a frame whose blocks would expand far past its size header", async () => {
    // 4 KiB of RLE blocks that would regenerate 128 MiB, under a header that says 1 MiB.
    const bomb = framed(rleBomb(1024), MiB);
    await expect(through(bomb, zstdDecompressFrames())).rejects.toThrow(
      /frame 0 refused before decoding: its blocks may regenerate 134217728 bytes, not 1048576/,
    );
  });

  it("decodes an honest frame of RLE blocks whose size header is right", async () => {
    expect(await through(framed(rleBomb(8), MiB), zstdDecompressFrames())).toEqual(Buffer.alloc(MiB, 0x41));
  });

  it("refuses a frame larger than the most its declared plain size can compress to", async () => {
    const data = randomBytes(64 * KiB);
    const [frame] = await compressedFrames(data);
    await expect(through(framed(frame as Buffer, 100), zstdDecompressFrames())).rejects.toThrow(
      /implausible frame sizes/,
    );
  });

  it("refuses two zstd frames under one size header", async () => {
    const [a] = await compressedFrames(Buffer.alloc(1000, 1));
    const [b] = await compressedFrames(Buffer.alloc(1000, 2));
    const twice = framed(Buffer.concat([a as Buffer, b as Buffer]), 2000);
    await expect(through(twice, zstdDecompressFrames())).rejects.toThrow(
      /frame 0 refused before decoding: its blocks do not end where the frame does/,
    );
  });

  it("writes every frame with a content checksum, and refuses a frame whose checksum does not match", async () => {
    const frames = await compressedFrames(dumpLike(300 * KiB));
    for (const frame of frames) expect(((frame[4] as number) >> 2) & 1).toBe(1);
    const [frame] = frames;
    const damaged = Buffer.from(frame as Buffer);
    // The last 4 bytes are the checksum: the blocks still decode, only the checksum catches it.
    damaged.writeUInt8((damaged.at(-1) as number) ^ 0x01, damaged.length - 1);
    await expect(through(framed(damaged, 300 * KiB), zstdDecompressFrames())).rejects.toThrow(
      /frame 0 does not decompress: .*checksum/,
    );
  });

  it("refuses a frame without a checksum where one is required (format 2), and reads it where not (format 1)", async () => {
    const plain = dumpLike(200 * KiB);
    const unchecked = framed(await zstdWithoutChecksum(plain, 3), plain.length);
    await expect(through(unchecked, zstdDecompressFrames({ requireChecksum: true }))).rejects.toThrow(
      /frame 0 refused before decoding: it carries no content checksum/,
    );
    expect((await through(unchecked, zstdDecompressFrames())).equals(plain)).toBe(true);
  });

  /** The zstd frames our compressor writes for `data`, without their size headers. */
  async function compressedFrames(data: Buffer): Promise<Buffer[]> {
    const stream = await through(data, zstdCompressFrames());
    const frames: Buffer[] = [];
    for (let pos = 0; pos < stream.length; ) {
      const size = stream.readUInt32LE(pos + 12);
      frames.push(stream.subarray(pos + 20, pos + 20 + size));
      pos += 20 + size;
    }
    return frames;
  }
});
