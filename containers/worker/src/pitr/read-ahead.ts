import { existsSync } from "node:fs";
import { chown, mkdtemp, readdir, rename, rm, rmdir, unlink } from "node:fs/promises";
import * as path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { isStrongroomError, WalFileMissingError } from "#core/errors.ts";
import type { Logger } from "#core/log.ts";
import type { ObjectStore } from "#core/store/object-store.ts";
import { fetchWal } from "./wal-archive.ts";

export interface ReadAheadOptions {
  store: ObjectStore;
  databaseId: string;
  identities: readonly string[];
  signers: ReadonlySet<string>;
  systemIdentifier: string;
  /** The segments recovery will ask for, in order. */
  names: readonly string[];
  /** Outside the data directory; restore_command's client moves files out of it. */
  spool: string;
  /** The server's OS user: it must be able to read what it is given. */
  owner?: { uid: number; gid: number };
  /** At most this many files fetched ahead of what recovery has taken. @default 8 */
  depth?: number;
  /** Fetched at once. @default 4 */
  parallel?: number;
  log: Logger;
}

/** restore_command's client for a read-ahead, where this program has it beside it (not in the single executable). */
export function readAheadClient(): string | undefined {
  const here = import.meta.dirname;
  // The bundle (<package>/dist) and the sources (containers/worker/src/pitr): one place each, in the package.
  const client =
    path.basename(here) === "dist"
      ? path.resolve(here, "../containers/worker/bin/strongroom-wal-restore")
      : path.resolve(here, "../../bin/strongroom-wal-restore");
  return existsSync(client) ? client : undefined;
}

/**
 * A bounded read-ahead of the WAL a recovery replays: the next segments fetched, in
 * parallel, each checked as wal-fetch checks it (signature, cluster, size and SHA-256),
 * into the spool, whole (staged, given to the server's user, then renamed in). Never
 * more than `depth` files wait there. A file it could not fetch is left out: the client
 * then runs wal-fetch itself, whose answer (126 for a bad file) stops the recovery.
 */
export function startReadAhead(o: ReadAheadOptions): { stop: () => Promise<void> } {
  const controller = new AbortController();
  // Staged in a directory of our own beside the spool (the same filesystem, for the rename),
  // never inside it: the server's user owns the spool and could put symlinks where we write.
  let incoming: string | undefined;
  const depth = o.depth ?? 8;
  const parallel = o.parallel ?? 4;
  const run = (async () => {
    incoming = await mkdtemp(`${o.spool}.incoming-`);
    let next = 0;
    let ended = false;
    const inFlight = new Set<Promise<void>>();
    while (!controller.signal.aborted && !ended && (next < o.names.length || inFlight.size > 0)) {
      const waiting = (await readdir(o.spool)).filter((f) => !f.startsWith(".")).length;
      while (next < o.names.length && !ended && inFlight.size < parallel && waiting + inFlight.size < depth) {
        const name = o.names[next++] as string;
        const job = (async () => {
          try {
            const staged = path.join(incoming as string, name);
            await fetchWal(o.store, name, staged, o);
            if (o.owner) await chown(staged, o.owner.uid, o.owner.gid);
            await rename(staged, path.join(o.spool, name));
          } catch (err) {
            if (err instanceof WalFileMissingError) ended = true;
            else if (!controller.signal.aborted) {
              o.log.warn("read-ahead could not fetch a WAL file; recovery fetches it itself", {
                name,
                error: isStrongroomError(err) ? err.name : String(err),
              });
            }
          }
        })();
        inFlight.add(job);
        void job.finally(() => inFlight.delete(job));
      }
      await Promise.race([sleep(100), ...inFlight]);
    }
    await Promise.allSettled([...inFlight]);
  })().catch((err: unknown) => o.log.warn("read-ahead stopped", { error: String(err) }));
  return {
    stop: async () => {
      controller.abort();
      await run;
      if (incoming) await rm(incoming, { recursive: true, force: true });
      await emptySpool(o.spool);
    },
  };
}

/**
 * Removes the spool without following anything in it: the server's user owns it and may
 * have put a symlink or a directory where a file was. unlink(2) removes a symlink itself;
 * whatever it cannot remove stays, and the spool with it.
 */
export async function emptySpool(spool: string): Promise<void> {
  const names = await readdir(spool).catch(() => [] as string[]);
  for (const name of names) await unlink(path.join(spool, name)).catch(() => undefined);
  await rmdir(spool).catch(() => undefined);
}
