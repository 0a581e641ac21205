import cliProgress from "cli-progress";

export interface Progress {
  update(doneBytes: number, totalBytes?: number): void;
  stop(): void;
}

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

let active: cliProgress.SingleBar | undefined;

/**
 * Clears the running bar's line before a log line is written, so the two never share a
 * line; the bar redraws itself below on its next tick.
 */
export function clearProgressLine(stream: NodeJS.WriteStream = process.stderr): void {
  if (active && stream.isTTY) stream.write("\r\x1b[2K");
}

/**
 * Bytes, rate and elapsed time on stderr, only when stderr is a terminal (never in
 * logs, CI output or --json pipelines).
 */
export function progress(label: string, enabled = process.stderr.isTTY === true): Progress {
  if (!enabled) return { update() {}, stop() {} };
  const started = Date.now();
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} {done} | {rate}/s | {elapsed}`,
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: false,
      // Keep the terminal's line wrapping on: with it off, a log line printed while the
      // bar runs is cut at the screen edge.
      linewrap: true,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(1, 0, { done: "0 B", rate: "0 B", elapsed: "0s" });
  active = bar;
  return {
    update(doneBytes) {
      const seconds = Math.max(0.001, (Date.now() - started) / 1000);
      bar.update(0, { done: human(doneBytes), rate: human(doneBytes / seconds), elapsed: `${seconds.toFixed(0)}s` });
    },
    stop() {
      bar.stop();
      if (active === bar) active = undefined;
    },
  };
}

export { human as humanBytes };
