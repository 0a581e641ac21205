import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

/** Wall time of a command, and with `rss` its peak resident set. */
export interface Timed {
  seconds: number;
  peakRssMiB?: number;
  /** What the command printed (its --json result). */
  stdout?: string;
}

/** Runs a command; with `rss`, polls its /proc status for the peak resident set (VmHWM). */
export async function timed(command: string, args: string[], env: NodeJS.ProcessEnv, rss = false): Promise<Timed> {
  const started = performance.now();
  const child: ChildProcess = spawn(command, args, {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  child.stdout?.setEncoding("utf8").on("data", (s: string) => {
    stdout = (stdout + s).slice(-1_000_000);
  });
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (s: string) => {
    stderr = (stderr + s).slice(-4000);
  });
  let peak = 0;
  const poll = async () => {
    while (child.exitCode === null && child.signalCode === null) {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
        if (m) peak = Math.max(peak, Number(m[1]) / 1024);
      } catch {}
      await sleep(50);
    }
  };
  const polling = rss ? poll() : Promise.resolve();
  const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
  await polling;
  if (code !== 0) throw new Error(`${command} ${args.join(" ")} failed (${code}): ${stderr}`);
  return { seconds: (performance.now() - started) / 1000, stdout, ...(rss ? { peakRssMiB: peak } : {}) };
}
