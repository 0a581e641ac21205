/**
 * Runs one stage in a fresh process, so its peak RSS is its own:
 *   node bench/stage-runner.ts encrypt|decrypt|zstd IN [recipient-or-identity-file]
 * encrypt and zstd replay IN's first 16 MiB block from memory (the file is that block
 * repeated; see data.ts), because in a backup their input comes from memory, not a
 * file; the held block (16 MiB) is included in the RSS. decrypt streams IN from disk.
 * The output is counted and dropped, as `age … > /dev/null` would. Prints JSON
 * {seconds, maxRssMiB, outBytes}.
 */
import { closeSync, createReadStream, openSync, readFileSync, readSync, statSync } from "node:fs";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { ageDecrypt, ageEncrypt, parseIdentities } from "#worker/stages/age-stream.ts";
import { zstdCompressFrames } from "#worker/stages/zstd-frames.ts";
import { BLOCK_BYTES } from "./data.ts";

const [stage, input, keyArg] = process.argv.slice(2);
if (!stage || !input) throw new Error("usage: stage-runner.ts STAGE IN [KEY]");

const transform =
  stage === "encrypt"
    ? await ageEncrypt([keyArg as string])
    : stage === "decrypt"
      ? ageDecrypt(parseIdentities(readFileSync(keyArg as string, "utf8")))
      : zstdCompressFrames({ level: 3 });
function replay(file: string): Readable {
  const block = Buffer.alloc(BLOCK_BYTES);
  const fd = openSync(file, "r");
  readSync(fd, block, 0, BLOCK_BYTES, 0);
  closeSync(fd);
  const total = statSync(file).size;
  const slice = 1024 * 1024;
  return Readable.from(
    (function* () {
      for (let offset = 0; offset < total; offset += slice)
        yield block.subarray(offset % BLOCK_BYTES, (offset % BLOCK_BYTES) + slice);
    })(),
  );
}

const started = performance.now();
let outBytes = 0;
const sink = new Writable({
  write(chunk: Buffer, _encoding, callback) {
    outBytes += chunk.length;
    callback();
  },
});
const source = stage === "decrypt" ? createReadStream(input, { highWaterMark: 1024 * 1024 }) : replay(input);
await pipeline(source, transform, sink);
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ seconds, maxRssMiB: process.resourceUsage().maxRSS / 1024, outBytes }));
