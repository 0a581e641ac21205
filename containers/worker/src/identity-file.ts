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

/**
 * What ssh says of a private key file others can reach, for an identity file: one that
 * its group or everyone may read (or write) decrypts every backup encrypted to it for
 * whoever can. ssh refuses such a key; strongroom only warns, because refusing would stop
 * a restore at the moment it is needed. Undefined when only the owner has access.
 */
export async function identityFileExposure(file: string): Promise<string | undefined> {
  if (process.platform === "win32") return undefined;
  const mode = (await fs.stat(file)).mode & 0o777;
  if ((mode & 0o077) === 0) return undefined;
  const who = mode & 0o004 ? "readable by everyone" : mode & 0o040 ? "readable by its group" : "writable by others";
  return `identity file ${file} is ${who} (mode ${mode.toString(8).padStart(4, "0")}): whoever can read it can decrypt every backup encrypted to it; chmod 600 ${file}`;
}
