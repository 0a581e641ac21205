import { type ChildProcess, spawn } from "node:child_process";
import * as path from "node:path";

export const CLI = path.resolve(import.meta.dirname, "../../containers/worker/bin/strongroom.mjs");

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  timeoutMs?: number;
  cwd?: string;
  /** Run as this OS user (root only), as a non-root worker would. */
  user?: { uid: number; gid: number };
}

/**
 * Runs the real CLI in a child process (Node 22, as npx would). Connection URLs and
 * passwords go in `env`, never argv, like a careful user does.
 */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, options: CliOptions = {}): Promise<CliResult> {
  return startCli(args, env, options).result;
}

/** Like runCli, with the child at hand (to signal it mid-run). */
export function startCli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  options: CliOptions = {},
): { child: ChildProcess; result: Promise<CliResult> } {
  const child = spawn(process.execPath, [CLI, ...args], {
    ...(options.cwd ? { cwd: options.cwd } : {}),
    ...(options.user ? { uid: options.user.uid, gid: options.user.gid } : {}),
    env: { ...process.env, STRONGROOM_LOG_FORMAT: "text", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const result = new Promise<CliResult>((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => {
      stdout += s;
    });
    child.stderr.setEncoding("utf8").on("data", (s: string) => {
      stderr += s;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 120_000);
    child.once("error", reject);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, result };
}
