import { describe, expect, it } from "vitest";
import { clearProgressLine, progress } from "./progress.ts";

function fakeTerminal() {
  const written: string[] = [];
  return { written, stream: { isTTY: true, write: (s: string) => written.push(s) } as unknown as NodeJS.WriteStream };
}

describe("progress bar and log lines", () => {
  it("clears the running bar's line before a log line, and leaves the terminal alone once the bar stopped", () => {
    const terminal = fakeTerminal();
    const bar = progress("backup", true);
    clearProgressLine(terminal.stream);
    expect(terminal.written).toEqual(["\r\x1b[2K"]);
    bar.stop();
    clearProgressLine(terminal.stream);
    expect(terminal.written).toEqual(["\r\x1b[2K"]);
  });

  it("does nothing when no bar runs (not a terminal, or --json pipelines)", () => {
    const terminal = fakeTerminal();
    const bar = progress("backup", false);
    clearProgressLine(terminal.stream);
    bar.stop();
    expect(terminal.written).toEqual([]);
  });
});
