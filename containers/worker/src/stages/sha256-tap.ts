import { createHash, type Hash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";

export interface TapResult {
  sha256: string;
  bytes: number;
}

/**
 * Passes bytes through unchanged while hashing them. `result()` is valid once the
 * stream has flushed, i.e. after the pipeline it sits in has finished.
 */
export class Sha256Tap extends Transform {
  private readonly hash: Hash = createHash("sha256");
  private bytes = 0;
  private done: TapResult | undefined;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.done = { sha256: this.hash.digest("hex"), bytes: this.bytes };
    callback();
  }

  result(): TapResult {
    if (this.done === undefined) throw new Error("sha256 tap read before its stream finished");
    return this.done;
  }
}

export function sha256Tap(): Sha256Tap {
  return new Sha256Tap();
}
