import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";

/** `bytes` of random data in `chunkBytes` pieces, optionally failing or pausing partway. */
export function randomStream(
  bytes: number,
  options: { chunkBytes?: number; failAfterBytes?: number; onProgress?: (sent: number) => void } = {},
): Readable {
  const chunkBytes = options.chunkBytes ?? 1024 * 1024;
  let sent = 0;
  return new Readable({
    read() {
      if (options.failAfterBytes !== undefined && sent >= options.failAfterBytes) {
        this.destroy(new Error("source failed on purpose"));
        return;
      }
      if (sent >= bytes) {
        this.push(null);
        return;
      }
      const n = Math.min(chunkBytes, bytes - sent);
      sent += n;
      this.push(randomBytes(n));
      options.onProgress?.(sent);
    },
  });
}

export async function readAll(stream: AsyncIterable<Buffer | Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Splits `data` into a stream of pieces of the given sizes, cycling. */
export function chunked(data: Buffer, sizes: number[] = [65536]): Readable {
  const pieces: Buffer[] = [];
  let offset = 0;
  let i = 0;
  while (offset < data.length) {
    const n = sizes[i++ % sizes.length] as number;
    pieces.push(data.subarray(offset, offset + n));
    offset += n;
  }
  return Readable.from(pieces, { objectMode: false });
}

/** Flips the low bit of one byte in place (tamper tests). */
export function flipByte(data: Buffer, index: number): void {
  data.writeUInt8((data.readUInt8(index) ^ 0x01) & 0xff, index);
}
