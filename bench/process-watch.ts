import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { processCpuSeconds } from "./measure.ts";

/** A command's wall time, what it printed, and (with `rss`) its own peak resident set. */
export interface Run {
  seconds: number;
  stdout: string;
  peakRssMiB: number;
}

/**
 * Runs a command, optionally as another OS user (the database host's `postgres`, as
 * archive_command and the host's tools run), and with `rss` polls its /proc status for
 * VmHWM. Fails with the end of its stderr.
 */
export async function runAs(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; user?: { uid: number; gid: number }; rss?: boolean } = {},
): Promise<Run> {
  const started = performance.now();
  const child = spawn(command, args, {
    env: { ...process.env, ...options.env },
    ...(options.user ? { uid: options.user.uid, gid: options.user.gid } : {}),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => {
    stdout = (stdout + s).slice(-1_000_000);
  });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (s: string) => {
    stderr = (stderr + s).slice(-4000);
  });
  let peak = 0;
  const poll = async () => {
    while (child.exitCode === null && child.signalCode === null) {
      peak = Math.max(peak, peakRssMiB(child.pid as number));
      await sleep(50);
    }
  };
  const polling = options.rss ? poll() : Promise.resolve();
  const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
  await polling;
  if (code !== 0) throw new Error(`${command} ${args.join(" ")} failed (${code}): ${stderr}`);
  return { seconds: (performance.now() - started) / 1000, stdout, peakRssMiB: peak };
}

/** VmHWM of a live process in MiB; 0 once it is gone. */
export function peakRssMiB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** What a watch saw of the processes it matched. */
export interface Watched {
  processes: number;
  peakRssMiB: number;
  /** Sum over the matched processes of the last CPU reading of each (core-seconds). */
  cpuSeconds: number;
}

/**
 * Watches every process whose command line matches, by polling /proc every `everyMs`:
 * for processes we did not start and cannot wait for (those PostgreSQL runs as
 * restore_command, pgBackRest's detached async archiver). A sample, not an account: a
 * process shorter than `everyMs` may be missed, and the CPU a process spends after its
 * last sample is not counted, so its CPU is a lower bound.
 */
export function watchProcesses(match: (commandLine: string) => boolean, everyMs = 100): () => Promise<Watched> {
  const seen = new Map<number, { rss: number; cpu: number }>();
  let stopping = false;
  const self = process.pid;
  const loop = (async () => {
    while (!stopping) {
      for (const entry of readdirSync("/proc")) {
        const pid = Number(entry);
        if (!Number.isInteger(pid) || pid === self) continue;
        try {
          const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
          if (!match(cmd)) continue;
          const before = seen.get(pid) ?? { rss: 0, cpu: 0 };
          seen.set(pid, {
            rss: Math.max(before.rss, peakRssMiB(pid)),
            cpu: Math.max(before.cpu, processCpuSeconds(pid)),
          });
        } catch {}
      }
      await sleep(everyMs);
    }
  })();
  return async () => {
    stopping = true;
    await loop;
    const all = [...seen.values()];
    return {
      processes: all.length,
      peakRssMiB: Math.max(0, ...all.map((p) => p.rss)),
      cpuSeconds: all.reduce((sum, p) => sum + p.cpu, 0),
    };
  };
}
