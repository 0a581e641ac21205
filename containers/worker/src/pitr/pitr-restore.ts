import { spawn } from "node:child_process";
import { chown, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { createZstdDecompress } from "node:zlib";
import { IntegrityError, InvalidInputError, RestoreFailedError, UsageError } from "#core/errors.ts";
import { walPrefix } from "#core/keys.ts";
import type { Logger } from "#core/log.ts";
import type { BaseManifest } from "#core/pitr/base-manifest.ts";
import { continuousRun, parseLsn, segmentName } from "#core/pitr/lsn.ts";
import { listAll, type ObjectStore } from "#core/store/object-store.ts";
import { findServerBin, serverUser } from "../pg/scratch-cluster.ts";
import { ageDecrypt } from "../stages/age-stream.ts";
import { sha256Tap } from "../stages/sha256-tap.ts";
import { trustedBases } from "./bases.ts";

export type RecoveryTarget =
  | { kind: "time"; value: string }
  | { kind: "lsn"; value: string }
  | { kind: "xid"; value: string }
  | { kind: "name"; value: string }
  | { kind: "latest" };

export interface PitrRestoreOptions {
  store: ObjectStore;
  databaseId: string;
  identityFile: string;
  identities: readonly string[];
  signers: ReadonlySet<string>;
  target: RecoveryTarget;
  /** A base backup id; xid and name targets need one (no time or LSN says which base precedes them). */
  baseId?: string;
  pgdata: string;
  /** Start the recovered server on this port, and wait for its verdict. */
  start?: { port: number };
  /** How wal-fetch is run from the recovered server: this program's node and entry script. */
  walFetch: { node: string; script: string; storeUrl: string };
  log: Logger;
}

export interface PitrRestoreResult {
  databaseId: string;
  baseId: string;
  pgdata: string;
  target: RecoveryTarget;
  /** The archived WAL from the base onwards with no gap, on the base's timeline. */
  wal: { first: string; lastContiguous: string; gaps: string[] };
  started?: { port: number; timeline: number; stoppedAt?: string };
}

/**
 * `restore --pitr`: the newest base backup before the target, its WAL checked for
 * continuity before anything is written, the base unpacked into an empty --pgdata, and
 * PostgreSQL's recovery configured (recovery.signal; restore_command = wal-fetch, which
 * replays only WAL a trusted signer signed; the target; promote). With --start, the server
 * is started and its own log must say the target was reached and a new timeline chosen.
 */
export async function pitrRestore(o: PitrRestoreOptions): Promise<PitrRestoreResult> {
  if ((o.target.kind === "xid" || o.target.kind === "name") && o.baseId === undefined) {
    throw new UsageError(`a recovery to a transaction id or a restore point name needs --base`, {
      hint: "neither says which base backup precedes it: name one (strongroom list shows base backups), or recover to a time or an LSN",
    });
  }
  const bases = await trustedBases(o.store, o.databaseId, o.signers, o.log);
  const base = chooseBase(bases, o);
  const wal = await walWindow(o.store, o.databaseId, base);
  if (o.target.kind === "lsn") {
    const needed = segmentName(base.timeline, parseLsn(o.target.value), base.server.walSegmentBytes);
    if (needed > wal.lastContiguous) {
      throw new IntegrityError(
        `the archive cannot reach ${o.target.value}: its WAL is continuous only to ${wal.lastContiguous}`,
        {
          hint:
            wal.gaps.length > 0
              ? `missing: ${wal.gaps.slice(0, 3).join(", ")}`
              : "the segment holding it is not archived yet (pg_switch_wal() on the server)",
        },
      );
    }
  }
  await emptyDir(o.pgdata);
  await unpack(o, base);
  await configure(o, base);
  const owner = await serverUser();
  if (owner) await chownTree(o.pgdata, owner.uid, owner.gid);
  const result: PitrRestoreResult = {
    databaseId: o.databaseId,
    baseId: base.baseId,
    pgdata: o.pgdata,
    target: o.target,
    wal,
  };
  if (o.start) result.started = await startAndConfirm(o, base, owner);
  return result;
}

function chooseBase(bases: BaseManifest[], o: PitrRestoreOptions): BaseManifest {
  const none = (why: string) =>
    new InvalidInputError(`no base backup of ${o.databaseId} to recover from: ${why}`, {
      hint:
        bases.length > 0
          ? `base backups (stopped at): ${bases.map((b) => `${b.baseId} (${b.stoppedAt}, ${b.stopLsn})`).join(", ")}`
          : "take one with strongroom basebackup (docs/pitr.md)",
    });
  if (o.baseId !== undefined) {
    const named = bases.find((b) => b.baseId === o.baseId);
    if (!named) throw none(`${o.baseId} is not a committed base backup`);
    return named;
  }
  const t = o.target;
  const fit =
    t.kind === "time"
      ? bases.filter((b) => Date.parse(b.stoppedAt) <= Date.parse(t.value))
      : t.kind === "lsn"
        ? bases.filter((b) => parseLsn(b.stopLsn) <= parseLsn(t.value))
        : bases;
  const newest = fit.at(-1);
  if (!newest) throw none(t.kind === "latest" ? "there is none" : `none ended before ${t.value}`);
  return newest;
}

/** The archived segments of the base's timeline from its first one, and the first gap after it. */
async function walWindow(
  store: ObjectStore,
  databaseId: string,
  base: BaseManifest,
): Promise<PitrRestoreResult["wal"]> {
  const prefix = walPrefix(databaseId);
  const names = new Set<string>();
  for await (const object of listAll(store, prefix)) names.add(object.key.slice(prefix.length));
  const run = continuousRun(
    { timeline: base.timeline, firstSegment: base.walSegments.first, segmentBytes: base.server.walSegmentBytes },
    names,
    (name) => names.has(name),
  );
  const last = run.last ?? base.walSegments.first;
  if (run.last === undefined || run.last < base.walSegments.last) {
    throw new IntegrityError(`the WAL base backup ${base.baseId} needs is not all archived: ${run.next} is missing`, {
      hint: "the archive has a gap inside the base backup's own range; a recovery from it cannot reach consistency",
    });
  }
  const gaps = run.gap !== undefined ? [run.gap] : [];
  return { first: base.walSegments.first, lastContiguous: last, gaps };
}

async function emptyDir(dir: string): Promise<void> {
  const entries = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
  if (entries && entries.length > 0) {
    throw new UsageError(`--pgdata ${dir} is not empty`, {
      hint: "recover into a new or empty directory; an existing cluster is never written over",
    });
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
}

/** The base object, checked against its manifest as it streams, decrypted and decompressed into tar. */
async function unpack(o: PitrRestoreOptions, base: BaseManifest): Promise<void> {
  const stored = sha256Tap();
  const plain = sha256Tap();
  const tar = spawn("tar", ["-x", "-f", "-", "-C", o.pgdata], { stdio: ["pipe", "ignore", "pipe"] });
  let tarErr = "";
  tar.stderr.on("data", (b: Buffer) => {
    tarErr = (tarErr + b.toString()).slice(-2000);
  });
  const exited = new Promise<number | null>((resolve) => tar.once("close", resolve));
  await pipeline(
    await o.store.get(base.object.key),
    stored,
    ageDecrypt(o.identities),
    createZstdDecompress(),
    plain,
    tar.stdin,
  );
  const code = await exited;
  if (stored.result().sha256 !== base.object.storedSha256 || plain.result().sha256 !== base.object.plainSha256) {
    throw new IntegrityError(`base backup ${base.baseId}'s object is not the one its signed manifest describes`, {
      hint: "it was replaced in the store; --pgdata holds what it unpacked and must not be started",
    });
  }
  if (code !== 0)
    throw new RestoreFailedError(`tar exited ${code} unpacking base backup ${base.baseId}: ${tarErr.trim()}`);
}

const quote = (v: string) => `'${v.replaceAll("'", "''")}'`;
const shellQuote = (v: string) => `'${v.replaceAll("'", `'\\''`)}'`;

async function configure(o: PitrRestoreOptions, base: BaseManifest): Promise<void> {
  const fetch = [
    o.walFetch.node,
    o.walFetch.script,
    "wal-fetch",
    "%f",
    "%p",
    "--store",
    o.walFetch.storeUrl,
    "--database-id",
    o.databaseId,
    "--identity",
    path.resolve(o.identityFile),
    ...[...o.signers].flatMap((s) => ["--signer", s]),
    // WAL another cluster archived under this database id is never replayed into this one.
    "--system-identifier",
    base.server.systemIdentifier,
  ];
  // %f and %p are PostgreSQL's; every other word is quoted for the shell that runs it.
  const restoreCommand = fetch.map((w) => (w === "%f" || w === "%p" ? w : shellQuote(w))).join(" ");
  const t = o.target;
  const settings: Record<string, string> = {
    restore_command: restoreCommand,
    recovery_target_timeline: "latest",
    recovery_target_action: "promote",
    // The recovered copy must not archive into the source's WAL under the same database id.
    archive_mode: "off",
    ...(t.kind === "latest" ? {} : { [`recovery_target_${t.kind}`]: t.value }),
    ...(o.start ? { port: String(o.start.port) } : {}),
  };
  const lines = Object.entries(settings).map(([k, v]) => `${k} = ${quote(v)}`);
  const auto = path.join(o.pgdata, "postgresql.auto.conf");
  const existing = await readFile(auto, "utf8").catch(() => "");
  await writeFile(
    auto,
    `${existing}${existing.endsWith("\n") || existing === "" ? "" : "\n"}# strongroom restore --pitr: ${o.databaseId}/${base.baseId}\n${lines.join("\n")}\n`,
    { mode: 0o600 },
  );
  await writeFile(path.join(o.pgdata, "recovery.signal"), "", { mode: 0o600 });
}

async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await chown(dir, uid, gid);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(p, uid, gid);
    else await chown(p, uid, gid);
  }
}

/**
 * Starts the recovered server (pg_ctl, as the data directory's owner) and waits for its
 * own log to say how recovery ended: a new timeline selected after "recovery stopping"
 * (or the end of the archive for --to-latest), or PostgreSQL's FATAL "recovery ended
 * before configured recovery target was reached", which is an error, never a success.
 */
async function startAndConfirm(
  o: PitrRestoreOptions,
  base: BaseManifest,
  owner: { uid: number; gid: number } | undefined,
): Promise<NonNullable<PitrRestoreResult["started"]>> {
  const start = o.start as NonNullable<PitrRestoreOptions["start"]>;
  const logFile = path.join(o.pgdata, "strongroom-recovery.log");
  await writeFile(logFile, "", { mode: 0o600 });
  if (owner) await chown(logFile, owner.uid, owner.gid);
  const binDir = await findServerBin(base.server.major);
  const ctl = spawn(path.join(binDir, "pg_ctl"), ["start", "-D", o.pgdata, "-l", logFile, "-W"], {
    ...(owner ? { uid: owner.uid, gid: owner.gid } : {}),
    env: { PATH: process.env.PATH },
    stdio: "ignore",
  });
  await new Promise((resolve) => ctl.once("close", resolve));
  const until = Date.now() + 60 * 60 * 1000;
  for (;;) {
    const log = await readFile(logFile, "utf8");
    // A client's "the database system is starting up" is no failure of the recovery.
    const fatal = /FATAL: +(?!the database system is)[^\n]*/.exec(log);
    if (fatal) {
      const reached = fatal[0].includes("recovery ended before configured recovery target was reached");
      throw new RestoreFailedError(`the recovered server stopped: ${fatal[0].trim()}`, {
        hint: reached
          ? "the archive's WAL ends before the target: choose an earlier target (strongroom wal verify will show the window), or wait until the segment holding it is archived"
          : `see ${logFile}`,
      });
    }
    const timeline = /selected new timeline ID: (\d+)/.exec(log)?.[1];
    if (timeline !== undefined && /database system is ready to accept connections/.test(log)) {
      const stopped = /recovery stopping [^\n]*/.exec(log)?.[0];
      if (o.target.kind !== "latest" && !stopped) {
        throw new RestoreFailedError("the server promoted without PostgreSQL's 'recovery stopping' line", {
          hint: `see ${logFile}`,
        });
      }
      if (Number(timeline) <= base.timeline) throw new RestoreFailedError(`the server stayed on timeline ${timeline}`);
      o.log.info("recovered", { timeline: Number(timeline), stopped, port: start.port });
      return { port: start.port, timeline: Number(timeline), ...(stopped ? { stoppedAt: stopped } : {}) };
    }
    if (Date.now() > until) throw new RestoreFailedError(`recovery did not finish within an hour; see ${logFile}`);
    await sleep(250);
  }
}
