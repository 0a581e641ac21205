import { describe, expect, it } from "vitest";
import {
  baseOnPath,
  continuousRun,
  newestTimeline,
  parseTimelineHistory,
  timelineForSegment,
  timelinePath,
} from "./timelines.ts";

const MiB16 = 16 * 1024 * 1024;
const seg = (tli: number, n: number) =>
  `${tli.toString(16).toUpperCase().padStart(8, "0")}00000000${n.toString(16).toUpperCase().padStart(8, "0")}`;

describe("a timeline history file, read as PostgreSQL reads it", () => {
  it("lists each ancestor and where it ended, skipping blank lines and comments", () => {
    const text =
      "# a comment\n1\t0/5000098\tbefore 2026-12-03 08:04:00+00\n\n2\t0/9000000\tno recovery target specified\n";
    expect(parseTimelineHistory(text, 3)).toEqual([
      { timeline: 1, switchLsn: "0/5000098" },
      { timeline: 2, switchLsn: "0/9000000" },
    ]);
  });

  it("refuses what PostgreSQL would not write: no LSN, timelines out of order, an ancestor not below the file's own", () => {
    expect(() => parseTimelineHistory("1\n", 2)).toThrow(/not a timeline history/);
    expect(() => parseTimelineHistory("2\t0/1\tx\n1\t0/2\tx\n", 3)).toThrow(/not a timeline history/);
    expect(() => parseTimelineHistory("2\t0/1\tx\n", 2)).toThrow(/not a timeline history/);
    expect(() => parseTimelineHistory("x\t0/1\n", 2)).toThrow(/not a timeline history/);
  });
});

describe("the timeline recovery follows", () => {
  it("is, for 'latest', the last of the consecutive history files after the base's timeline, as findNewestTimeLine probes", () => {
    const have = new Set([2, 3, 5]);
    expect(newestTimeline(1, (t) => have.has(t))).toBe(3);
    expect(newestTimeline(3, (t) => have.has(t))).toBe(3);
    expect(newestTimeline(4, (t) => have.has(t))).toBe(5);
  });

  it("reads each segment from the newest timeline that began at or before it: the switch segment from the new one", () => {
    const path = timelinePath(3, [
      { timeline: 1, switchLsn: "0/5000098" },
      { timeline: 2, switchLsn: "0/9000000" },
    ]);
    expect(path).toEqual([
      { timeline: 1, begin: 0n, end: 0x5000098n },
      { timeline: 2, begin: 0x5000098n, end: 0x9000000n },
      { timeline: 3, begin: 0x9000000n },
    ]);
    expect([4n, 5n, 8n, 9n, 10n].map((s) => timelineForSegment(path, s, MiB16))).toEqual([1, 2, 2, 3, 3]);
  });

  it("holds a base only when the base's timeline is on it and had not ended before the base stopped", () => {
    const path = timelinePath(2, [{ timeline: 1, switchLsn: "0/5000098" }]);
    expect(baseOnPath(path, { timeline: 1, stopLsn: "0/3000100" })).toBe(true);
    expect(baseOnPath(path, { timeline: 2, stopLsn: "0/7000100" })).toBe(true);
    // The old primary went on on timeline 1 after the switch: its later base is not on timeline 2's path.
    expect(baseOnPath(path, { timeline: 1, stopLsn: "0/6000100" })).toBe(false);
    expect(baseOnPath(timelinePath(3, undefined), { timeline: 1, stopLsn: "0/1" })).toBe(false);
  });
});

describe("the continuous run of a base backup's WAL", () => {
  const base = { timeline: 1, firstSegment: seg(1, 1), segmentBytes: MiB16 };

  it("runs from the base's first segment to the last one before a gap, and names the gap only when WAL lies beyond it", () => {
    const names = new Set([seg(1, 1), seg(1, 2), seg(1, 3), seg(1, 5), "00000002.history", seg(2, 6)]);
    expect(continuousRun(base, names, (n) => names.has(n))).toEqual({
      last: seg(1, 3),
      next: seg(1, 4),
      gap: seg(1, 4),
    });
    const whole = new Set([seg(1, 1), seg(1, 2)]);
    expect(continuousRun(base, whole, (n) => whole.has(n))).toEqual({
      last: seg(1, 2),
      next: seg(1, 3),
      gap: undefined,
    });
  });

  it("counts only what `has` accepts: a planted or foreign segment neither extends the run nor makes a gap", () => {
    const names = new Set([seg(1, 1), seg(1, 2), seg(1, 3)]);
    const trusted = (n: string) => n !== seg(1, 2);
    expect(continuousRun(base, names, trusted)).toEqual({ last: seg(1, 1), next: seg(1, 2), gap: seg(1, 2) });
    expect(continuousRun(base, names, () => false)).toEqual({ last: undefined, next: seg(1, 1), gap: undefined });
  });

  it("crosses a timeline switch: the old timeline to the segment before the switch, the new one from it, and a gap on the new one named", () => {
    // Timeline 1 went on after the switch (the old primary); its later segments are not on timeline 2's path.
    const path = timelinePath(2, [{ timeline: 1, switchLsn: "0/3000098" }]);
    const names = new Set([seg(1, 1), seg(1, 2), seg(1, 3), seg(1, 4), seg(2, 3), seg(2, 4), seg(2, 6)]);
    expect(continuousRun(base, names, (n) => names.has(n), path)).toEqual({
      last: seg(2, 4),
      next: seg(2, 5),
      gap: seg(2, 5),
    });
    // Without timeline 2's copy of the switch segment, timeline 1's does not stand in for it.
    const without = new Set([seg(1, 1), seg(1, 2), seg(1, 3), seg(2, 4)]);
    expect(continuousRun(base, without, (n) => without.has(n), path)).toEqual({
      last: seg(1, 2),
      next: seg(2, 3),
      gap: seg(2, 3),
    });
  });
});
