import cliProgress from "cli-progress";
import { etaSeconds, type ProgressState, percentDone } from "./phases.ts";

function human(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(v >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

/** `45s`, `2m05s`, `1h02m`. */
export function humanDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

const BAR_CELLS = 20;

/**
 * The progress line: the phase, with percent, bar, bytes and ETA where the size is known
 * (`~` and "(estimate)" where it is a guess), the rate, then the job's elapsed time:
 *
 *   restore | restoring data 42% [████████░░░░░░░░░░░░] | 600 MB of 1.4 GB | 32.0 MB/s | ETA 25s | 19s
 *   restore | building indexes (4s) | 23s
 *
 * A phase without bytes shows how long it has run, so the line never stands still. On a
 * terminal narrower than the line, the bar goes first, then the rate: a line that wraps
 * is redrawn on a new line at every tick.
 */
export function progressLine(label: string, s: ProgressState, maxWidth = Number.POSITIVE_INFINITY): string {
  const approx = s.estimatedFrom !== undefined ? "~" : "";
  const percent = percentDone(s.doneBytes, s.totalBytes);
  const eta = etaSeconds(s.doneBytes, s.totalBytes, s.phaseMs);
  const line = (bar: boolean, rate: boolean) => {
    let phase = s.done ? "done" : (s.phase ?? "");
    if (percent !== undefined) {
      const cells = Math.floor((percent / 100) * BAR_CELLS);
      phase += ` ${approx}${Math.floor(percent)}%`;
      if (bar) phase += ` [${"█".repeat(cells)}${"░".repeat(BAR_CELLS - cells)}]`;
    } else if (s.phase && s.doneBytes === undefined) {
      phase += ` (${humanDuration(s.phaseMs / 1000)})`;
    }
    const parts = [label, phase];
    if (s.doneBytes !== undefined) {
      parts.push(
        s.totalBytes !== undefined
          ? `${human(s.doneBytes)} of ${approx}${human(s.totalBytes)}${approx ? " (estimate)" : ""}`
          : human(s.doneBytes),
      );
      if (rate && s.phaseMs > 0) parts.push(`${human(s.doneBytes / (s.phaseMs / 1000))}/s`);
    }
    if (eta !== undefined) parts.push(`ETA ${approx}${eta < 1 ? "<1s" : humanDuration(eta)}`);
    parts.push(humanDuration(s.jobMs / 1000));
    return parts.filter((p) => p !== "").join(" | ");
  };
  const fits = [line(true, true), line(false, true), line(false, false)].find((l) => l.length <= maxWidth);
  return fits ?? line(false, false).slice(0, maxWidth);
}

let active: cliProgress.SingleBar | undefined;

/**
 * Clears the running bar's line before a log line is written, so the two never share a
 * line; the bar redraws itself below on its next tick.
 */
export function clearProgressLine(stream: NodeJS.WriteStream = process.stderr): void {
  if (active && stream.isTTY) stream.write("\r\x1b[2K");
}

export interface ProgressBarOptions {
  /** @default stderr is a terminal */
  enabled?: boolean;
  /** @default process.stderr */
  stream?: NodeJS.WriteStream;
}

/**
 * The progress line on stderr, redrawn five times a second from `read`, only when stderr
 * is a terminal: never in logs, CI output or --json pipelines, which get no escape codes
 * (they get the phases as log events instead: commands/context.ts).
 */
export function progressBar(
  label: string,
  read: () => ProgressState,
  options: ProgressBarOptions = {},
): { stop(): void } {
  const stream = options.stream ?? process.stderr;
  if (!(options.enabled ?? stream.isTTY === true)) return { stop() {} };
  const bar = new cliProgress.SingleBar({
    // Drawn from the state at each tick, not from the last update: a phase that reports
    // no bytes (pg_restore building indexes) still counts its seconds. One column short
    // of the width: a line that fills the last column wraps on some terminals.
    format: (_options, params) => progressLine(label, read(), Math.max(20, params.maxWidth - 1)),
    stream,
    hideCursor: true,
    clearOnComplete: false,
    // Keep the terminal's line wrapping on: with it off, a log line printed while the
    // bar runs is cut at the screen edge.
    linewrap: true,
    fps: 5,
  });
  bar.start(1, 0);
  active = bar;
  return {
    stop() {
      bar.stop();
      if (active === bar) active = undefined;
    },
  };
}

export { human as humanBytes };
