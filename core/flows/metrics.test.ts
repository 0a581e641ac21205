import { describe, expect, it } from "vitest";
import { backupFacts } from "./metrics.ts";

describe("backupFacts", () => {
  it("takes the duration from the manifest's start to its commit, in seconds", () => {
    expect(
      backupFacts({ storedBytes: 42, startedAt: "2026-11-21T04:00:00.000Z", finishedAt: "2026-11-21T04:02:30.250Z" }),
    ).toEqual({ storedBytes: 42, durationSeconds: 150.25 });
  });

  it("never reports a negative or unparsable duration: a clock that went backwards gives 0", () => {
    expect(
      backupFacts({ storedBytes: 1, startedAt: "2026-11-21T04:00:01Z", finishedAt: "2026-11-21T04:00:00Z" }),
    ).toEqual({ storedBytes: 1, durationSeconds: 0 });
    expect(
      backupFacts({ storedBytes: 1, startedAt: "yesterday", finishedAt: "2026-11-21T04:00:00Z" }).durationSeconds,
    ).toBe(0);
  });
});
