import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, open, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { afterAll, describe, expect, it, vi } from "vitest";
import { DurableFileWriter } from "./durable-file.ts";

const MiB = 1024 * 1024;
const dir = await mkdtemp(path.join(tmpdir(), "durable-file-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

/** 64 KiB pieces, as a pipeline delivers them. */
const pieces = (data: Buffer) =>
  Readable.from(
    (function* () {
      for (let at = 0; at < data.length; at += 64 * 1024) yield data.subarray(at, at + 64 * 1024);
    })(),
  );

/**
 * A real file handle whose syncs are recorded, and whose datasync can be made to fail
 * or to wait: what is under test is when the writer syncs and what it does with the
 * answer, which a real disk does not let a test choose.
 */
async function recordingHandle(file: string, datasync?: () => Promise<void>) {
  const real = await open(file, "wx", 0o600);
  const calls: string[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const handle = Object.assign(Object.create(real) as typeof real, {
    writev: (buffers: Buffer[]) => {
      calls.push("write");
      return real.writev(buffers);
    },
    datasync: async () => {
      calls.push("datasync");
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        await (datasync ? datasync() : real.datasync());
      } finally {
        inFlight--;
      }
    },
    sync: () => {
      calls.push("sync");
      return real.sync();
    },
    close: () => {
      calls.push("close");
      return real.close();
    },
  });
  return { handle, calls, maxInFlight: () => maxInFlight };
}

describe("DurableFileWriter", () => {
  it("writes every byte, syncing in the background as it goes and fsyncing the tail before it finishes", async () => {
    const file = path.join(dir, "whole");
    const data = randomBytes(10 * MiB + 17);
    // A datasync that answers at once: a real one on a busy disk may still be running
    // when the next 2 MiB are written, and then rightly none starts beside it.
    const { handle, calls } = await recordingHandle(file, async () => undefined);
    const out = new DurableFileWriter(handle, { syncEvery: 2 * MiB });
    await pipeline(pieces(data), out);
    expect((await readFile(file)).equals(data)).toBe(true);
    expect(out.bytesWritten).toBe(data.length);
    expect(calls.filter((c) => c === "datasync").length).toBeGreaterThanOrEqual(2);
    // The last word before close is the full fsync, after every write.
    expect(calls.slice(-2)).toEqual(["sync", "close"]);
  });

  it("keeps one background sync at a time while writes go on", async () => {
    const file = path.join(dir, "slow-sync");
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { handle, calls, maxInFlight } = await recordingHandle(file, () => gate);
    const out = new DurableFileWriter(handle, { syncEvery: MiB });
    const done = pipeline(pieces(randomBytes(8 * MiB)), out);
    // The first sync is held; every later write passes it without starting another.
    await vi.waitFor(() => expect(out.bytesWritten).toBe(8 * MiB));
    expect(calls.filter((c) => c === "datasync")).toEqual(["datasync"]);
    expect(calls).not.toContain("sync");
    release();
    await done;
    expect(maxInFlight()).toBe(1);
    expect(calls.indexOf("sync")).toBeGreaterThan(calls.lastIndexOf("datasync"));
  });

  it("fails the write when a background sync fails, although the final fsync would succeed", async () => {
    const file = path.join(dir, "eio");
    const { handle, calls } = await recordingHandle(file, () =>
      Promise.reject(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" })),
    );
    const out = new DurableFileWriter(handle, { syncEvery: MiB });
    await expect(pipeline(pieces(randomBytes(4 * MiB)), out)).rejects.toMatchObject({ code: "EIO" });
    if (!out.closed) await once(out, "close");
    expect(calls).not.toContain("sync");
    expect(calls.at(-1)).toBe("close");
  });

  it("closes the file when the stream it reads fails", async () => {
    const file = path.join(dir, "cut");
    const { handle, calls } = await recordingHandle(file);
    const out = new DurableFileWriter(handle, { syncEvery: MiB });
    const source = Readable.from(
      (async function* () {
        yield randomBytes(3 * MiB);
        throw new Error("upstream died");
      })(),
    );
    await expect(pipeline(source, out)).rejects.toThrow("upstream died");
    if (!out.closed) await once(out, "close");
    expect(calls).not.toContain("sync");
    expect(calls.at(-1)).toBe("close");
  });
});
