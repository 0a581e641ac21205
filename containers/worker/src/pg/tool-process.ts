import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import * as path from "node:path";
import { redact } from "#core/log.ts";

export interface ToolProcess {
  child: ChildProcess;
  /** Resolves with the exit code (or the signal name) once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last 8 KiB of stderr, redacted. */
  stderr: () => string;
}

/**
 * Spawns a PostgreSQL client tool. Secrets go in `env` only; stderr is kept
 * (bounded) for error messages and always redacted before anyone sees it.
 */
export function spawnTool(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  options: {
    stdin?: "pipe" | "ignore";
    stdout?: "pipe" | "ignore";
    signal?: AbortSignal;
    /** Have the tool's stdio write its stdout in pieces this large (see `largeWrites`). */
    stdoutWrites?: number;
  } = {},
): ToolProcess {
  const [file, argv] = options.stdoutWrites ? largeWrites(command, args, options.stdoutWrites) : [command, args];
  const child = spawn(file, argv, {
    env,
    stdio: [options.stdin ?? "ignore", options.stdout ?? "pipe", "pipe"],
  });
  let tail = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (s: string) => {
    tail = (tail + s).slice(-8192);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("error", (err) => {
      tail += `\n${err.message}`;
      resolve({ code: -1, signal: null });
    });
    child.once("close", (code, signal) => resolve({ code, signal }));
  });
  const onAbort = () => child.kill("SIGTERM");
  options.signal?.addEventListener("abort", onAbort, { once: true });
  exited.finally(() => options.signal?.removeEventListener("abort", onAbort));
  return { child, exited, stderr: () => redact(tail.trim()) };
}

/** "exited 1" / "killed by SIGKILL", for messages. */
export function describeExit(exit: { code: number | null; signal: NodeJS.Signals | null }): string {
  return exit.signal ? `killed by ${exit.signal}` : `exited ${exit.code}`;
}

let stdbufPath: string | null | undefined;

/**
 * The command run under coreutils' stdbuf, so that its stdio buffers stdout in pieces
 * of `bytes`: the same program (stdbuf execs it: same pid, exit status and signals) with
 * larger writes. pg_dump writes each row through a 4 KiB stdio buffer, so a backup read
 * ~85,000 pieces of ~10 KiB per 827 MB, and every piece cost a wake-up, a read, a Buffer
 * and a trip through each stage. 1 MiB writes took ~0.5 core-s of system time off each
 * 827 MB backup (pg_dump and node, side by side), on a 2-core machine that has none to
 * spare. Without stdbuf (not coreutils) the command runs as it is.
 */
function largeWrites(command: string, args: string[], bytes: number): [string, string[]] {
  if (stdbufPath === undefined) stdbufPath = findStdbuf();
  return stdbufPath ? [stdbufPath, [`-o${bytes}`, command, ...args]] : [command, args];
}

/**
 * The system's own stdbuf only, never one found on PATH: it runs with the tool's
 * environment, the database password included.
 */
function findStdbuf(): string | null {
  for (const dir of ["/usr/bin", "/bin"]) {
    const candidate = path.join(dir, "stdbuf");
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}
