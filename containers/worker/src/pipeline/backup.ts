import { createHash } from "node:crypto";
import { availableParallelism } from "node:os";
import { type Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type pg from "pg";
import type { AuditRow } from "#core/audit/audit-chain.ts";
import { type AuditLog, auditedJob } from "#core/audit/audit-log.ts";
import { type BackupStats, STATS_FORMAT } from "#core/backup-stats.ts";
import { AbortedError, AlreadyExistsError, DumpFailedError, SourceMismatchError } from "#core/errors.ts";
import { backupPrefix, newBackupId, objectKey } from "#core/keys.ts";
import { readLedger } from "#core/ledger.ts";
import type { Logger } from "#core/log.ts";
import {
  MANIFEST_FORMAT,
  type Manifest,
  type ManifestObject,
  serializeManifest,
  ZSTD_CHECKSUMS,
} from "#core/manifest.ts";
import { assertX25519Recipient } from "#core/recipients.ts";
import { isCreatable, type ObjectStore } from "#core/store/object-store.ts";
import { storeSink } from "#core/store/store-sink.ts";
import { findPgBin, type PgBinDir, warmPgBins } from "../pg/binaries.ts";
import { connect, describeConn, libpqEnv, type PgConn } from "../pg/conn.ts";
import { readRequirements } from "../pg/requirements.ts";
import { captureRoles, type RoleSnapshot } from "../pg/roles.ts";
import { countRows, dumpedTables } from "../pg/row-counts.ts";
import { type ServerInfo, serverInfo } from "../pg/server-info.ts";
import { describeExit, spawnTool } from "../pg/tool-process.ts";
import type { OnPhase } from "../phases.ts";
import { ageEncrypt } from "../stages/age-stream.ts";
import { ArchiveStatsTap } from "../stages/archive-stats.ts";
import { sha256Tap } from "../stages/sha256-tap.ts";
import { zstdCompressFrames } from "../stages/zstd-frames.ts";
import { WORKER_VERSION } from "../version.ts";
import { AGE_CHAIN, objectEntry, putSealed } from "./sealed-object.ts";

export interface BackupOptions {
  conn: PgConn;
  store: ObjectStore;
  recipients: string[];
  /**
   * The id to commit under, chosen by the caller (a flow, which records it before the
   * task starts). @default a new id for the start time
   */
  backupId?: string;
  /** @default the database name */
  databaseId?: string;
  signal?: AbortSignal;
  log: Logger;
  /** Called with the count of pg_dump bytes read so far, and the estimate of their total. */
  onProgress?: (dumpBytes: number, estimatedBytes: number) => void;
  /** A phase starts: dumping, then committing (phases.ts). */
  onPhase?: OnPhase;
  now?: () => Date;
  env?: NodeJS.ProcessEnv;
  /**
   * Add to a series whose newest backup came from another source (the database moved).
   * @default false
   */
  allowSourceChange?: boolean;
  /** Where backup.start / backup.ok / backup.fail go (local mode: the store's own log). */
  audit?: (databaseId: string) => AuditLog;
  actor?: string;
}

/** One backup's identity, fixed before anything is written. */
interface BackupJob {
  databaseId: string;
  backupId: string;
  startedAt: Date;
  server: ServerInfo;
  /** The series' source: the cluster's system identifier (or address) and database. */
  source: string;
  /** The plain size of the series' newest dump, where the series was read. */
  previousDumpBytes?: number;
}

async function assertUnused(store: ObjectStore, databaseId: string, backupId: string): Promise<void> {
  const page = await store.list(`${backupPrefix(databaseId)}${backupId}/`, { pageSize: 1 });
  if (page.objects.length > 0) {
    throw new AlreadyExistsError(`backup ${databaseId}/${backupId} already has objects in the store`, {
      hint: "a backup id is used once; leave --backup-id out to get a new one",
    });
  }
}

/**
 * Backs one database up, in four steps:
 * 1. snapshot: a read-only transaction exports a snapshot; roles are read on it;
 * 2. stream: pg_dump on that snapshot → zstd frames → age → the store, taking row
 *    counts and the schema fingerprint from the archive as it passes;
 * 3. seal: the roles and stats, encrypted like the dump;
 * 4. commit: the manifest, put-if-absent, which is what makes it a backup.
 * Nothing of the dump touches local disk. Audited as backup.start, then ok or fail.
 */
export async function backup(options: BackupOptions): Promise<Manifest> {
  const { conn, store } = options;
  const now = options.now ?? (() => new Date());
  for (const r of options.recipients) assertX25519Recipient(r);
  // Fail on a bad recipient before touching the database.
  const encryptor = await ageEncrypt(options.recipients);
  // A file store's directory is made here, before the database is touched; reading
  // commands refuse a missing one.
  if (isCreatable(store)) await store.create();

  warmPgBins(["pg_dump"], options.env ?? process.env);
  const startedAt = now();
  // The connected database is the one the URL names, so the series is known before
  // connecting: a backup that cannot connect or log in is recorded as backup.fail too.
  const databaseId = options.databaseId ?? conn.database;
  const backupId = options.backupId ?? newBackupId(startedAt);
  // A given id must be new: the dump is written before the manifest's put-if-absent
  // could refuse, and would overwrite a committed backup's payload.
  if (options.backupId !== undefined) await assertUnused(store, databaseId, backupId);
  const { manifest } = await auditedJob<Committed>(
    {
      log: options.audit?.(databaseId),
      kind: "backup",
      job: { actor: options.actor ?? "cli", databaseId, backupId },
      now,
      start: { target: describeConn(conn) },
      ok: ({ manifest, manifestBytes }) => ({
        // Restore compares the manifest it reads with this: a plaintext manifest rewritten
        // in the bucket (to match a replaced dump) no longer hashes to what was committed.
        manifestSha256: createHash("sha256").update(manifestBytes).digest("hex"),
        server: manifest.server.version,
        dumpBytes: manifest.objects.find((o) => o.role === "dump")?.plainBytes,
        storedBytes: storedBytes(manifest),
        seconds: (now().getTime() - startedAt.getTime()) / 1000,
      }),
    },
    async (start) => {
      const client = await connect(conn, "strongroom-backup");
      try {
        const server = await serverInfo(client);
        const job: BackupJob = {
          databaseId,
          backupId,
          startedAt,
          server,
          source: server.systemIdentifier
            ? `system:${server.systemIdentifier}/${server.database}`
            : `address:${conn.host}:${conn.port}/${server.database}`,
        };
        if (!options.allowSourceChange) {
          const previous = await assertSameSource(
            store,
            job.databaseId,
            job.source,
            options.audit?.(databaseId),
            now(),
          );
          const previousDumpBytes = previous?.objects.find((o) => o.role === "dump")?.plainBytes;
          if (previousDumpBytes !== undefined) job.previousDumpBytes = previousDumpBytes;
        }
        const snapshot = await openSnapshot(client, options, job);
        const dumped = await streamDump(options, job, snapshot, encryptor);
        options.onPhase?.("committing");
        const stats = await takeStats(client, dumped.archive, options.log);
        await endSnapshot(client, options.log);
        const sealed = await seal(options, job, snapshot.roles, stats);
        const committed = await commit(
          options,
          job,
          snapshot.bin,
          [dumped.entry, ...sealed],
          start,
          now,
          stats.requirements?.databaseBytes,
        );
        options.log.info("backup committed", {
          backupId,
          databaseId,
          dumpBytes: dumped.entry.plainBytes,
          storedBytes: storedBytes(committed.manifest),
          tables: stats.tables.length,
        });
        return committed;
      } finally {
        await client.end().catch(() => undefined);
      }
    },
  );
  return manifest;
}

/** Everything the backup stored: dump, roles and stats (what the audit row and the log both report). */
const storedBytes = (manifest: Manifest) => manifest.objects.reduce((n, o) => n + o.storedBytes, 0);

/** A committed backup: its manifest, and the exact bytes stored (what backup.ok's digest covers). */
interface Committed {
  manifest: Manifest;
  manifestBytes: string;
}

interface Snapshot {
  id: string;
  bin: PgBinDir;
  roles: RoleSnapshot;
}

/** Step 1: the snapshot lives as long as this transaction; pg_dump and our fallback counts share it. */
async function openSnapshot(client: pg.Client, options: BackupOptions, job: BackupJob): Promise<Snapshot> {
  const { server } = job;
  const env = options.env ?? process.env;
  const bin = await findPgBin(["pg_dump"], server.major, `a PostgreSQL ${server.version} server`, env);
  options.log.info("backup started", {
    backupId: job.backupId,
    databaseId: job.databaseId,
    target: describeConn(options.conn),
    server: server.version,
    pgDump: bin.version,
    databaseBytes: server.databaseBytes,
  });
  await client.query("begin isolation level repeatable read read only");
  const id = (await client.query<{ s: string }>("select pg_export_snapshot() as s")).rows[0]?.s as string;
  return { id, bin, roles: await captureRoles(client) };
}

/**
 * Step 2: pg_dump → zstd → age → the store, one pipeline that owns every error: a
 * store failure stops pg_dump, a pg_dump failure aborts the upload.
 */
async function streamDump(
  options: BackupOptions,
  job: BackupJob,
  snapshot: Snapshot,
  encryptor: Awaited<ReturnType<typeof ageEncrypt>>,
): Promise<{ entry: ManifestObject; archive: ArchiveStatsTap }> {
  const { signal } = options;
  const dump = spawnTool(
    `${snapshot.bin.dir}/pg_dump`,
    ["-Fc", "-Z0", `--snapshot=${snapshot.id}`, "--no-password"],
    libpqEnv(options.conn, "strongroom-backup"),
    { stdoutWrites: DUMP_WRITE_BYTES, ...(signal ? { signal } : {}) },
  );
  const storedTap = sha256Tap();
  const archive = new ArchiveStatsTap();
  // The dump's size is known only at its end. The series' last dump is the nearer guess
  // (pg_dump writes no indexes, no bloat, TOAST uncompressed); the database's size the
  // only one for a first backup. Either is shown as an estimate, never as a count.
  const estimate =
    job.previousDumpBytes !== undefined
      ? { totalBytes: job.previousDumpBytes, estimatedFrom: "the previous backup" }
      : { totalBytes: job.server.databaseBytes, estimatedFrom: "the database's size" };
  options.onPhase?.("dumping", estimate);
  let dumpBytes = 0;
  const counted = (n: number) => {
    dumpBytes += n;
    options.onProgress?.(dumpBytes, estimate.totalBytes);
  };
  const key = objectKey(job.databaseId, job.backupId, "dump");
  try {
    await pipeline(
      dumpSource(dump, counted, signal),
      archive,
      zstdCompressFrames(COMPRESSION),
      encryptor,
      storedTap,
      storeSink(options.store, key, { expectedBytes: job.server.databaseBytes, ...(signal ? { signal } : {}) }),
      signal ? { signal } : {},
    );
  } catch (err) {
    if (signal?.aborted) throw new AbortedError("backup aborted; nothing was committed", { cause: err });
    throw err;
  }
  // The plain bytes are proven by each zstd frame's content checksum, not a SHA-256 of
  // the plain stream (0.56 core-s per GB on the critical path): manifest format 2.
  const chain = ["pg_dump -Fc -Z0", "zstd-frames/1 level 3 checksum", AGE_CHAIN];
  const plain = { bytes: dumpBytes, plainCheck: ZSTD_CHECKSUMS };
  return { entry: objectEntry("dump", key, chain, plain, storedTap.result(), encryptor.head), archive };
}

/** Row counts and the schema fingerprint from the archive; counted on the snapshot when it could not be read. */
async function takeStats(client: pg.Client, archive: ArchiveStatsTap, log: Logger): Promise<BackupStats> {
  const fromArchive = archive.result();
  if (!fromArchive)
    log.warn("could not read row counts from the archive; counting on the snapshot", {
      reason: archive.failure?.message,
    });
  // What verify needs to know before restoring (extensions, locales, size). A backup
  // without it still restores; verify then cannot say in advance what is missing.
  // A savepoint: a failed read must not abort the snapshot's transaction, which the
  // fallback row counts below still need.
  await client.query("savepoint strongroom_requirements");
  const requirements = await readRequirements(client).catch(async (err: unknown) => {
    await client.query("rollback to savepoint strongroom_requirements");
    log.warn("could not read what a restore of this database needs (extensions, locales)", {
      reason: (err as Error).message,
    });
    return undefined;
  });
  return {
    format: STATS_FORMAT,
    source: fromArchive ? "archive" : "count",
    schemaFingerprint: fromArchive?.schemaFingerprint ?? "",
    tables: fromArchive?.tables ?? (await countRows(client, await dumpedTables(client))),
    largeObjects: fromArchive?.largeObjects ?? 0,
    owners: fromArchive?.owners ?? [],
    ...(requirements ? { requirements } : {}),
  };
}

/**
 * Everything was read on the snapshot by now. A commit that fails (the session was cut
 * by something we could not switch off) loses nothing: the transaction was read only.
 */
async function endSnapshot(client: pg.Client, log: Logger): Promise<void> {
  await client
    .query("commit")
    .catch((err: unknown) =>
      log.warn("could not end the snapshot transaction; the dump is complete", { reason: (err as Error).message }),
    );
}

/** Step 3: the roles and stats, sealed to the same recipients as the dump. */
async function seal(
  options: BackupOptions,
  job: BackupJob,
  roles: RoleSnapshot,
  stats: BackupStats,
): Promise<ManifestObject[]> {
  const put = (role: "roles" | "stats", doc: unknown) =>
    putSealed(
      options.store,
      objectKey(job.databaseId, job.backupId, role),
      role,
      Buffer.from(JSON.stringify(doc)),
      options.recipients,
      options.signal,
    );
  // Two small puts at once: each file-store put waits for its fsyncs.
  const sealed = await Promise.all([put("roles", roles), put("stats", stats)]);
  if (options.signal?.aborted) throw new AbortedError("backup aborted; nothing was committed");
  return sealed;
}

/** Step 4, the commit point: until this put succeeds, the objects are garbage, not a backup. */
async function commit(
  options: BackupOptions,
  job: BackupJob,
  bin: PgBinDir,
  objects: ManifestObject[],
  start: AuditRow | undefined,
  now: () => Date,
  databaseBytes: number | undefined,
): Promise<Committed> {
  const { server } = job;
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    databaseId: job.databaseId,
    backupId: job.backupId,
    database: server.database,
    startedAt: job.startedAt.toISOString(),
    finishedAt: now().toISOString(),
    server: { version: server.version, versionNum: server.versionNum, systemIdentifier: server.systemIdentifier },
    source: job.source,
    ...(databaseBytes !== undefined ? { databaseBytes } : {}),
    pgDump: { version: bin.version },
    recipients: [...options.recipients],
    objects,
    worker: { version: WORKER_VERSION },
    ...(start ? { audit: { seq: start.seq, hash: start.hash } } : {}),
  };
  const manifestBytes = serializeManifest(manifest);
  await options.store.putIfAbsent(objectKey(job.databaseId, job.backupId, "manifest"), manifestBytes);
  return { manifest, manifestBytes };
}

/** pg_dump's stdout buffer: every write of it is a read and a chunk through the stages here. */
const DUMP_WRITE_BYTES = 1024 * 1024;

/**
 * pg_dump and its server backend need a core between them, so compression gets the
 * rest: on 2 cores one frame at a time measured faster than two (bench/backup.bench.ts).
 */
const COMPRESSION = { level: 3, maxInFlight: Math.max(1, availableParallelism() - 1) };

/**
 * pg_dump's stdout, which errors instead of ending when pg_dump fails: a dump cut
 * short by a crash or a kill must never complete an upload.
 */
function dumpSource(proc: ReturnType<typeof spawnTool>, onBytes: (n: number) => void, signal?: AbortSignal): Readable {
  const stdout = proc.child.stdout as Readable;
  let exited = false;
  void proc.exited.then(() => {
    exited = true;
  });
  // A plain Transform piped from stdout passes each read on synchronously, where an
  // async generator over stdout cost promises and one more stream hop per read.
  const source = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      onBytes(chunk.length);
      callback(null, chunk);
    },
    flush(callback) {
      proc.exited.then((exit) => {
        if (signal?.aborted) return callback(new AbortedError("backup aborted"));
        if (exit.code === 0) return callback();
        const stderr = proc.stderr();
        callback(
          new DumpFailedError(`pg_dump ${describeExit(exit)}: ${stderr || "no error output"}`, {
            ...(/permission denied/.test(stderr)
              ? {
                  hint: "the backup role must read everything: grant it pg_read_all_data (PostgreSQL 14+); large objects need their own GRANT SELECT ON LARGE OBJECT (see docs/connecting.md, least-privilege backup role)",
                }
              : {}),
          }),
        );
      }, callback);
    },
  });
  stdout.on("error", (err) => source.destroy(err));
  stdout.pipe(source);
  // Torn down by a failure elsewhere in the pipeline (the store, a stage): stop pg_dump
  // at once, so its snapshot and locks on the source are released now, not when some
  // later write of its finds the pipe closed.
  source.once("close", () => {
    stdout.unpipe(source);
    if (!exited) proc.child.kill("SIGTERM");
  });
  return source;
}

/**
 * Refuses to add a backup to a series whose newest backup came from another source:
 * retention counts a series as one database's history, and two servers feeding one
 * series would expire each other's backups. The newest backup is the newest committed
 * one in the ledger, so a planted or malformed manifest never stops the series' backups.
 * Without an audit log (`--audit none`: a flow's task, which reads no rows) nothing says
 * which manifest is ours, and any one a store writer planted would stop every backup; so
 * there is no check there: a deployment binds each database id to one secret anyway.
 * Returns the newest backup's manifest, where it was read (its dump's size is the next
 * one's estimate).
 */
async function assertSameSource(
  store: ObjectStore,
  databaseId: string,
  source: string,
  audit: AuditLog | undefined,
  now: Date,
): Promise<Manifest | undefined> {
  if (!audit) return undefined;
  const ledger = await readLedger(store, databaseId, { audit, now });
  const newest = ledger.backups.at(-1)?.manifest;
  const previous = newest?.source;
  if (previous === undefined || previous === source) return newest;
  throw new SourceMismatchError(
    `the backups of ${databaseId} in this store come from ${previous}, not from ${source}`,
    {
      hint: `pass --database-id to give this database its own series, or --allow-source-change if ${databaseId} really moved`,
    },
  );
}
