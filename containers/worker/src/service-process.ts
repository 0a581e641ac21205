import { type ChildProcess, type SpawnOptions, spawn } from "node:child_process";
import { createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

/** A free TCP port on 127.0.0.1 (bind :0, read, release). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

export interface Service {
  name: string;
  child: ChildProcess;
  /** Last lines of output, for the error when it does not come up. */
  output: () => string;
  stop: () => Promise<void>;
}

const live = new Set<ChildProcess>();
// Whatever happens to the test process, take the services down with it.
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

/** Spawns a long-running service; `stop()` signals it by PID and waits for it to exit. */
export function startProcess(
  name: string,
  command: string,
  args: string[],
  options: SpawnOptions & { stopSignal?: NodeJS.Signals } = {},
): Service {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], ...options });
  live.add(child);
  let tail = "";
  const keep = (b: Buffer) => {
    tail = (tail + b.toString()).slice(-4000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  child.once("exit", () => live.delete(child));
  return {
    name,
    child,
    output: () => tail,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill(options.stopSignal ?? "SIGTERM");
      const timedOut = await Promise.race([
        exited.then(() => false),
        sleep(15_000, undefined, { ref: false }).then(() => true),
      ]);
      if (timedOut) {
        child.kill("SIGKILL");
        await exited;
      }
    },
  };
}

/** Polls `probe` until it resolves true; fails with the service's output if it dies or times out. */
export async function waitUntil(service: Service, probe: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (service.child.exitCode !== null) {
      throw new Error(`${service.name} exited with ${service.child.exitCode}:\n${service.output()}`);
    }
    if (await probe().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`${service.name} did not come up within ${timeoutMs} ms:\n${service.output()}`);
}
