import { type ChildProcess, type SpawnOptions, spawn } from "node:child_process";
import { randomInt } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { availableParallelism, tmpdir, totalmem } from "node:os";
import * as path from "node:path";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { type AuditLog, auditedJob } from "#core/audit/audit-log.ts";
import { AbortedError, IntegrityError, isStrongroomError } from "#core/errors.ts";
import type { Logger } from "#core/log.ts";
import { readArchive, type recoveryPath, timelinesPastPath } from "#core/pitr/archive-index.ts";
import type { BaseManifest } from "#core/pitr/base-manifest.ts";
import { committedBasesIn, trustedBaseReading } from "#core/pitr/bases.ts";
import { formatLsn, parseLsn, segmentName } from "#core/pitr/lsn.ts";
import {
  PITR_VERIFICATION_FORMAT,
  type PitrCheckName,
  type PitrCheckResult,
  type PitrVerification,
  pitrVerificationKeys,
  summarizePitr,
} from "#core/pitr/pitr-verification.ts";
import { RECOVERY_LOG_PREFIX, type RecoveryVerdict, recoveryVerdict } from "#core/pitr/recovery-log.ts";
import { segmentNumber, timelineForSegment, timelineHex } from "#core/pitr/timelines.ts";
import type { ObjectStore } from "#core/store/object-store.ts";
import type { VerificationOutcome } from "#core/verification.ts";
import { connect, type PgConn } from "../pg/conn.ts";
import { findServerBin, isolatedUser, serverEnv } from "../pg/scratch-cluster.ts";
import { amcheckCheck, userSqlCheck } from "../pg/verify-checks.ts";
import type { OnPhase } from "../phases.ts";
import { ageEncrypt } from "../stages/age-stream.ts";
import { WORKER_VERSION } from "../version.ts";
import { chooseBase, chownTree, type RecoveryTarget, refuseMissingHistory, unpack, walWindow } from "./pitr-restore.ts";
import { fetchWal } from "./wal-archive.ts";

export interface PitrVerifyOptions {
  store: ObjectStore;
  databaseId: string;
  identities: readonly string[];
  signers: ReadonlySet<string>;
  /** A time or an LSN to recover to; by default a random point in the window. */
  target?: Extract<RecoveryTarget, { kind: "time" | "lsn" }>;
  /** The random point lies in WAL archived this recently (and after the base). @default 24 h */
  randomWithinMs?: number;
  /** The base backup to recover; by default the newest on the newest timeline's path (before a given target). */
  baseId?: string;
  /**
   * The SHA-256 of the base's manifest as a plan resolved it (VerifyFlow): a manifest with
   * other bytes is refused before anything is read, as logical verify refuses one.
   */
  manifestSha256?: string;
  /** `--checks FILE`, run in `database` as a read-only role. */
  checks?: { file: string; text: string; database: string };
  /** Where the scratch cluster's directory goes. @default os.tmpdir() */
  scratchDir?: string;
  /** Leave the recovered cluster running, and its directory, for inspection. */
  keep?: boolean;
  audit: AuditLog | undefined;
  actor?: string;
  log: Logger;
  signal?: AbortSignal;
  onPhase?: OnPhase;
  now?: () => Date;
}

export interface PitrVerifyResult extends PitrVerification {
  stored: { full: string; summary: string };
  /** With --keep: where the recovered cluster runs. */
  kept?: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * `strongroom verify --pitr`: proves that a base backup and the WAL archived after it
 * recover to a point in time, by recovering them. The WAL is fetched and checked
 * against its signatures by this process, into a directory the scratch server copies
 * from (restore_command = cp): the server never holds the age identity or the store's
 * credentials, and runs as another OS user with an environment of its own, so code in
 * the recovered databases reaches neither. PostgreSQL's own log must say it stopped at
 * the point and promoted; then amcheck runs over every database, and the user's checks.
 * The result is stored beside the base and audited as verify.* rows naming its manifest.
 */
export async function verifyPitr(o: PitrVerifyOptions): Promise<PitrVerifyResult> {
  const now = o.now ?? (() => new Date());
  const at = now();
  // Signed by the host, or committed by the audit log, or pinned by a plan that resolved it there.
  const committed = await committedBasesIn(o.audit, o.databaseId);
  if (o.baseId !== undefined && o.manifestSha256 !== undefined && !committed.has(o.baseId)) {
    committed.set(o.baseId, o.manifestSha256);
  }
  const { trusted: bases, sha256 } = await trustedBaseReading(o.store, o.databaseId, o.signers, o.log, committed);
  // Every object's signed header: a planted object must not fill a gap in the window it proves.
  const archive = await readArchive({ ...o, headers: "all" });
  const { base, path: route } = chooseBase(bases, archive, {
    databaseId: o.databaseId,
    ...(o.baseId !== undefined ? { baseId: o.baseId } : {}),
    target: o.target ?? { kind: "latest" },
  });
  // The manifest's bytes as read and trusted above: resolved once.
  const manifestSha256 = sha256.get(base.baseId) as string;
  if (o.manifestSha256 !== undefined && o.manifestSha256 !== manifestSha256) {
    throw new IntegrityError(
      `the manifest of base backup ${o.databaseId}/${base.baseId} is not the one the verification was planned for`,
      { hint: "its bytes changed after the plan read them (a replaced manifest, or another signed one): plan again" },
    );
  }
  return auditedJob(
    {
      log: o.audit,
      kind: "verify",
      job: { actor: o.actor ?? "cli", databaseId: o.databaseId, backupId: base.baseId },
      now,
      start: { kind: "pitr", manifestSha256, ...(o.target ? { target: o.target.kind } : { target: "random" }) },
      ok: (r) => ({
        kind: "pitr",
        manifestSha256,
        point: r.point.kind,
        rtoSeconds: r.rto.baseSeconds + r.rto.walSeconds + r.rto.replaySeconds,
        walBytes: r.wal.bytes,
      }),
      inconclusive: (r) =>
        r.outcome === "inconclusive"
          ? { kind: "pitr", manifestSha256, missing: [`server ${base.server.major}`] }
          : undefined,
      failed: (r) =>
        r.ok
          ? undefined
          : {
              kind: "pitr",
              manifestSha256,
              error: "VerificationFailedError",
              failedChecks: r.checks.filter((c) => !c.ok).map((c) => c.name),
            },
    },
    () => recoverAndCheck(o, base, manifestSha256, route, archive, at),
  );
}

async function recoverAndCheck(
  o: PitrVerifyOptions,
  base: BaseManifest,
  manifestSha256: string,
  route: ReturnType<typeof recoveryPath>,
  archive: Awaited<ReturnType<typeof readArchive>>,
  at: Date,
): Promise<PitrVerifyResult> {
  const started = performance.now();
  const checks: PitrCheckResult[] = [];
  const timelines = route.spans
    .slice(route.spans.findIndex((s) => s.timeline === base.timeline))
    .map((s) => s.timeline);
  const result: Omit<PitrVerification, "outcome" | "ok" | "checks"> = {
    format: PITR_VERIFICATION_FORMAT,
    kind: "pitr",
    databaseId: o.databaseId,
    baseId: base.baseId,
    manifestSha256,
    at: at.toISOString(),
    point: o.target
      ? { kind: o.target.kind, value: o.target.value, chosen: "given" }
      : { kind: "latest", chosen: "end" },
    timelines,
    wal: { first: base.walSegments.first, last: base.walSegments.first, files: 0, bytes: 0 },
    rto: {
      baseSeconds: 0,
      walSeconds: 0,
      replaySeconds: 0,
      checksSeconds: 0,
      totalSeconds: 0,
      baseBytes: 0,
      walBytes: 0,
    },
    worker: { version: WORKER_VERSION, cores: availableParallelism(), memoryMiB: Math.round(totalmem() / 2 ** 20) },
  };
  const skipRest = (why: string, from: PitrCheckName[]) => {
    for (const name of from) checks.push({ name, ok: false, skipped: true, detail: `not run: ${why}`, seconds: 0 });
  };
  const rest: PitrCheckName[] = ["base", "recovery", "amcheck", ...(o.checks ? (["user-sql"] as const) : [])];
  const finish = async (outcome: VerificationOutcome, extra: Partial<PitrVerification> = {}, kept?: string) => {
    const verification: PitrVerification = {
      ...result,
      ...extra,
      ok: outcome === "verified",
      outcome,
      checks,
      rto: { ...result.rto, ...extra.rto, totalSeconds: (performance.now() - started) / 1000 },
    };
    const stored = await storeResult(o, base, at, verification);
    o.log.info(outcome === "verified" ? "point-in-time recovery verified" : `point-in-time recovery ${outcome}`, {
      databaseId: o.databaseId,
      baseId: base.baseId,
      failed: checks.filter((c) => !c.ok).map((c) => c.name),
    });
    return { ...verification, stored, ...(kept ? { kept } : {}) };
  };

  // 1. The WAL: continuous from the base along the path, a point chosen in it, and every file fetched and checked.
  o.onPhase?.("checking the archived WAL");
  const t0 = performance.now();
  let window: ReturnType<typeof walWindow>;
  const ours = (name: string) => archive.trusted.get(name)?.systemIdentifier === base.server.systemIdentifier;
  try {
    window = walWindow(archive, base, route, ours);
    // WAL on a later timeline with its history gone: the window proven here would not be the latest one.
    refuseMissingHistory(timelinesPastPath(archive.trusted.keys(), ours, route), route);
  } catch (err) {
    if (!isStrongroomError(err)) throw err;
    checks.push({ name: "wal", ok: false, detail: err.message, seconds: (performance.now() - t0) / 1000 });
    skipRest("the archived WAL cannot be recovered as it stands", rest);
    return finish("failed");
  }
  // When each segment was archived, as its host signed it (not the store's time, which a writer can refresh).
  const pushedAt = new Map([...archive.trusted].map(([name, record]) => [name, new Date(record.pushedAt)]));
  const point = o.target ?? randomPoint(base, route, window.lastContiguous, pushedAt, o);
  result.point = o.target
    ? result.point
    : point.kind === "lsn"
      ? { kind: "lsn", value: point.value, chosen: "random" }
      : { kind: "latest", chosen: "end" };
  const needed = segmentsToReplay(base, route, window.lastContiguous, point);
  const scratch = await mkdtemp(path.join(o.scratchDir ?? tmpdir(), "strongroom-pitr-verify-"));
  // A user that owns nothing: the databases' code runs as it.
  const owner = await isolatedUser();
  if (!owner) {
    o.log.warn(
      "verify --pitr is not running as root: the recovered cluster's server runs as this user, and code in its databases can read what this user can (docs/pitr.md)",
    );
  }
  let server: RecoveredServer | undefined;
  let kept: string | undefined;
  try {
    const walDir = path.join(scratch, "wal");
    await mkdir(walDir, { mode: 0o700 });
    let bytes = 0;
    try {
      const histories = timelines.filter((t) => t > 1).map((t) => `${timelineHex(t)}.history`);
      // Four at a time: each is a GET, a decryption and a decompression, and PostgreSQL needs them all.
      const queue = [...histories, ...needed];
      const worker = async () => {
        for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
          if (o.signal?.aborted) throw new AbortedError("verify --pitr was interrupted");
          const got = await fetchWal(o.store, name, path.join(walDir, name), {
            databaseId: o.databaseId,
            identities: o.identities,
            signers: o.signers,
            systemIdentifier: base.server.systemIdentifier,
          }).catch((err: unknown) => {
            // The first failure decides: the other workers stop at the emptied queue.
            queue.length = 0;
            throw err;
          });
          bytes += got.plainBytes;
        }
      };
      const settled = await Promise.allSettled(Array.from({ length: 4 }, worker));
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) throw failed.reason;
    } catch (err) {
      if (o.signal?.aborted || !isStrongroomError(err)) throw err;
      checks.push({
        name: "wal",
        ok: false,
        detail: `${err.name}: ${err.message}`,
        seconds: (performance.now() - t0) / 1000,
      });
      skipRest("a WAL file it needs failed its checks", rest);
      return finish("failed");
    }
    const walSeconds = (performance.now() - t0) / 1000;
    result.wal = {
      first: needed[0] ?? base.walSegments.first,
      last: needed.at(-1) ?? base.walSegments.first,
      files: needed.length,
      bytes,
    };
    result.rto = { ...result.rto, walSeconds, walBytes: bytes };
    const gap = window.gaps[0];
    checks.push({
      name: "wal",
      ok: gap === undefined,
      detail:
        gap === undefined
          ? `${needed.length} segments (${needed[0]} to ${needed.at(-1)}) fetched, each signed and as its header says; continuous to ${window.lastContiguous}`
          : `the archive has a gap at ${gap}: recovery cannot pass it (continuous to ${window.lastContiguous})`,
      seconds: walSeconds,
    });
    if (gap !== undefined) {
      skipRest("the archived WAL has a gap", rest);
      return finish("failed");
    }

    // 2. The base, unpacked and checked against its signed manifest.
    o.onPhase?.("unpacking the base backup");
    const t1 = performance.now();
    const pgdata = path.join(scratch, "data");
    await mkdir(pgdata, { mode: 0o700 });
    try {
      await unpack({ store: o.store, identities: o.identities, pgdata }, base);
    } catch (err) {
      if (o.signal?.aborted || !isStrongroomError(err)) throw err;
      checks.push({
        name: "base",
        ok: false,
        detail: `${err.name}: ${err.message}`,
        seconds: (performance.now() - t1) / 1000,
      });
      skipRest("the base backup failed its checks", rest.slice(1));
      return finish("failed");
    }
    const baseSeconds = (performance.now() - t1) / 1000;
    result.rto = { ...result.rto, baseSeconds, baseBytes: base.object.plainBytes };
    checks.push({
      name: "base",
      ok: true,
      detail: `${base.object.plainBytes} bytes unpacked, as its signed manifest says`,
      seconds: baseSeconds,
    });

    // 3. The recovery, by PostgreSQL, to the point.
    let binDir: string;
    try {
      binDir = await findServerBin(base.server.major);
    } catch (err) {
      if (!isStrongroomError(err)) throw err;
      checks.push({ name: "recovery", ok: false, skipped: true, detail: `not run: ${err.message}`, seconds: 0 });
      skipRest("no server of the base's major", rest.slice(2));
      return finish("inconclusive");
    }
    const socketDir = path.join(scratch, "socket");
    const confDir = path.join(scratch, "conf");
    await mkdir(socketDir, { mode: 0o700 });
    await mkdir(confDir, { mode: 0o700 });
    // Our configuration, never the base's: its postgresql.conf may be elsewhere (Debian) or archive into production.
    await writeFile(
      path.join(confDir, "postgresql.conf"),
      `data_directory = ${quote(pgdata)}\nhba_file = ${quote(path.join(confDir, "pg_hba.conf"))}\nident_file = ${quote(path.join(confDir, "pg_ident.conf"))}\n`,
      { mode: 0o600 },
    );
    // Only a local socket in a directory nobody else may enter: no TCP, no password to hold.
    await writeFile(path.join(confDir, "pg_hba.conf"), "local all all trust\n", { mode: 0o600 });
    await writeFile(path.join(confDir, "pg_ident.conf"), "", { mode: 0o600 });
    // None of the base's own recovery configuration: its ALTER SYSTEM settings (recovery_target =
    // 'immediate', a recovery_end_command, a log prefix) would decide what is replayed and what the log says.
    for (const f of ["postgresql.auto.conf", "standby.signal", "recovery.signal"]) {
      await rm(path.join(pgdata, f), { force: true });
    }
    await writeFile(path.join(pgdata, "recovery.signal"), "", { mode: 0o600 });
    const logFile = path.join(scratch, "recovery.log");
    await writeFile(logFile, "", { mode: 0o600 });
    if (owner) await chownTree(scratch, owner.uid, owner.gid);
    const settings = recoverySettings(point, route.timeline, walDir, socketDir);
    o.onPhase?.("recovering to the point");
    const t2 = performance.now();
    const out = openSync(logFile, "a");
    try {
      server = startServer(path.join(binDir, "postgres"), ["-D", confDir, ...settings.flatMap((s) => ["-c", s])], {
        ...(owner ? { uid: owner.uid, gid: owner.gid } : {}),
        // An environment built from nothing: no credentials, no identity, nothing of ours.
        env: serverEnv(),
        stdio: ["ignore", out, out],
        // --keep leaves it running after this process ends.
        detached: o.keep === true,
      });
    } finally {
      closeSync(out);
    }
    const verdict = await awaitVerdict(logFile, server, o.signal);
    const replaySeconds = (performance.now() - t2) / 1000;
    result.rto = { ...result.rto, replaySeconds };
    result.scratch = { serverVersion: base.server.version, isolation: owner ? "separate-user" : "same-user" };
    const size = BigInt(base.server.walSegmentBytes);
    const lastStaged = needed.at(-1) ?? base.walSegments.last;
    const reached = reachedPoint(verdict, point, segmentNumber(lastStaged, base.server.walSegmentBytes) * size);
    if (verdict.state === "promoted") {
      result.reached = {
        timeline: verdict.timeline,
        ...(verdict.stopped !== undefined ? { stopped: verdict.stopped } : {}),
        ...(verdict.stoppedLsn !== undefined ? { lsn: verdict.stoppedLsn } : {}),
        ...(verdict.lastCommit !== undefined ? { lastCommit: verdict.lastCommit } : {}),
      };
    }
    checks.push({ name: "recovery", ok: reached.ok, detail: reached.detail, seconds: replaySeconds });
    if (!reached.ok) {
      skipRest("the recovery did not reach the point", rest.slice(2));
      return finish("failed");
    }

    // 4. The checks, on the promoted copy.
    const t3 = performance.now();
    const admin: PgConn = {
      host: socketDir,
      port: 5432,
      user: base.server.superuser ?? "postgres",
      password: undefined,
      database: "template1",
      sslmode: "disable",
      sslrootcert: undefined,
      sslcert: undefined,
      sslkey: undefined,
      options: undefined,
      passfile: "/dev/null",
    };
    o.onPhase?.("checks");
    checks.push(await timed("amcheck", () => amcheckEveryDatabase(admin, base.server.major)));
    const userChecks = o.checks;
    if (userChecks) {
      checks.push(
        await timed("user-sql", async () => {
          const target = { ...admin, database: userChecks.database };
          const client = await connect(target, "strongroom-verify");
          try {
            return await userSqlCheck(client, target, userChecks.file, userChecks.text, base.server.major);
          } finally {
            await client.end().catch(() => undefined);
          }
        }),
      );
    }
    result.rto = { ...result.rto, checksSeconds: (performance.now() - t3) / 1000 };
    if (o.keep) kept = `the recovered cluster in ${scratch}: psql -h ${socketDir} -U ${admin.user} template1`;
    return await finish(checks.every((c) => c.ok) ? "verified" : "failed", {}, kept);
  } finally {
    if (!kept) {
      await server?.stop();
      await removeScratch(scratch, owner).catch((err: unknown) =>
        o.log.warn("could not remove the scratch cluster", { dir: scratch, error: String(err) }),
      );
    }
  }
}

/**
 * The scratch tree belongs to the user the recovered server ran as, whose code may still
 * be changing it (a symlink where a file was): removed as that user, never by root
 * following what it finds there.
 */
async function removeScratch(dir: string, owner: { uid: number; gid: number } | undefined): Promise<void> {
  if (!owner) {
    await rm(dir, { recursive: true, force: true });
    return;
  }
  await new Promise<void>((resolve, reject) => {
    const child = spawn("rm", ["-rf", "--", dir], {
      uid: owner.uid,
      gid: owner.gid,
      stdio: "ignore",
      env: serverEnv(),
    });
    child.once("error", reject);
    child.once("close", (code) => (code === 0 ? resolve() : reject(new Error(`rm -rf exited ${code}`))));
  });
}

interface RecoveredServer {
  child: ChildProcess;
  stop: () => Promise<void>;
}

/** The recovered cluster's postmaster: stopped by PID (a fast shutdown, then a kill), or left running when detached. */
function startServer(command: string, args: string[], options: SpawnOptions): RecoveredServer {
  const child = spawn(command, args, options);
  if (options.detached) child.unref();
  return {
    child,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGINT");
      if (await Promise.race([exited.then(() => false), sleep(15_000, true, { ref: false })])) {
        child.kill("SIGKILL");
        await exited;
      }
    },
  };
}

const quote = (v: string) => `'${v.replaceAll("'", "''")}'`;
const shellQuote = (v: string) => `'${v.replaceAll("'", `'\\''`)}'`;

/**
 * Given on the command line, which outranks the base's postgresql.auto.conf: whatever
 * it says (an archive_command into production, a preload library the verifier lacks, a
 * log collector, another language for messages), the copy recovers here, quietly.
 */
function recoverySettings(point: RecoveryTarget, timeline: number, walDir: string, socketDir: string): string[] {
  return [
    `restore_command=cp ${shellQuote(walDir.replaceAll("%", "%%"))}/%f %p`,
    `recovery_target_timeline=${timeline}`,
    "recovery_target_action=promote",
    // Ours alone: the base's postgresql.auto.conf is gone, and PostgreSQL refuses a second
    // target, even an empty one, once one is set ("multiple recovery targets specified").
    ...(point.kind === "lsn" || point.kind === "time" ? [`recovery_target_${point.kind}=${point.value}`] : []),
    "recovery_target_inclusive=on",
    "recovery_min_apply_delay=0",
    "recovery_end_command=",
    "archive_cleanup_command=",
    "primary_conninfo=",
    "primary_slot_name=",
    "ignore_invalid_pages=off",
    `log_line_prefix=${RECOVERY_LOG_PREFIX}`,
    "archive_mode=off",
    "listen_addresses=",
    // Double-quoted: the setting is a list, and a comma in the path would split it.
    `unix_socket_directories="${socketDir.replaceAll('"', '""')}"`,
    "port=5432",
    "shared_preload_libraries=",
    "ssl=off",
    "logging_collector=off",
    "log_destination=stderr",
    "log_min_messages=warning",
    "lc_messages=C",
    "fsync=off",
    "synchronous_commit=off",
    // No reads during recovery: and so no need for the primary's max_connections and the like (PostgreSQL
    // aborts a hot standby whose settings are below the primary's, and ours are not its).
    "hot_standby=off",
  ];
}

/**
 * A random LSN after the base's stop, in WAL archived within `randomWithinMs`, and before
 * the last archived segment's start (so a record at or after it is in the archive, and
 * PostgreSQL can stop there). The end of the archive when that leaves nothing.
 */
function randomPoint(
  base: BaseManifest,
  route: ReturnType<typeof recoveryPath>,
  lastContiguous: string,
  /** When each segment was archived (its signed pushedAt). */
  modified: ReadonlyMap<string, Date>,
  o: PitrVerifyOptions,
): RecoveryTarget {
  const bytes = BigInt(base.server.walSegmentBytes);
  const since = (o.now ?? (() => new Date()))().getTime() - (o.randomWithinMs ?? DAY_MS);
  const last = segmentNumber(lastContiguous, base.server.walSegmentBytes);
  let lower = parseLsn(base.stopLsn);
  // The oldest segment archived within the period, along the path: the point lies at or after its start
  // (none archived within it, an idle server: anywhere after the base).
  for (let s = segmentNumber(base.walSegments.first, base.server.walSegmentBytes); s <= last; s++) {
    const name = segmentName(
      timelineForSegment(route.spans, s, base.server.walSegmentBytes),
      s * bytes,
      base.server.walSegmentBytes,
    );
    if ((modified.get(name)?.getTime() ?? 0) >= since) {
      if (s * bytes > lower) lower = s * bytes;
      break;
    }
  }
  const upper = last * bytes;
  if (upper <= lower) return { kind: "latest" };
  const span = upper - lower;
  // randomInt takes at most 2^48 - 1: ample for a window (256 TiB of WAL).
  const offset = BigInt(randomInt(Number(span < 2n ** 48n - 1n ? span : 2n ** 48n - 1n)));
  return { kind: "lsn", value: formatLsn(lower + offset) };
}

/** The segments a recovery to `point` reads, from the base's first: through the one after the point's (where the record it stops at may lie). */
function segmentsToReplay(
  base: BaseManifest,
  route: ReturnType<typeof recoveryPath>,
  lastContiguous: string,
  point: RecoveryTarget,
): string[] {
  const size = base.server.walSegmentBytes;
  const first = segmentNumber(base.walSegments.first, size);
  const last = segmentNumber(lastContiguous, size);
  const end = point.kind === "lsn" ? minBig(parseLsn(point.value) / BigInt(size) + 1n, last) : last;
  const out: string[] = [];
  for (let s = first; s <= end; s++)
    out.push(segmentName(timelineForSegment(route.spans, s, size), s * BigInt(size), size));
  return out;
}

const minBig = (a: bigint, b: bigint) => (a < b ? a : b);

/** Waits for PostgreSQL's log to say how the recovery ended (or the server to die). */
async function awaitVerdict(
  logFile: string,
  server: RecoveredServer,
  signal: AbortSignal | undefined,
): Promise<RecoveryVerdict> {
  const until = Date.now() + 6 * 60 * 60 * 1000;
  for (;;) {
    const verdict = recoveryVerdict(await readFile(logFile, "utf8"));
    if (verdict.state !== "running") return verdict;
    if (server.child.exitCode !== null || server.child.signalCode !== null) {
      const tail = (await readFile(logFile, "utf8")).trim().split("\n").slice(-3).join(" / ");
      return { state: "failed", fatal: `the server exited before recovery ended: ${tail}`, targetNotReached: false };
    }
    if (signal?.aborted) throw new AbortedError("verify --pitr was interrupted");
    if (Date.now() > until)
      return { state: "failed", fatal: "recovery did not end within 6 hours", targetNotReached: false };
    await sleep(250);
  }
}

/** Whether PostgreSQL's log shows the recovery reached exactly the point: promoted, and stopped where asked. */
function reachedPoint(
  verdict: RecoveryVerdict,
  point: RecoveryTarget,
  /** The first byte of the last segment staged: a recovery to the end must replay into it. */
  endOfArchive: bigint,
): { ok: boolean; detail: string } {
  if (verdict.state !== "promoted") {
    const fatal = verdict.state === "failed" ? verdict.fatal : "no verdict";
    return { ok: false, detail: `PostgreSQL did not promote: ${fatal}` };
  }
  if (point.kind === "lsn") {
    const at = verdict.stoppedLsn;
    const ok = at !== undefined && parseLsn(at) >= parseLsn(point.value);
    return {
      ok,
      detail: ok
        ? `stopped at the first record at or after ${point.value} (${at}), promoted to timeline ${verdict.timeline}`
        : `PostgreSQL's log does not show it stopping at ${point.value} (${verdict.stopped ?? "no 'recovery stopping' line"})`,
    };
  }
  if (point.kind === "time") {
    const stopAt = verdict.stoppedCommitTime !== undefined ? pgTime(verdict.stoppedCommitTime) : Number.NaN;
    const lastAt = verdict.lastCommit !== undefined ? pgTime(verdict.lastCommit) : Number.NaN;
    const target = pgTime(point.value);
    // Stopped before the first commit after the time, with every commit before it replayed.
    // Both times must read as times: a NaN compares false either way and would pass.
    const ok =
      verdict.stopped !== undefined &&
      Number.isFinite(stopAt) &&
      stopAt >= target &&
      (verdict.lastCommit === undefined || (Number.isFinite(lastAt) && lastAt <= target));
    return {
      ok,
      detail: ok
        ? `${verdict.stopped}; last commit replayed ${verdict.lastCommit ?? "(none since the base)"}; promoted to timeline ${verdict.timeline}`
        : `PostgreSQL's log does not show it stopping at ${point.value} (${verdict.stopped ?? "no 'recovery stopping' line"})`,
    };
  }
  // The end of the archive: the replay must have reached its last segment, not stopped short of it.
  const reachedEnd = verdict.redoDone !== undefined && parseLsn(verdict.redoDone) >= endOfArchive;
  return reachedEnd
    ? {
        ok: true,
        detail: `replayed to the end of the archive (redo done at ${verdict.redoDone}); promoted to timeline ${verdict.timeline}`,
      }
    : {
        ok: false,
        detail: `the replay ended at ${verdict.redoDone ?? "an unknown point"}, before the archive's last segment (from ${formatLsn(endOfArchive)})`,
      };
}

/** A time as PostgreSQL prints it ('2026-12-03 12:33:59.816193+00'), in ms; NaN if it is none. */
function pgTime(text: string): number {
  return Date.parse(
    text
      .trim()
      .replace(" ", "T")
      .replace(/([+-]\d\d)$/, "$1:00"),
  );
}

/** amcheck in every database that takes connections (the cluster's own, template1 aside). */
async function amcheckEveryDatabase(admin: PgConn, major: number): Promise<{ ok: boolean; detail: string }> {
  const client = await connect(admin, "strongroom-verify");
  let names: string[];
  try {
    // Every database, one its owner closed to connections too (ALLOW_CONNECTIONS false would
    // take it out of the check): this is a scratch copy, and template0 alone stays as it is.
    const all = (
      await client.query<{ datname: string; datallowconn: boolean }>(
        "select datname, datallowconn from pg_catalog.pg_database where datname <> 'template0' order by datname",
      )
    ).rows;
    for (const db of all.filter((d) => !d.datallowconn)) {
      await client.query(`alter database ${client.escapeIdentifier(db.datname)} allow_connections true`);
    }
    names = all.map((r) => r.datname);
  } finally {
    await client.end().catch(() => undefined);
  }
  const problems: string[] = [];
  const good: string[] = [];
  for (const database of names) {
    const db = await connect({ ...admin, database }, "strongroom-verify");
    try {
      const outcome = await amcheckCheck(db, major);
      if (outcome.ok) good.push(database);
      else problems.push(`${JSON.stringify(database)}: ${outcome.detail}`);
    } finally {
      await db.end().catch(() => undefined);
    }
  }
  return problems.length === 0
    ? {
        ok: true,
        detail: `every index and table checked in ${names.length} databases (${names.map((n) => JSON.stringify(n)).join(", ")})`,
      }
    : { ok: false, detail: problems.join("; ") };
}

async function timed(
  name: PitrCheckName,
  work: () => Promise<{ ok: boolean; detail: string; skipped?: boolean }>,
): Promise<PitrCheckResult> {
  const t = performance.now();
  try {
    return { name, ...(await work()), seconds: (performance.now() - t) / 1000 };
  } catch (err) {
    return {
      name,
      ok: false,
      detail: `${(err as Error).name}: ${(err as Error).message}`,
      seconds: (performance.now() - t) / 1000,
    };
  }
}

/** The full result, encrypted to the base's recipients, then the plaintext summary. */
async function storeResult(
  o: PitrVerifyOptions,
  base: BaseManifest,
  at: Date,
  verification: PitrVerification,
): Promise<{ full: string; summary: string }> {
  const keys = pitrVerificationKeys(o.databaseId, base.baseId, at);
  const sealed: Buffer[] = [];
  await pipeline(
    Readable.from([Buffer.from(`${JSON.stringify(verification, null, 2)}\n`)]),
    await ageEncrypt(base.recipients),
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        sealed.push(chunk);
        callback();
      },
    }),
  );
  await o.store.putIfAbsent(keys.full, Buffer.concat(sealed));
  await o.store.putIfAbsent(keys.summary, `${JSON.stringify(summarizePitr(verification), null, 2)}\n`);
  return keys;
}
