import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { AbortedError, StoreUnavailableError, StrongroomError, TruncatedStreamError } from "../errors.ts";
import type { ObjectStore } from "./object-store.ts";

const MiB = 1024 * 1024;

export interface RangedReadOptions {
  /** The object's size in bytes (the manifest's storedBytes, checked by stat first). */
  bytes: number;
  /** Bytes per GET. @default 8 MiB */
  rangeBytes?: number;
  /** GETs in flight, each holding one range in memory until it is read. @default 3 */
  inFlight?: number;
  /** Attempts per range, counting the first; each resumes where the last one stopped. @default 5 */
  attempts?: number;
  /** Delay before the first retry, doubled each time. @default 200 ms */
  retryDelayMs?: number;
  signal?: AbortSignal;
  /** Told about every retried range (for the log). */
  onRetry?: (retry: { start: number; end: number; resumedAt: number; attempt: number; reason: string }) => void;
}

/** The memory one ranged read holds: its ranges in flight plus the one being consumed. */
export function rangedReadBytes(options: Pick<RangedReadOptions, "rangeBytes" | "inFlight"> = {}): number {
  return (options.rangeBytes ?? DEFAULT_RANGE_BYTES) * ((options.inFlight ?? DEFAULT_IN_FLIGHT) + 1);
}

export const DEFAULT_RANGE_BYTES = 8 * MiB;
export const DEFAULT_IN_FLIGHT = 3;

/**
 * Reads a large object as consecutive byte ranges, a few GETs ahead of the reader, in
 * order. One GET of a whole multi-GB object dies with its connection: a reset an hour
 * in would restart the restore. Here a range whose body is cut is asked for again from
 * the byte where it stopped, so a reset costs at most the rest of one range.
 *
 * Ranges of one object read at different times may come from different versions if a
 * second writer replaces it meanwhile: callers hash what they read and compare it with
 * the manifest (restore does), which catches that like any other change.
 */
export function readRanged(store: ObjectStore, key: string, options: RangedReadOptions): Readable {
  const rangeBytes = options.rangeBytes ?? DEFAULT_RANGE_BYTES;
  const inFlight = Math.max(1, options.inFlight ?? DEFAULT_IN_FLIGHT);
  const attempts = Math.max(1, options.attempts ?? 5);
  const retryDelayMs = options.retryDelayMs ?? 200;
  const size = options.bytes;
  // Ours, so that a reader that stops early (a failed stage downstream) cancels the GETs still running.
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;

  /**
   * A range as the pieces it arrived in: joining them would copy every byte once more
   * and leave the pieces to the GC, and one 8 MiB chunk would pass through every stage
   * below as one burst (age alone pushes 128 chunks for it at once).
   */
  async function fetchRange(start: number, end: number): Promise<Buffer[]> {
    const want = end - start + 1;
    const parts: Buffer[] = [];
    let got = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        const body = await store.get(key, { range: { start: start + got, end }, signal });
        for await (const chunk of body) {
          parts.push(chunk as Buffer);
          got += (chunk as Buffer).length;
        }
        if (got > want) throw new StrongroomError(`${key}: a range read returned ${got} bytes, ${want} asked for`);
        if (got < want) {
          throw new TruncatedStreamError(`${key}: the body of bytes ${start}-${end} ended after ${got} bytes`);
        }
        return parts;
      } catch (err) {
        if (signal.aborted) throw new AbortedError(`read of ${key} aborted`, { cause: err });
        if (attempt >= attempts || !isTransient(err)) throw err;
        options.onRetry?.({ start, end, resumedAt: start + got, attempt, reason: describe(err) });
        await sleep(retryDelayMs * 2 ** (attempt - 1), undefined, { signal }).catch(() => undefined);
      }
    }
  }

  async function* ranges(): AsyncGenerator<Buffer> {
    const queue: Promise<Buffer[]>[] = [];
    let next = 0;
    const fill = () => {
      while (queue.length < inFlight && next < size) {
        const start = next;
        const end = Math.min(size, start + rangeBytes) - 1;
        const job = fetchRange(start, end);
        // Awaited in order below; until then a failure must not count as unhandled.
        job.catch(() => undefined);
        queue.push(job);
        next = end + 1;
      }
    };
    try {
      fill();
      while (queue.length > 0) {
        const pieces = await (queue.shift() as Promise<Buffer[]>);
        fill();
        yield* pieces;
      }
    } finally {
      stop.abort();
    }
  }

  // Byte mode: the stream holds one range beyond its 64 KiB mark, not 16 (object mode).
  return Readable.from(ranges(), { objectMode: false });
}

/** Failures a new request may not meet: the connection, the server's 5xx, a cut body. */
function isTransient(err: unknown): boolean {
  if (err instanceof StoreUnavailableError || err instanceof TruncatedStreamError) return true;
  if (err instanceof StrongroomError) return false;
  const e = err as { code?: string; name?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  const status = e?.$metadata?.httpStatusCode;
  if (status !== undefined && status >= 500) return true;
  return TRANSIENT.has(e?.code ?? "") || TRANSIENT.has(e?.name ?? "");
}

const TRANSIENT = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "ERR_STREAM_PREMATURE_CLOSE",
  "TimeoutError",
  "RequestTimeout",
  "InternalError",
  "SlowDown",
]);

function describe(err: unknown): string {
  const e = err as { code?: string; name?: string; message?: string };
  return e.code ?? e.name ?? e.message ?? String(err);
}
