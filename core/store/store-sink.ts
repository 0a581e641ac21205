import { PassThrough, Writable } from "node:stream";
import type { ObjectStore, PutOptions, PutResult } from "./object-store.ts";

const SINK_BUFFER_BYTES = 1024 * 1024;

/**
 * `store.put(key)` as the last stage of a pipeline:
 * `pipeline(source, …, storeSink(store, key))`. The pipeline then owns every error.
 * - If the store fails (an S3 part denied, the endpoint gone), the sink is destroyed
 *   with the store's error. The pipeline then tears down every stage up to the source,
 *   instead of stalling on backpressure that nobody drains.
 * - If a stage upstream fails, the upload is destroyed with that error. The sink
 *   finishes destroying only once the store has cleaned up: the multipart upload is
 *   aborted, or the partial file is removed.
 * The pipeline resolves only after the object is committed.
 */
export class StoreSink extends Writable {
  private readonly body = new PassThrough({ highWaterMark: SINK_BUFFER_BYTES });
  private readonly upload: Promise<PutResult>;
  private putResult: PutResult | undefined;

  constructor(store: ObjectStore, key: string, options: PutOptions = {}) {
    super({ highWaterMark: SINK_BUFFER_BYTES });
    // The body may be destroyed before the store has attached its own listeners (the
    // file store first creates its directory): the sink reports errors, not the body.
    this.body.on("error", () => undefined);
    this.upload = store.put(key, this.body, options);
    this.upload.then(
      (result) => {
        this.putResult = result;
      },
      (err: unknown) => this.destroy(err as Error),
    );
  }

  /** What the store committed; valid once the pipeline has resolved. */
  result(): PutResult {
    if (!this.putResult) throw new Error("store sink has not finished");
    return this.putResult;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.body.write(chunk)) callback();
    else this.body.once("drain", () => callback());
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.body.end();
    this.upload.then(
      () => callback(),
      (err: unknown) => callback(err as Error),
    );
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (!this.body.destroyed) this.body.destroy(err ?? new Error("store sink destroyed"));
    const done = () => callback(err);
    this.upload.then(done, done);
  }
}

export function storeSink(store: ObjectStore, key: string, options: PutOptions = {}): StoreSink {
  return new StoreSink(store, key, options);
}
