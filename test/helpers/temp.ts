import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { onTestFinished } from "vitest";

/** A private temp dir removed when the current test finishes (or, from a hook, when the worker exits). */
export async function tempDir(prefix = "strongroom-test-"): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  try {
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
  } catch {
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  }
  return dir;
}
