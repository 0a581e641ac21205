import { spawn } from "node:child_process";
import { chown, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { createZstdDecompress } from "node:zlib";
import { IntegrityError, InvalidInputError, RestoreFailedError, UsageError } from "#core/errors.ts";
import type { Logger } from "#core/log.ts";
import {
  type ArchiveIndex,
  historiesFor,
  type RecoveryPath,
  readArchive,
  recoveryPath,
  timelinesPastPath,
} from "#core/pitr/archive-index.ts";
import type { BaseManifest } from "#core/pitr/base-manifest.ts";
import { trustedBases } from "#core/pitr/bases.ts";
import { parseLsn, segmentName } from "#core/pitr/lsn.ts";
import { RECOVERY_LOG_PREFIX, recoveryVerdict } from "#core/pitr/recovery-log.ts";
import { continuousRun, newestTimeline, segmentNumber, timelineForSegment, timelineHex } from "#core/pitr/timelines.ts";
import type { ObjectStore } from "#core/store/object-store.ts";
import { findServerBin, serverUser } from "../pg/scratch-cluster.ts";
import { ageDecrypt } from "../stages/age-stream.ts";
import { sha256Tap } from "../stages/sha256-tap.ts";
import { emptySpool, readAheadClient, startReadAhead } from "./read-ahead.ts";

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
  /** recovery_target_timeline: a timeline number; by default the newest the base leads to ('latest'). */
  timeline?: number;
  /** Base id → manifest SHA-256 the audit log committed: a base taken without the host's key counts too. */
  committed?: ReadonlyMap<string, string>;
  pgdata: string;
  /**
   * The recovered cluster archives its own WAL into this database's archive (it takes the
   * source's place): archive_command = wal-push with these recipients and this signing key
   * file. Without it, archive_mode is off: a copy must not write into the source's archive.
   */
  archive?: { recipients: readonly string[]; signingKeyFile: string };
  /** Start the recovered server on this port, and wait for its verdict. */
  start?: { port: number };
  /** How wal-fetch is run from the recovered server: this program's node and entry script. */
  /** `script` absent: `node` is strongroom itself (the host's single executable). */
  walFetch: { node: string; script?: string; storeUrl: string };
  log: Logger;
}

export interface PitrRestoreResult {
  databaseId: string;
  baseId: string;
  pgdata: string;
  target: RecoveryTarget;
  /** The timeline recovery follows, and the ones it crosses from the base's, oldest first. */
  timeline: { target: number; path: number[] };
  /** The archived WAL from the base onwards with no gap, along that path. */
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
  const bases = await trustedBases(o.store, o.databaseId, o.signers, o.log, o.committed);
  // Segment names only (each is checked when replayed); the timeline histories by their signed headers.
  const archive = await readArchive({ ...o, headers: "history" });
  const { base, path: route } = chooseBase(bases, archive, o);
  const wal = walWindow(archive, base, route);
  refuseBlockedPromotion(archive, base, route);
  // Segment names only here (their headers are read when replayed): a refusal, never a recovery that stops short.
  if (o.timeline === undefined)
    refuseMissingHistory(
      timelinesPastPath(archive.names, () => true, route),
      route,
    );
  if (o.target.kind === "lsn") {
    const bytes = base.server.walSegmentBytes;
    if (parseLsn(o.target.value) / BigInt(bytes) > segmentNumber(wal.lastContiguous, bytes)) {
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
  if (o.start && o.walFetch.script !== undefined && readAheadClient()) await refuseOpenParent(o.pgdata);
  await emptyDir(o.pgdata);
  await unpack(o, base);
  await configure(o, base, route);
  const owner = await serverUser();
  if (owner) await chownTree(o.pgdata, owner.uid, owner.gid);
  const result: PitrRestoreResult = {
    databaseId: o.databaseId,
    baseId: base.baseId,
    pgdata: o.pgdata,
    target: o.target,
    timeline: {
      target: route.timeline,
      path: route.spans.slice(route.spans.findIndex((s) => s.timeline === base.timeline)).map((s) => s.timeline),
    },
    wal,
  };
  if (o.start) {
    const client = o.walFetch.script !== undefined ? readAheadClient() : undefined;
    const spool = spoolOf(o.pgdata);
    let readAhead: { stop: () => Promise<void> } | undefined;
    if (client) {
      // One a crashed run left: emptied without following anything the server's user put there.
      await emptySpool(spool);
      await mkdir(spool, { mode: 0o700 });
      if (owner) await chown(spool, owner.uid, owner.gid);
      readAhead = startReadAhead({
        store: o.store,
        databaseId: o.databaseId,
        identities: o.identities,
        signers: o.signers,
        systemIdentifier: base.server.systemIdentifier,
        names: segmentsOnPath(base, route, wal.lastContiguous),
        spool,
        ...(owner ? { owner } : {}),
        log: o.log,
      });
    }
    try {
      result.started = await startAndConfirm(o, base, route, wal.lastContiguous, owner);
    } finally {
      await readAhead?.stop();
    }
  }
  return result;
}

/**
 * The base to recover from and the timeline path from it: the one named, else the newest
 * base that stopped before the target and lies on the path to the timeline recovered
 * ('latest' from that base, or --timeline). A base an old primary took after a promotion
 * is not on the new timeline's path, and PostgreSQL would refuse it.
 */
export function chooseBase(
  bases: BaseManifest[],
  archive: ArchiveIndex,
  o: Pick<PitrRestoreOptions, "databaseId" | "baseId" | "timeline" | "target">,
): { base: BaseManifest; path: RecoveryPath } {
  const none = (why: string) =>
    new InvalidInputError(`no base backup of ${o.databaseId} to recover from: ${why}`, {
      hint:
        bases.length > 0
          ? `base backups (timeline, stopped at): ${bases.map((b) => `${b.baseId} (${b.timeline}, ${b.stoppedAt}, ${b.stopLsn})`).join(", ")}`
          : "take one with strongroom basebackup (docs/pitr.md)",
    });
  const pathFrom = (base: BaseManifest) => recoveryPath(base, historiesFor(archive, base), o.timeline);
  if (o.baseId !== undefined) {
    const named = bases.find((b) => b.baseId === o.baseId);
    if (!named) throw none(`${o.baseId} is not a committed base backup`);
    const path = pathFrom(named);
    if (!path.holdsBase) {
      throw new InvalidInputError(
        `base backup ${named.baseId} (timeline ${named.timeline}, stopped at ${named.stopLsn}) is not in timeline ${path.timeline}'s history`,
        {
          hint: `recover along its own timeline with --timeline ${named.timeline}, or choose a base on timeline ${path.timeline}'s path`,
        },
      );
    }
    return { base: named, path };
  }
  const t = o.target;
  const fit =
    t.kind === "time"
      ? bases.filter((b) => Date.parse(b.stoppedAt) <= Date.parse(t.value))
      : t.kind === "lsn"
        ? bases.filter((b) => parseLsn(b.stopLsn) <= parseLsn(t.value))
        : bases;
  for (const base of [...fit].reverse()) {
    const path = pathFrom(base);
    if (path.holdsBase) return { base, path };
  }
  if (fit.length > 0) {
    throw none(
      `none that ended before the target lies on the path to timeline ${o.timeline ?? "latest"} (each was taken on a timeline a later promotion left)`,
    );
  }
  throw none(t.kind === "latest" ? "there is none" : `none ended before ${t.value}`);
}

/**
 * At promotion PostgreSQL asks restore_command for the next timelines' history files to
 * choose a new one; wal-fetch refuses an untrusted one (126), which would stop the
 * recovery after all its replay. Said before anything is written instead.
 */
function refuseBlockedPromotion(archive: ArchiveIndex, base: BaseManifest, route: RecoveryPath): void {
  const histories = historiesFor(archive, base);
  const next = newestTimeline(route.timeline, (t) => histories.has(t)) + 1;
  const name = `${timelineHex(next)}.history`;
  if (archive.untrusted.includes(name)) {
    throw new IntegrityError(
      `the archive holds a ${name} no trusted signer signed: the recovered server could not promote`,
      {
        hint: "PostgreSQL reads it to choose the new timeline, and it is never replayed: find who wrote it (the store's access log) and move it aside",
      },
    );
  }
}

/**
 * WAL archived on a timeline past the path's newest, with no history leading there: the
 * `.history` that starts it is gone. PostgreSQL's 'latest' would stop at the path's end
 * and promote, losing what was written after the failover, with nothing said.
 */
export function refuseMissingHistory(timelines: readonly number[], route: RecoveryPath): void {
  const [first] = timelines;
  if (first === undefined) return;
  throw new IntegrityError(
    `timeline ${first}'s WAL is archived, but no trusted ${timelineHex(first)}.history is: a recovery to the latest point would stop on timeline ${route.timeline} and lose what was written on ${timelines.join(", ")}`,
    {
      hint: `archive the history file again from the server that wrote it (pg_wal/${timelineHex(first)}.history, with strongroom wal-push), or pass --timeline ${route.timeline} to recover timeline ${route.timeline}'s line knowingly`,
    },
  );
}

/**
 * The read-ahead's spool lies beside --pgdata: in a directory others may write, one of them
 * could put a directory of their own files there, which the client would replay unchecked.
 * A sticky directory (/tmp) lets them create the name first, which only fails the mkdir.
 */
async function refuseOpenParent(pgdata: string): Promise<void> {
  const parent = path.dirname(path.resolve(pgdata));
  const { mode } = await stat(parent);
  if ((mode & 0o022) !== 0 && (mode & 0o1000) === 0) {
    throw new UsageError(`--pgdata's directory ${parent} is writable by others`, {
      hint: "recover into a directory whose parent only its owner may write (the read-ahead puts WAL beside it): chmod go-w, or choose another --pgdata",
    });
  }
}

/** Where the read-ahead puts WAL for a recovery into `pgdata`: beside it, never in it. */
const spoolOf = (pgdata: string) => `${path.resolve(pgdata)}.strongroom-wal`;

/** The segments recovery reads from the base's first to `last`, each from its timeline on the path. */
function segmentsOnPath(base: BaseManifest, route: RecoveryPath, last: string): string[] {
  const size = base.server.walSegmentBytes;
  const out: string[] = [];
  for (let s = segmentNumber(base.walSegments.first, size); s <= segmentNumber(last, size); s++) {
    out.push(segmentName(timelineForSegment(route.spans, s, size), s * BigInt(size), size));
  }
  return out;
}

/** The archived segments along the path from the base's first one, and the first gap after it. */
export function walWindow(
  archive: ArchiveIndex,
  base: BaseManifest,
  path: RecoveryPath,
  /** Which objects count: by default any of that name (each is checked when replayed). */
  has: (name: string) => boolean = (name) => archive.names.has(name),
): PitrRestoreResult["wal"] {
  const run = continuousRun(
    { timeline: base.timeline, firstSegment: base.walSegments.first, segmentBytes: base.server.walSegmentBytes },
    archive.names,
    has,
    path.spans,
  );
  const last = run.last ?? base.walSegments.first;
  if (run.last === undefined || run.last.slice(8) < base.walSegments.last.slice(8)) {
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
export async function unpack(
  o: Pick<PitrRestoreOptions, "store" | "identities" | "pgdata">,
  base: BaseManifest,
): Promise<void> {
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
/** Settings of a copied postgresql.auto.conf that would decide how (or whether) the recovery runs. */
const STEERS_RECOVERY =
  /^\s*(recovery_|primary_|restore_command|archive_cleanup_command|standby_|ignore_invalid_pages|log_line_prefix|logging_collector|log_destination|lc_messages|hot_standby|promote_trigger_file)/;
const shellQuote = (v: string) => `'${v.replaceAll("'", `'\\''`)}'`;
/**
 * %f and %p are PostgreSQL's; every other word is quoted for the shell that runs it, its
 * own % doubled (PostgreSQL replaces %f, %p, %r and %% anywhere in the command, quotes or not).
 */
export const commandLine = (words: string[]) =>
  words.map((w) => (w === "%f" || w === "%p" ? w : shellQuote(w.replaceAll("%", "%%")))).join(" ");

async function configure(o: PitrRestoreOptions, base: BaseManifest, route: RecoveryPath): Promise<void> {
  const fetch = [
    o.walFetch.node,
    ...(o.walFetch.script !== undefined ? [o.walFetch.script] : []),
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
  // With --start, a read-ahead fills a spool beside --pgdata and a shell client takes from it:
  // no Node start per file. Without (or from the single executable), wal-fetch itself.
  const client = o.start && o.walFetch.script !== undefined ? readAheadClient() : undefined;
  const restoreCommand = client
    ? `${commandLine([client, spoolOf(o.pgdata), "%f", "%p", "--"])} ${commandLine(fetch)}`
    : commandLine(fetch);
  const t = o.target;
  const settings: Record<string, string> = {
    restore_command: restoreCommand,
    // A number when asked for; else 'latest', which PostgreSQL resolves as chooseBase did.
    recovery_target_timeline: o.timeline !== undefined ? String(route.timeline) : "latest",
    recovery_target_action: "promote",
    ...(o.archive
      ? {
          // It takes the source's place: its new timeline, the history first, goes into the same archive.
          archive_mode: "on",
          archive_command: commandLine([
            o.walFetch.node,
            ...(o.walFetch.script !== undefined ? [o.walFetch.script] : []),
            "wal-push",
            "%p",
            "--store",
            o.walFetch.storeUrl,
            "--database-id",
            o.databaseId,
            ...o.archive.recipients.flatMap((r) => ["--recipient", r]),
            "--signing-key",
            path.resolve(o.archive.signingKeyFile),
          ]),
        }
      : // A copy must not archive into the source's WAL under the same database id.
        { archive_mode: "off" }),
    ...(t.kind === "latest" ? {} : { [`recovery_target_${t.kind}`]: t.value }),
    ...(o.start ? { port: String(o.start.port) } : {}),
  };
  const lines = Object.entries(settings).map(([k, v]) => `${k} = ${quote(v)}`);
  const auto = path.join(o.pgdata, "postgresql.auto.conf");
  // The source's own ALTER SYSTEM settings stay, but none that steers a recovery: a
  // recovery_target = 'immediate' there would stop it at consistency and call that the end.
  const existing = (await readFile(auto, "utf8").catch(() => ""))
    .split("\n")
    .map((line) => (STEERS_RECOVERY.test(line) ? `# disabled by strongroom restore --pitr: ${line}` : line))
    .join("\n");
  await rm(path.join(o.pgdata, "standby.signal"), { force: true });
  await writeFile(
    auto,
    `${existing}${existing.endsWith("\n") || existing === "" ? "" : "\n"}# strongroom restore --pitr: ${o.databaseId}/${base.baseId}\n${lines.join("\n")}\n`,
    { mode: 0o600 },
  );
  await writeFile(path.join(o.pgdata, "recovery.signal"), "", { mode: 0o600 });
}

export async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
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
  route: RecoveryPath,
  lastContiguous: string,
  owner: { uid: number; gid: number } | undefined,
): Promise<NonNullable<PitrRestoreResult["started"]>> {
  const start = o.start as NonNullable<PitrRestoreOptions["start"]>;
  const logFile = path.join(o.pgdata, "strongroom-recovery.log");
  await writeFile(logFile, "", { mode: 0o600 });
  if (owner) await chown(logFile, owner.uid, owner.gid);
  const binDir = await findServerBin(base.server.major);
  // Our log line prefix and messages, whatever the cluster's configuration says: the verdict is read from them.
  const ctl = spawn(
    path.join(binDir, "pg_ctl"),
    [
      "start",
      "-D",
      o.pgdata,
      "-l",
      logFile,
      "-W",
      "-o",
      `-c log_line_prefix='${RECOVERY_LOG_PREFIX}' -c lc_messages=C -c logging_collector=off -c log_destination=stderr`,
    ],
    {
      ...(owner ? { uid: owner.uid, gid: owner.gid } : {}),
      env: { PATH: process.env.PATH },
      stdio: "ignore",
    },
  );
  await new Promise((resolve) => ctl.once("close", resolve));
  const until = Date.now() + 60 * 60 * 1000;
  for (;;) {
    const verdict = recoveryVerdict(await readFile(logFile, "utf8"));
    if (verdict.state === "failed") {
      throw new RestoreFailedError(`the recovered server stopped: ${verdict.fatal}`, {
        hint: verdict.targetNotReached
          ? "the archive's WAL ends before the target: choose an earlier target (strongroom wal verify will show the window), or wait until the segment holding it is archived"
          : `see ${logFile}`,
      });
    }
    if (verdict.state === "promoted") {
      const { timeline, stopped } = verdict;
      if (o.target.kind !== "latest" && !stopped) {
        throw new RestoreFailedError("the server promoted without PostgreSQL's 'recovery stopping' line", {
          hint: `see ${logFile}`,
        });
      }
      // A new timeline past the one recovered: a number the archive's histories already used would collide.
      if (timeline <= route.timeline) throw new RestoreFailedError(`the server stayed on timeline ${timeline}`);
      // To the end of the archive: its replay must have reached the last archived segment, not stopped short.
      const bytes = base.server.walSegmentBytes;
      if (
        o.target.kind === "latest" &&
        (verdict.redoDone === undefined ||
          parseLsn(verdict.redoDone) / BigInt(bytes) < segmentNumber(lastContiguous, bytes))
      ) {
        throw new RestoreFailedError(
          `the recovery ended at ${verdict.redoDone ?? "an unknown point"}, before the end of the archive (${lastContiguous})`,
          { hint: `something in the cluster's configuration stopped it early; see ${logFile}` },
        );
      }
      o.log.info("recovered", { timeline, stopped, port: start.port });
      return { port: start.port, timeline, ...(stopped ? { stoppedAt: stopped } : {}) };
    }
    if (Date.now() > until) throw new RestoreFailedError(`recovery did not finish within an hour; see ${logFile}`);
    await sleep(250);
  }
}
