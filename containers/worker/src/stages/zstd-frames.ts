import { Transform, type TransformCallback } from "node:stream";
import { promisify } from "node:util";
import { constants, zstdCompress } from "node:zlib";
import { decompress } from "@mongodb-js/zstd";
import { CorruptStreamError, TruncatedStreamError } from "#core/errors.ts";
import { ByteQueue } from "./byte-queue.ts";
import { OrderedWork } from "./ordered-work.ts";

/**
 * Framed zstd: a standard multi-frame .zst in which every zstd frame is preceded by a
 * zstd skippable frame carrying its sizes:
 *
 *   skippable frame: u32le magic 0x184D2A53 | u32le 12 | "SRZ1" | u32le compressedBytes | u32le plainBytes
 *   zstd frame:      compressedBytes bytes, decompressing to plainBytes bytes
 *
 * `zstd -d` skips the skippable frames, so the output is an ordinary .zst; our own
 * decompressor uses the sizes to split frames without a streaming decoder, which lets
 * both directions run frames concurrently on the libuv pool.
 *
 * Every frame carries zstd's content checksum (the low 32 bits of XXH64 over its plain
 * bytes), checked by every decoder, `zstd -d` included: it proves each plain byte is
 * the one pg_dump wrote, inside the compressor's own pass, where a separate SHA-256 of
 * the plain stream cost 0.56 core-s per GB (docs/formats.md, manifest format 2).
 *
 * Compression is node:zlib's zstd, which can set the checksum flag; decompression is
 * @mongodb-js/zstd (ZSTD_decompress verifies a checksum that is present), measured
 * 1.5× faster than zlib's here.
 */
export const SKIPPABLE_MAGIC = 0x184d2a53;
const TAG = Buffer.from("SRZ1");
const HEADER_BYTES = 8 + 12;
const ZSTD_FRAME_MAGIC = 0xfd2fb528;
export const DEFAULT_FRAME_BYTES = 4 * 1024 * 1024;
/**
 * Frames declaring more plain bytes than this are refused when reading: we write 4 MiB
 * frames, and memory is this × the frames in flight.
 */
const MAX_FRAME_PLAIN_BYTES = 32 * 1024 * 1024;
const MAX_BLOCK_BYTES = 128 * 1024;

/** The most a zstd frame of `plainBytes` can take (ZSTD_COMPRESSBOUND). */
export function compressBound(plainBytes: number): number {
  return plainBytes + (plainBytes >>> 8) + (plainBytes < MAX_BLOCK_BYTES ? (MAX_BLOCK_BYTES - plainBytes) >>> 11 : 0);
}

/**
 * Checks, before any decoding, that `body` is exactly one zstd frame whose output
 * cannot exceed about `plainBytes`. A hostile frame could otherwise expand a few KiB
 * of RLE blocks into gigabytes before the size check after decoding. The check walks
 * the block headers (3 bytes each, about 32 per 4 MiB frame) and never decodes a block.
 * - Raw and RLE blocks regenerate exactly their size.
 * - A compressed block regenerates at most the block maximum (128 KiB, or the window).
 * The sum of those bounds the output, whether or not the frame declares its content
 * size; our compressor (level 3, full blocks) does not declare it. A declared size
 * must equal `plainBytes`.
 */
export function assertBoundedFrame(body: Buffer, plainBytes: number, index: number, requireChecksum = false): void {
  const bad = (why: string) => new CorruptStreamError(`frame ${index} refused before decoding: ${why}`);
  if (body.length < 6 || body.readUInt32LE(0) !== ZSTD_FRAME_MAGIC) throw bad("not a zstd frame");
  const descriptor = body[4] as number;
  const fcsFlag = descriptor >> 6;
  const singleSegment = (descriptor >> 5) & 1;
  const checksum = (descriptor >> 2) & 1;
  if ((descriptor >> 3) & 1) throw bad("reserved header bit set");
  if (descriptor & 3) throw bad("it needs a dictionary");
  if (requireChecksum && !checksum) throw bad("it carries no content checksum, which its manifest promises");
  let pos = 5;
  let windowBytes = MAX_BLOCK_BYTES;
  if (!singleSegment) {
    const w = body[pos++] as number;
    const base = 2 ** (10 + (w >> 3));
    windowBytes = base + (base / 8) * (w & 7);
  }
  const fcsBytes = fcsFlag === 0 ? singleSegment : ([0, 2, 4, 8][fcsFlag] as number);
  if (pos + fcsBytes > body.length) throw bad("header cut short");
  if (fcsBytes > 0) {
    let declared = 0;
    for (let i = fcsBytes - 1; i >= 0; i--) declared = declared * 256 + (body[pos + i] as number);
    if (fcsBytes === 2) declared += 256;
    if (declared !== plainBytes) throw bad(`it declares ${declared} bytes, its size header ${plainBytes}`);
    if (singleSegment) windowBytes = declared;
  }
  pos += fcsBytes;
  const blockMax = Math.min(windowBytes, MAX_BLOCK_BYTES);
  let bound = 0;
  for (let last = 0; !last; ) {
    if (pos + 3 > body.length) throw bad("blocks cut short");
    const header = body.readUIntLE(pos, 3);
    pos += 3;
    last = header & 1;
    const type = (header >> 1) & 3;
    const size = header >>> 3;
    if (type === 3) throw bad("reserved block type");
    if (size > blockMax) throw bad(`a block of ${size} bytes`);
    bound += type === 2 ? blockMax : size;
    pos += type === 1 ? 1 : size;
  }
  // Full blocks give bound ≈ plainBytes; the slack admits a compressor that splits blocks.
  if (bound > 2 * plainBytes + blockMax) throw bad(`its blocks may regenerate ${bound} bytes, not ${plainBytes}`);
  if (checksum) pos += 4;
  if (pos !== body.length) throw bad("its blocks do not end where the frame does");
}

export interface ZstdFramesOptions {
  /** @default 3 */
  level?: number;
  /** Plain bytes per frame. @default 4 MiB */
  frameBytes?: number;
  /** Frames (de)compressing at once; 2 saturates 2 cores. @default 2 */
  maxInFlight?: number;
  /**
   * Decompression: refuse a frame without a content checksum (manifest format 2 promises
   * one in every frame; format 1 frames have none). @default false
   */
  requireChecksum?: boolean;
}

const zstdCompressAsync = promisify(zstdCompress);
/**
 * zlib's output buffer. Each filled chunk comes back through the event loop (16 KiB by
 * default: dozens of hops per frame), and each is a fresh allocation: a whole-frame
 * bound (4 MiB) cost 1 core-s per GB in page faults and GC. 1 MiB holds a typical
 * frame (3–8× compressed) in one chunk; measured side by side on the 827 MB bench dump,
 * it made the backup 0.3 core-s cheaper than @mongodb-js/zstd + a plain SHA-256.
 */
const COMPRESS_CHUNK_BYTES = 1024 * 1024;

/** One zstd frame with a content checksum, compressed on the libuv pool. */
function compressFrame(plain: Buffer, level: number): Promise<Buffer> {
  return zstdCompressAsync(plain, {
    chunkSize: COMPRESS_CHUNK_BYTES,
    params: { [constants.ZSTD_c_compressionLevel]: level, [constants.ZSTD_c_checksumFlag]: 1 },
  });
}

class ZstdCompressFrames extends Transform {
  private readonly level: number;
  private readonly frameBytes: number;
  private readonly work: OrderedWork<Buffer[]>;
  private buffer: Buffer;
  private filled = 0;
  private frames = 0;
  /** Frame buffers whose compression finished, reused to spare the allocator and GC. */
  private readonly spare: Buffer[] = [];

  constructor(options: ZstdFramesOptions) {
    super();
    this.level = options.level ?? 3;
    this.frameBytes = options.frameBytes ?? DEFAULT_FRAME_BYTES;
    this.work = new OrderedWork(options.maxInFlight ?? 2, (parts) => {
      for (const part of parts) this.push(part);
    });
    this.buffer = Buffer.allocUnsafe(this.frameBytes);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    // Most pieces only fill the frame buffer: answered at once, without a promise per piece.
    const submitted = this.consume(chunk, 0);
    if (submitted) submitted.then(() => callback(), callback);
    else callback();
  }

  override _flush(callback: TransformCallback): void {
    // An empty input still yields one (empty) frame: `zstd -d` rejects a 0-byte file.
    const last = this.filled > 0 || this.frames === 0 ? this.frame(this.buffer.subarray(0, this.filled)) : undefined;
    (last ?? Promise.resolve()).then(() => this.work.drain()).then(() => callback(), callback);
  }

  /** Takes `chunk` from `offset` on; returns a promise only once a frame was submitted. */
  private consume(chunk: Buffer, offset: number): Promise<void> | undefined {
    while (offset < chunk.length) {
      // Whole frames straight from the input, without a copy.
      if (this.filled === 0 && chunk.length - offset >= this.frameBytes) {
        const next = offset + this.frameBytes;
        return this.frame(chunk.subarray(offset, next)).then(() => this.consume(chunk, next));
      }
      const n = Math.min(this.frameBytes - this.filled, chunk.length - offset);
      chunk.copy(this.buffer, this.filled, offset, offset + n);
      this.filled += n;
      offset += n;
      if (this.filled === this.frameBytes) {
        const full = this.buffer;
        this.buffer = this.spare.pop() ?? Buffer.allocUnsafe(this.frameBytes);
        this.filled = 0;
        const next = offset;
        return this.frame(full, true).then(() => this.consume(chunk, next));
      }
    }
    return undefined;
  }

  private frame(plain: Buffer, reusable = false): Promise<void> {
    this.frames++;
    const job = compressFrame(plain, this.level).then((compressed) => {
      if (reusable) this.spare.push(plain);
      const header = Buffer.allocUnsafe(HEADER_BYTES);
      header.writeUInt32LE(SKIPPABLE_MAGIC, 0);
      header.writeUInt32LE(12, 4);
      TAG.copy(header, 8);
      header.writeUInt32LE(compressed.length, 12);
      header.writeUInt32LE(plain.length, 16);
      return [header, compressed];
    });
    return this.work.submit(job);
  }
}

class ZstdDecompressFrames extends Transform {
  private readonly input = new ByteQueue();
  private readonly work: OrderedWork<Buffer>;
  /** Sizes of the frame whose header we have read and whose body we wait for. */
  private next: { compressedBytes: number; plainBytes: number } | undefined;
  private frames = 0;
  private readonly requireChecksum: boolean;

  constructor(options: ZstdFramesOptions) {
    super();
    this.work = new OrderedWork(options.maxInFlight ?? 2, (plain) => this.push(plain));
    this.requireChecksum = options.requireChecksum ?? false;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.input.push(chunk);
    this.parse().then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    if (this.input.length > 0 || this.next !== undefined) {
      callback(new TruncatedStreamError("compressed stream ends in the middle of a frame"));
      return;
    }
    if (this.frames === 0) {
      callback(new TruncatedStreamError("compressed stream is empty"));
      return;
    }
    this.work.drain().then(() => callback(), callback);
  }

  private async parse(): Promise<void> {
    for (;;) {
      if (this.next === undefined) {
        if (this.input.length < 8) return;
        const head = this.input.peek(8);
        const magic = head.readUInt32LE(0);
        const size = head.readUInt32LE(4);
        if (magic !== SKIPPABLE_MAGIC) {
          throw new CorruptStreamError(
            magic === ZSTD_FRAME_MAGIC
              ? "zstd frame without a strongroom size header: not a strongroom framed stream"
              : `garbled compressed stream: unexpected magic 0x${magic.toString(16)} after ${this.frames} frames`,
          );
        }
        if (size !== 12) throw new CorruptStreamError(`garbled compressed stream: frame header size ${size}`);
        if (this.input.length < HEADER_BYTES) return;
        const header = this.input.read(HEADER_BYTES);
        if (!header.subarray(8, 12).equals(TAG))
          throw new CorruptStreamError("garbled compressed stream: bad frame tag");
        const compressedBytes = header.readUInt32LE(12);
        const plainBytes = header.readUInt32LE(16);
        if (
          compressedBytes === 0 ||
          plainBytes > MAX_FRAME_PLAIN_BYTES ||
          compressedBytes > compressBound(plainBytes) + 64 // + the largest frame header
        ) {
          throw new CorruptStreamError(
            `garbled compressed stream: implausible frame sizes ${compressedBytes}/${plainBytes}`,
          );
        }
        this.next = { compressedBytes, plainBytes };
      }
      const { compressedBytes, plainBytes } = this.next;
      if (this.input.length < compressedBytes) return;
      const body = this.input.read(compressedBytes);
      this.next = undefined;
      const index = this.frames++;
      assertBoundedFrame(body, plainBytes, index, this.requireChecksum);
      const job = decompress(body).then(
        (plain) => {
          if (plain.length !== plainBytes) {
            throw new CorruptStreamError(
              `frame ${index} decompressed to ${plain.length} bytes, header says ${plainBytes}`,
            );
          }
          return plain;
        },
        (err: unknown) => {
          throw new CorruptStreamError(`frame ${index} does not decompress: ${(err as Error).message}`, { cause: err });
        },
      );
      await this.work.submit(job);
    }
  }
}

/** Compresses a byte stream into framed zstd. */
export function zstdCompressFrames(options: ZstdFramesOptions = {}): Transform {
  return new ZstdCompressFrames(options);
}

/** Decompresses framed zstd; garbled input is CorruptStreamError, cut input TruncatedStreamError. */
export function zstdDecompressFrames(options: ZstdFramesOptions = {}): Transform {
  return new ZstdDecompressFrames(options);
}
