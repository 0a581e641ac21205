import { constants } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";

/**
 * fsync a directory, so that a rename, link or new entry in it survives a power loss.
 * Without it, a committed manifest or audit row can vanish while the file's own data
 * was flushed.
 */
export async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * fsync `dir` and, when `mkdir -p` created part of the path (`created`: the first
 * directory it made), every parent that gained a new entry.
 */
export async function syncNewPath(dir: string, created: string | undefined): Promise<void> {
  await syncDir(dir);
  if (created === undefined) return;
  for (let d = dir; d !== path.dirname(created); d = path.dirname(d)) {
    await syncDir(path.dirname(d));
    if (d === created) break;
  }
}
