import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { onTestFinished } from "vitest";

/** Dirs made outside a test (in a beforeAll, or at a describe's top), removed once their file is done. */
const madeInHooks = new Set<string>();

/**
 * A private temp dir, removed when the current test finishes; made from a hook, when the
 * test file finishes (test/rig/temp-dirs.ts). Not at process exit: vitest ends its forked
 * workers without an exit event, and every hook's dir (stores with backups, identity files)
 * used to be left in /tmp.
 */
export async function tempDir(prefix = "strongroom-test-"): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  try {
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
  } catch {
    madeInHooks.add(dir);
  }
  return dir;
}

/** Removes the dirs tempDir made outside a test; run after each test file's own afterAll hooks. */
export async function removeHookTempDirs(): Promise<void> {
  for (const dir of madeInHooks) await rm(dir, { recursive: true, force: true });
  madeInHooks.clear();
}
