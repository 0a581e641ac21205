import { readdir, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { RowSigner } from "#core/audit/row-signature.ts";
import { isStrongroomError, UsageError } from "#core/errors.ts";
import type { Logger } from "#core/log.ts";
import { parseWalFileName } from "#core/pitr/wal-file.ts";
import type { ObjectStore } from "#core/store/object-store.ts";
import { pushWal, withTimeout } from "./wal-archive.ts";

export interface ArchiverOptions {
  store: ObjectStore;
  databaseId: string;
  recipients: readonly string[];
  signer: RowSigner;
  /** The server's data directory: its pg_wal/archive_status says which files are ready. */
  pgdata: string;
  /** Where a marker says a file is stored, for archive_command's client (strongroom-wal-wait). */
  spool: string;
  /** Files pushed at once. @default 4 */
  parallel?: number;
  /** How often archive_status is read. @default 200 ms */
  pollMs?: number;
  /** One push's limit: a store that hangs fails it, and it is tried again. @default 120 s */
  timeoutMs?: number;
  log: Logger;
  signal: AbortSignal;
}

export interface ArchiverCounters {
  stored: number;
  alreadyStored: number;
  failed: number;
}

/**
 * `strongroom wal-archiver`: one long-lived process that archives what PostgreSQL has
 * ready, in parallel, so that a busy server does not start Node once per segment. It
 * reads pg_wal/archive_status/*.ready (never writes there: PostgreSQL owns it), pushes each
 * file as wal-push does (signed, zstd, age, put-if-absent) and, once the store holds it,
 * writes `<spool>/<name>.stored`. archive_command is the small client
 * (bin/strongroom-wal-wait): it exits 0 when that marker exists, which is when PostgreSQL
 * may recycle the segment, and runs `wal-push` itself when no archiver is alive. Nothing is
 * ever marked that is not stored, so no WAL is dropped to catch up: a file that fails is
 * tried again, and PostgreSQL keeps it until then.
 */
export async function runArchiver(o: ArchiverOptions): Promise<ArchiverCounters> {
  const status = path.join(o.pgdata, "pg_wal", "archive_status");
  await stat(status).catch(() => {
    throw new UsageError(`${status} does not exist: --pgdata is not a PostgreSQL data directory`, {
      hint: "pass the server's data directory (SHOW data_directory)",
    });
  });
  // The client believes a marker only in a spool that is this user's alone.
  const spool = await stat(o.spool);
  if (spool.uid !== process.getuid?.() || (spool.mode & 0o022) !== 0) {
    throw new UsageError(`--spool ${o.spool} must be this user's own, writable by nobody else`, {
      hint: "a marker there says a WAL file is stored, and PostgreSQL then recycles it: chown it to the server's user and chmod 0755 (one spool per cluster)",
    });
  }
  // Markers an earlier archiver (or cluster) left stand for nothing now.
  for (const f of await readdir(o.spool)) {
    if (f.endsWith(".stored") || f.endsWith(".stored.tmp")) await rm(path.join(o.spool, f), { force: true });
  }
  // A heartbeat, not a pid (a pid is reused): the client counts the archiver alive while it is fresh.
  const heartbeat = path.join(o.spool, "archiver.alive");
  await writeFile(heartbeat, `${process.pid}\n`, { mode: 0o644 });
  let beat = Date.now();
  const counters: ArchiverCounters = { stored: 0, alreadyStored: 0, failed: 0 };
  const inFlight = new Map<string, Promise<void>>();
  /** A file that failed is tried again after this, doubling to a minute. */
  const retryAt = new Map<string, { at: number; delayMs: number }>();
  const parallel = o.parallel ?? 4;
  o.log.info("archiving what PostgreSQL has ready", { pgdata: o.pgdata, spool: o.spool, parallel });
  try {
    while (!o.signal.aborted) {
      if (Date.now() - beat >= 1000) {
        const now = new Date();
        await utimes(heartbeat, now, now);
        beat = now.getTime();
      }
      const ready = await readyFiles(status);
      const marked = new Set((await readdir(o.spool)).filter((f) => f.endsWith(".stored")).map((f) => f.slice(0, -7)));
      // Markers whose file PostgreSQL no longer has ready were consumed another way (the client's own push).
      for (const name of marked) {
        if (!ready.includes(name)) await rm(path.join(o.spool, `${name}.stored`), { force: true });
      }
      const now = Date.now();
      for (const name of ready) {
        if (inFlight.size >= parallel) break;
        if (inFlight.has(name) || marked.has(name) || (retryAt.get(name)?.at ?? 0) > now) continue;
        const push = archiveOne(o, name, counters, retryAt).finally(() => inFlight.delete(name));
        inFlight.set(name, push);
      }
      await Promise.race([
        sleep(o.pollMs ?? 200, undefined, { signal: o.signal }).catch(() => undefined),
        ...inFlight.values(),
      ]);
    }
  } finally {
    // A push under way finishes (or fails) on its own; none is marked unless stored.
    await Promise.allSettled(inFlight.values());
    await rm(heartbeat, { force: true });
  }
  return counters;
}

/** The names PostgreSQL has ready to archive, oldest first, timeline histories before segments. */
async function readyFiles(status: string): Promise<string[]> {
  const names = (await readdir(status))
    .filter((f) => f.endsWith(".ready"))
    .map((f) => f.slice(0, -6))
    .filter((name) => {
      try {
        parseWalFileName(name);
        return true;
      } catch {
        return false;
      }
    });
  return names.sort((a, b) => {
    const ha = a.endsWith(".history") ? 0 : 1;
    const hb = b.endsWith(".history") ? 0 : 1;
    return ha - hb || (a < b ? -1 : a > b ? 1 : 0);
  });
}

async function archiveOne(
  o: ArchiverOptions,
  name: string,
  counters: ArchiverCounters,
  retryAt: Map<string, { at: number; delayMs: number }>,
): Promise<void> {
  try {
    const result = await withTimeout(
      pushWal(o.store, path.join(o.pgdata, "pg_wal", name), {
        databaseId: o.databaseId,
        recipients: o.recipients,
        signer: o.signer,
        dataDirectory: o.pgdata,
      }),
      o.timeoutMs ?? 120_000,
      `archiving ${name}`,
    );
    // Written whole, then renamed: the client never sees a marker for a file that is not
    // stored. It holds the SHA-256 stored, which the client compares with the file's own.
    const marker = path.join(o.spool, `${name}.stored`);
    await writeFile(`${marker}.tmp`, `${result.plainSha256}\n`, { mode: 0o644 });
    await rename(`${marker}.tmp`, marker);
    retryAt.delete(name);
    if (result.outcome === "stored") counters.stored++;
    else counters.alreadyStored++;
    o.log.info("archived", { name, outcome: result.outcome, storedBytes: result.storedBytes });
  } catch (err) {
    counters.failed++;
    const delayMs = Math.min(60_000, (retryAt.get(name)?.delayMs ?? 500) * 2);
    retryAt.set(name, { at: Date.now() + delayMs, delayMs });
    const conflict = isStrongroomError(err) && err.name === "WalConflictError";
    o.log[conflict ? "error" : "warn"]("a WAL file could not be archived; PostgreSQL keeps it and it is tried again", {
      name,
      error: isStrongroomError(err) ? err.name : String(err),
      problem: (err as Error).message,
      retryInMs: delayMs,
    });
  }
}
