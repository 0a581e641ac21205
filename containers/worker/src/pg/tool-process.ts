import { type ChildProcess, spawn } from "node:child_process";
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
  options: { stdin?: "pipe" | "ignore"; stdout?: "pipe" | "ignore"; signal?: AbortSignal } = {},
): ToolProcess {
  const child = spawn(command, args, {
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
