import { randomUUID } from "node:crypto";
import { constants } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { AlreadyExistsError } from "#core/errors.ts";
import { syncDir } from "#core/fsync-dir.ts";

export interface WrittenIdentity {
  file: string;
  /** Where the identity that `--force` replaced now lives. */
  previous?: string;
}

/**
 * Writes an identity file without ever destroying one: the text goes to a 0600 temp
 * file beside `file` and is fsynced; without `force` it is linked into place (link(2)
 * fails if `file` exists); with `force` the old identity is first linked aside as
 * `<file>.bak-<time>` and the new one renamed over it, so at every instant `file`
 * holds a whole identity and the old one is still on disk. Every backup encrypted to
 * the old key needs it.
 */
export async function writeIdentityFile(
  file: string,
  text: string,
  options: { force: boolean; now: Date },
): Promise<WrittenIdentity> {
  const target = path.resolve(file);
  const dir = path.dirname(target);
  const temp = path.join(dir, `.${path.basename(target)}.tmp-${randomUUID()}`);
  const handle = await fs.open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    if (!options.force) {
      try {
        await fs.link(temp, target);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EEXIST") {
          throw new AlreadyExistsError(`identity file ${file} already exists`, {
            hint: "keep it (it may decrypt existing backups), choose another --out, or pass --force (which keeps the old one as a .bak file)",
          });
        }
        throw err;
      }
      await syncDir(dir);
      return { file: target };
    }
    let previous: string | undefined;
    try {
      previous = `${target}.bak-${options.now
        .toISOString()
        .replace(/[-:]/g, "")
        .replace(/\.\d+Z$/, "Z")}`;
      await fs.link(target, previous);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") previous = undefined;
      else if (code === "EEXIST") {
        previous = `${previous}-${randomUUID().slice(0, 8)}`;
        await fs.link(target, previous);
      } else throw err;
    }
    await fs.rename(temp, target);
    await syncDir(dir);
    return previous ? { file: target, previous } : { file: target };
  } finally {
    await fs.rm(temp, { force: true });
  }
}
