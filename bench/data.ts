import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createWriteStream, readFileSync, unlinkSync } from "node:fs";

export const BLOCK_BYTES = 16 * 1024 * 1024;

/**
 * Writes `bytes` (a multiple of BLOCK_BYTES) as one 16 MiB block of dump-like data
 * repeated, so a runner can hold one block in memory and replay it. The period is
 * far beyond zstd -3's 2 MiB window, so repetition does not flatter compression.
 */
export async function writeRepeatedBlockFile(file: string, bytes: number): Promise<void> {
  const blockFile = `${file}.block`;
  await writeDumpLikeFile(blockFile, BLOCK_BYTES);
  const block = readFileSync(blockFile);
  unlinkSync(blockFile);
  const out = createWriteStream(file);
  for (let written = 0; written < bytes; written += BLOCK_BYTES) {
    if (!out.write(block)) await once(out, "drain");
  }
  out.end();
  await once(out, "finish");
}

/**
 * Writes `bytes` of realistic, roughly 3×-compressible text (like a pg_dump COPY
 * stream: tab-separated words, dates, numbers, base64 blobs) to `file`.
 */
export async function writeDumpLikeFile(file: string, bytes: number): Promise<void> {
  const out = createWriteStream(file);
  const words = ["alpha", "beta", "gamma", "delta", "epsilon", "customer", "order", "paid", "pending", "\\N", "true"];
  let written = 0;
  let row = 0;
  while (written < bytes) {
    const lines: string[] = [];
    for (let i = 0; i < 2000; i++, row++) {
      const noise = randomBytes(9).toString("base64");
      lines.push(
        `${row}\t${words[row % 11]}\t${words[(row * 7) % 11]}\t2026-${String((row % 12) + 1).padStart(2, "0")}-${String((row % 28) + 1).padStart(2, "0")} 12:${String(row % 60).padStart(2, "0")}:00+00\t${(row * 37) % 100000}.${row % 100}\t${noise}\t{"id": ${row % 1000}, "tag": "${words[row % 5]}"}\n`,
      );
    }
    const chunk = Buffer.from(lines.join(""));
    const piece = chunk.subarray(0, Math.min(chunk.length, bytes - written));
    written += piece.length;
    if (!out.write(piece)) await once(out, "drain");
  }
  out.end();
  await once(out, "finish");
}
