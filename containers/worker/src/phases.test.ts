import { describe, expect, it } from "vitest";
import type { LogFields } from "#core/log.ts";
import { etaSeconds, PhaseTracker, percentDone } from "./phases.ts";

/** A tracker on a clock the test moves, and the events it emitted. */
function tracked(progressEventMs?: number) {
  let nowMs = 1_000;
  const events: Array<{ message: string } & LogFields> = [];
  const tracker = new PhaseTracker({
    emit: (message, fields) => events.push({ message, ...fields }),
    clock: () => nowMs,
    ...(progressEventMs !== undefined ? { progressEventMs } : {}),
  });
  return {
    tracker,
    events,
    wait: (ms: number) => {
      nowMs += ms;
    },
  };
}

describe("PhaseTracker", () => {
  it("emits each phase's start and end, with bytes and percent where the size is known, then done", () => {
    // GIVEN a restore's phases
    const { tracker, events, wait } = tracked();
    // WHEN the data streams, indexes are built and rows counted
    tracker.phase("restoring data", { totalBytes: 1000 });
    wait(2_000);
    tracker.bytes(400, 1000);
    wait(3_000);
    tracker.bytes(1000, 1000);
    tracker.phase("building indexes");
    wait(12_000);
    tracker.phase("counting rows");
    wait(500);
    tracker.finish();
    // THEN the log holds these lines, in order, and nothing else
    expect(events).toEqual([
      { message: "phase", phase: "restoring data", state: "started", totalBytes: 1000 },
      {
        message: "phase",
        phase: "restoring data",
        state: "finished",
        seconds: 5,
        doneBytes: 1000,
        totalBytes: 1000,
        percent: 100,
      },
      { message: "phase", phase: "building indexes", state: "started" },
      { message: "phase", phase: "building indexes", state: "finished", seconds: 12 },
      { message: "phase", phase: "counting rows", state: "started" },
      { message: "phase", phase: "counting rows", state: "finished", seconds: 0.5 },
      { message: "phase", phase: "done", seconds: 17.5 },
    ]);
  });

  it("emits at most one progress event per interval, however often bytes arrive", () => {
    const { tracker, events, wait } = tracked(30_000);
    tracker.phase("restoring data", { totalBytes: 100_000 });
    for (let i = 1; i <= 100; i++) {
      wait(1_000);
      tracker.bytes(i * 1_000);
    }
    const progress = events.filter((e) => e.message === "progress");
    expect(progress).toHaveLength(3);
    expect(progress[0]).toEqual({
      message: "progress",
      phase: "restoring data",
      doneBytes: 30_000,
      totalBytes: 100_000,
      percent: 30,
      etaSeconds: 70,
    });
  });

  it("names an estimate as one, and what it was taken from", () => {
    const { tracker, events, wait } = tracked();
    tracker.phase("dumping", { totalBytes: 2000, estimatedFrom: "the previous backup" });
    wait(1_000);
    tracker.bytes(2100, 2000);
    tracker.phase("committing");
    expect(events[0]).toEqual({
      message: "phase",
      phase: "dumping",
      state: "started",
      estimatedBytes: 2000,
      estimatedFrom: "the previous backup",
    });
    expect(events[1]).toMatchObject({
      state: "finished",
      doneBytes: 2100,
      estimatedBytes: 2000,
      estimatedPercent: 99.9,
    });
    expect(events[1]).not.toHaveProperty("percent");
    expect(events[1]).not.toHaveProperty("totalBytes");
  });

  it("continues a phase named again (verify's checks, one after another), and ignores calls after done", () => {
    const { tracker, events } = tracked();
    tracker.phase("checks");
    tracker.phase("checks");
    tracker.finish();
    tracker.phase("checks");
    tracker.bytes(1);
    tracker.finish();
    expect(events.map((e) => `${e.phase} ${e.state ?? ""}`.trim())).toEqual([
      "checks started",
      "checks finished",
      "done",
    ]);
  });

  it("takes a phase's total from its byte reports when the phase gave none", () => {
    const { tracker, wait } = tracked();
    tracker.phase("downloading");
    wait(2_000);
    tracker.bytes(50, 200);
    expect(tracker.state()).toEqual({
      phase: "downloading",
      done: false,
      doneBytes: 50,
      totalBytes: 200,
      phaseMs: 2_000,
      jobMs: 2_000,
    });
  });
});

describe("percentDone and etaSeconds", () => {
  it.for([
    [0, 1000, 0],
    [1, 1000, 0.1],
    [999, 1000, 99.9],
    [1000, 1000, 100],
    [1001, 1000, 99.9],
  ] as const)("%i of %i bytes is %s%", ([done, total, percent]) => {
    expect(percentDone(done, total)).toBe(percent);
  });

  it("knows no percent without a total, nor an ETA without a rate or anything left", () => {
    expect(percentDone(5, undefined)).toBeUndefined();
    expect(percentDone(5, 0)).toBeUndefined();
    expect(etaSeconds(0, 100, 5_000)).toBeUndefined();
    expect(etaSeconds(50, 100, 999)).toBeUndefined();
    expect(etaSeconds(100, 100, 5_000)).toBeUndefined();
    expect(etaSeconds(25, 100, 5_000)).toBe(15);
  });
});
