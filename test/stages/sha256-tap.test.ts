import { randomBytes } from "node:crypto";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import { sha256Tap } from "#worker/stages/sha256-tap.ts";
import { chunked, sha256 } from "../helpers/streams.ts";

describe("sha256 tap", () => {
  it.for([0, 1, 65535, 65536, 65537, 3 * 1024 * 1024])(
    "passes %i bytes through unchanged and reports their digest and count",
    async (size) => {
      const data = randomBytes(size);
      const tap = sha256Tap();
      const out: Buffer[] = [];
      await pipeline(chunked(data, [1000, 70000]), tap, async (source) => {
        for await (const c of source) out.push(c);
      });
      expect(Buffer.concat(out).equals(data)).toBe(true);
      expect(tap.result()).toEqual({ sha256: sha256(data), bytes: size });
    },
  );

  it("refuses to report before its stream has finished", () => {
    expect(() => sha256Tap().result()).toThrow(/before its stream finished/);
  });
});
