import { describe, expect, it } from "vitest";
import { verificationKeys } from "./keys.ts";

describe("verification keys", () => {
  it("give two verifications of one backup in the same millisecond keys of their own, sorting by time", () => {
    const at = new Date("2026-11-21T05:00:00.123Z");
    const a = verificationKeys("shop", "20261120T020000Z-abcdef", at);
    const b = verificationKeys("shop", "20261120T020000Z-abcdef", at);
    expect(a.summary).not.toBe(b.summary);
    expect(a.summary).toMatch(/^shop\/verifications\/20261120T020000Z-abcdef\/20261121T050000123Z-[a-z2-7]{6}\.json$/);
    expect(a.full).toBe(`${a.summary}.age`);
    const later = verificationKeys("shop", "20261120T020000Z-abcdef", new Date("2026-11-21T05:00:01.000Z"));
    expect([later.summary, a.summary].sort()).toEqual([a.summary, later.summary]);
  });
});
