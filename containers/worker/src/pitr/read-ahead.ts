import { existsSync } from "node:fs";
import { chown, mkdir, readdir, rename, rm } from "node:fs/promises";
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
  const candidates = [
    path.resolve(here, "../../bin/strongroom-wal-restore"),
    path.resolve(here, "../containers/worker/bin/strongroom-wal-restore"),
  ];
  return candidates.find((c) => existsSync(c));
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
  const incoming = path.join(o.spool, ".incoming");
  const depth = o.depth ?? 8;
  const parallel = o.parallel ?? 4;
  const run = (async () => {
    await mkdir(incoming, { recursive: true, mode: 0o700 });
    let next = 0;
    let ended = false;
    const inFlight = new Set<Promise<void>>();
    while (!controller.signal.aborted && !ended && (next < o.names.length || inFlight.size > 0)) {
      const waiting = (await readdir(o.spool)).filter((f) => !f.startsWith(".")).length;
      while (next < o.names.length && !ended && inFlight.size < parallel && waiting + inFlight.size < depth) {
        const name = o.names[next++] as string;
        const job = (async () => {
          try {
            const staged = path.join(incoming, name);
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
      await rm(o.spool, { recursive: true, force: true });
    },
  };
}
