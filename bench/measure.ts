import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

/** Wall time of a command, and with `rss` its peak resident set and where its CPU went. */
export interface Timed {
  seconds: number;
  peakRssMiB?: number;
  /**
   * Core-seconds of the command's own process by thread: `main` (the event loop: age,
   * hashing, the archive tap, I/O), `pool` (libuv workers: zstd frames, fs), `other`
   * (V8's GC and compiler threads). Children (pg_dump, pg_restore) are not in it.
   */
  cpu?: { main: number; pool: number; other: number };
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
  const cpu = { main: 0, pool: 0, other: 0 };
  const poll = async () => {
    while (child.exitCode === null && child.signalCode === null) {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
        if (m) peak = Math.max(peak, Number(m[1]) / 1024);
        const now = { main: 0, pool: 0, other: 0 };
        for (const tid of readdirSync(`/proc/${child.pid}/task`)) {
          const t = threadCpu(child.pid as number, Number(tid));
          const group = Number(tid) === child.pid ? "main" : t.comm.startsWith("libuv-worker") ? "pool" : "other";
          now[group] += t.seconds;
        }
        // Threads that ended take their time with them; keep each group's highest reading.
        for (const g of ["main", "pool", "other"] as const) cpu[g] = Math.max(cpu[g], now[g]);
      } catch {}
      await sleep(50);
    }
  };
  const polling = rss ? poll() : Promise.resolve();
  const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
  await polling;
  if (code !== 0) throw new Error(`${command} ${args.join(" ")} failed (${code}): ${stderr}`);
  return { seconds: (performance.now() - started) / 1000, stdout, ...(rss ? { peakRssMiB: peak, cpu } : {}) };
}

const TICKS_PER_SECOND = 100;

/** A thread's name and user + system CPU seconds, from /proc/<pid>/task/<tid>/stat. */
function threadCpu(pid: number, tid: number): { comm: string; seconds: number } {
  const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
  const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
  // Fields after the name: state is field 3, utime 14 and stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { comm, seconds: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND };
}

/** User + system CPU seconds a whole process has used so far (a stand-in such as moto). */
export function processCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** The median of `runs` timings of `run(i)`, each in seconds as it returns them. */
export async function medianSeconds(runs: number, run: (i: number) => Promise<number>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) times.push(await run(i));
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)] as number;
}

/** Prints one JSON line: `files` requests made one at a time against 16 at once, and the speed-up. */
export function printOneVersusSixteen(files: number, runs: number, one: number, sixteen: number): void {
  console.log(
    JSON.stringify({ files, runs, oneAtATimeSeconds: one, sixteenAtOnceSeconds: sixteen, speedup: one / sixteen }),
  );
}
