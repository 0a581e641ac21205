import { describe, expect, it } from "vitest";
import type { ProgressState } from "./phases.ts";
import { clearProgressLine, humanDuration, progressBar, progressLine } from "./progress.ts";

function fakeTerminal(isTTY = true) {
  const written: string[] = [];
  const stream = {
    isTTY,
    columns: 200,
    write: (s: string) => written.push(s),
  } as unknown as NodeJS.WriteStream;
  return { written, stream };
}

const at = (s: Partial<ProgressState>): ProgressState => ({ done: false, phaseMs: 0, jobMs: 0, ...s });

describe("progress bar and log lines", () => {
  it("clears the running bar's line before a log line, and leaves the terminal alone once the bar stopped", () => {
    const bar = progressBar("backup", () => at({}), { stream: fakeTerminal().stream });
    const terminal = fakeTerminal();
    clearProgressLine(terminal.stream);
    expect(terminal.written).toEqual(["\r\x1b[2K"]);
    bar.stop();
    clearProgressLine(terminal.stream);
    expect(terminal.written).toEqual(["\r\x1b[2K"]);
  });

  it("does nothing when no bar runs (not a terminal, or --json pipelines)", () => {
    const terminal = fakeTerminal(false);
    const bar = progressBar("backup", () => at({ phase: "dumping", doneBytes: 1 }), { stream: terminal.stream });
    clearProgressLine(terminal.stream);
    bar.stop();
    expect(terminal.written).toEqual([]);
  });

  it("draws the phase, percent and ETA on a terminal, from the state at each redraw", () => {
    // GIVEN a restore 42% through its data, 19 s in
    const terminal = fakeTerminal();
    let state = at({ phase: "restoring data", doneBytes: 420e6, totalBytes: 1e9, phaseMs: 19_000, jobMs: 19_000 });
    // WHEN the bar starts, then the phase changes and the bar stops
    const bar = progressBar("restore", () => state, { stream: terminal.stream });
    state = at({ phase: "building indexes", phaseMs: 4_000, jobMs: 23_000 });
    bar.stop();
    // THEN both lines were drawn, the second without a byte count that no longer moves
    const text = terminal.written.join("");
    expect(text).toContain("restore | restoring data 42% [████████░░░░░░░░░░░░] | 420 MB of 1.0 GB | 22.1 MB/s");
    expect(text).toContain("restore | building indexes (4s) | 23s");
  });
});

describe("progressLine", () => {
  it("shows percent, bar, bytes of the total, rate, ETA and the elapsed time where the size is known", () => {
    expect(
      progressLine(
        "restore",
        at({ phase: "restoring data", doneBytes: 600e6, totalBytes: 1.4e9, phaseMs: 18_750, jobMs: 19_200 }),
      ),
    ).toBe("restore | restoring data 42% [████████░░░░░░░░░░░░] | 600 MB of 1.4 GB | 32.0 MB/s | ETA 25s | 19s");
  });

  it("marks an estimate as one: ~ on the percent, the total and the ETA", () => {
    expect(
      progressLine(
        "backup",
        at({
          phase: "dumping",
          doneBytes: 40e6,
          totalBytes: 100e6,
          estimatedFrom: "the previous backup",
          phaseMs: 2_000,
          jobMs: 2_500,
        }),
      ),
    ).toBe("backup | dumping ~40% [████████░░░░░░░░░░░░] | 40.0 MB of ~100 MB (estimate) | 20.0 MB/s | ETA ~3s | 3s");
  });

  it("never says 100% or an ETA once an estimate is passed: the phase is not over", () => {
    const line = progressLine(
      "backup",
      at({ phase: "dumping", doneBytes: 150e6, totalBytes: 100e6, estimatedFrom: "x", phaseMs: 5_000, jobMs: 5_000 }),
    );
    expect(line).toContain("dumping ~99% [");
    expect(line).not.toContain("ETA");
  });

  it("shows the bytes and rate without a percent where no size is known", () => {
    expect(
      progressLine("restore", at({ phase: "restoring data", doneBytes: 5e6, phaseMs: 1_000, jobMs: 45_000 })),
    ).toBe("restore | restoring data | 5.0 MB | 5.0 MB/s | 45s");
  });

  it("counts the seconds of a phase that moves no bytes, so the line never stands still", () => {
    expect(progressLine("restore", at({ phase: "building indexes", phaseMs: 12_400, jobMs: 57_000 }))).toBe(
      "restore | building indexes (12s) | 57s",
    );
  });

  it("drops the bar, then the rate, on a terminal too narrow for them, and never wraps", () => {
    const state = at({ phase: "restoring data", doneBytes: 600e6, totalBytes: 1.4e9, phaseMs: 18_750, jobMs: 19_200 });
    expect(progressLine("restore", state, 79)).toBe(
      "restore | restoring data 42% | 600 MB of 1.4 GB | 32.0 MB/s | ETA 25s | 19s",
    );
    expect(progressLine("restore", state, 70)).toBe("restore | restoring data 42% | 600 MB of 1.4 GB | ETA 25s | 19s");
    expect(progressLine("restore", state, 20)).toHaveLength(20);
  });

  it("says less than a second rather than 0s when the end is that near", () => {
    expect(
      progressLine("restore", at({ phase: "restoring data", doneBytes: 99e6, totalBytes: 100e6, phaseMs: 3_000 })),
    ).toContain("| ETA <1s |");
  });

  it("gives no ETA in a phase's first second, when there is no rate worth the name", () => {
    expect(
      progressLine(
        "restore",
        at({ phase: "restoring data", doneBytes: 1e6, totalBytes: 1e9, phaseMs: 500, jobMs: 500 }),
      ),
    ).not.toContain("ETA");
  });

  it("says done at the end, and only the label and time before the first phase", () => {
    expect(progressLine("verify", at({ jobMs: 1_000 }))).toBe("verify | 1s");
    expect(progressLine("verify", at({ done: true, jobMs: 61_000 }))).toBe("verify | done | 1m01s");
  });

  it.for([
    [0, "0s"],
    [59.4, "59s"],
    [60, "1m00s"],
    [3599, "59m59s"],
    [3600, "1h00m"],
    [7385, "2h03m"],
  ] as const)("writes %s seconds as %s", ([seconds, text]) => {
    expect(humanDuration(seconds)).toBe(text);
  });
});
