import { createWriteStream } from "node:fs";
import { mkdtemp, open, rm, statfs } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { Transform, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type pg from "pg";
import { auditedJob } from "#core/audit/audit-log.ts";
import { type BackupStats, parseStats } from "#core/backup-stats.ts";
import { count } from "#core/count.ts";
import {
  AbortedError,
  DatabaseConnectionError,
  IntegrityError,
  ManifestError,
  MissingRolesError,
  RestoreFailedError,
  RowCountMismatchError,
  StagingError,
  TargetNotEmptyError,
  UsageError,
} from "#core/errors.ts";
import { type Manifest, manifestObject } from "#core/manifest.ts";
import { findPgRestoreFor } from "../pg/binaries.ts";
import { connect, dbnameArg, describeConn, libpqEnv, type PgConn } from "../pg/conn.ts";
import { createDatabaseIfMissing } from "../pg/create-database.ts";
import { applyRoles, parseRoles, ROLES_FORMAT } from "../pg/roles.ts";
import { countRows } from "../pg/row-counts.ts";
import { serverInfo } from "../pg/server-info.ts";
import { type Exclusion, schemaEntries, withoutExtensions } from "../pg/toc.ts";
import { describeExit, spawnTool, type ToolProcess } from "../pg/tool-process.ts";
import { ArchiveStatsTap } from "../stages/archive-stats.ts";
import type { BackupJobOptions } from "./backup-job.ts";
import { type ChooseEntries, listedFile, listedStream } from "./restore-list.ts";
import { assertSchemaAbsent, schemaStats } from "./restore-schema.ts";
import { assertMatches, assertStoredObject, assertStoredSize, dumpStages, getSealed, naming } from "./sealed-object.ts";

export interface RestoreOptions extends BackupJobOptions {
  target: PgConn;
  /** > 1 stages the decrypted archive on local disk and runs pg_restore -j. @default 1 */
  jobs?: number;
  clean?: boolean;
  /** Create the target database when it does not exist. */
  create?: boolean;
  noOwner?: boolean;
  /**
   * pg_restore's --role: the dump's objects are created, and the code in it runs (CHECK
   * constraints, defaults, index expressions), as this role rather than the connecting one.
   */
  role?: string;
  /** Where --jobs stages the archive. @default os.tmpdir() */
  stagingDir?: string;
  /** Restore only this schema (a tenant), into a target that lacks it: restore-schema.ts. */
  schema?: string;
  /** A pass-through stage the plain archive flows through on its way to pg_restore (verify reads the TOC). */
  tap?: Transform;
  /** Compare row counts with the backup's afterwards. @default true (verify runs its own, fuller check) */
  rowCounts?: boolean;
  /**
   * Restore without these extensions and everything that depends on them (`withoutExtensions`
   * in pg/toc.ts): for an extension no self-run server has (RDS's aws_s3). A name the
   * backup lacks is ignored: one list serves every database.
   */
  skipExtensions?: readonly string[];
}

export interface RestoreResult {
  databaseId: string;
  backupId: string;
  target: string;
  tables: number;
  rows: number;
  dumpBytes: number;
  seconds: number;
  createdRoles: string[];
  /** With skipExtensions: what was left out (extensions the backup holds, and their dependents). */
  excluded?: Exclusion;
}

/** Relations, schemas, functions, extensions or large objects made by users. */
async function userObjectCount(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ n: string }>(`
    select (
      (select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_(toast|temp)')
      + (select count(*) from pg_namespace where nspname not in ('public', 'pg_catalog', 'information_schema')
        and nspname !~ '^pg_(toast|temp)')
      + (select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname not in ('pg_catalog', 'information_schema'))
      + (select count(*) from pg_extension where extname <> 'plpgsql')
      + (select count(*) from pg_largeobject_metadata))::text as n`);
  return Number(rows[0]?.n ?? 0);
}

async function checkRowCounts(client: pg.Client, stats: BackupStats): Promise<number> {
  const mismatches: string[] = [];
  let total = 0;
  const counted = await countRows(client, stats.tables);
  for (const [i, t] of stats.tables.entries()) {
    const got = counted[i]?.rows ?? 0;
    total += got;
    if (got !== t.rows) mismatches.push(`${t.schema}.${t.table}: ${got} rows, expected ${t.rows}`);
  }
  if (mismatches.length > 0) {
    throw new RowCountMismatchError(
      `restored row counts differ from the backup in ${count(mismatches.length, "table")}: ${mismatches.slice(0, 5).join("; ")}`,
      { hint: "the restore is incomplete; do not use this target" },
    );
  }
  return total;
}

function restoreArgs(options: RestoreOptions, database: string, single: boolean): string[] {
  const args = [dbnameArg(database), "--no-password", "--exit-on-error"];
  if (single) args.push("--single-transaction");
  if (options.clean) args.push("--clean", "--if-exists");
  if (options.noOwner) args.push("--no-owner", "--no-privileges");
  if (options.role !== undefined) args.push(`--role=${options.role}`);
  return args;
}

/**
 * Flags that cannot go together, refused before anything is resolved or read (the
 * command calls this first, so a usage error never waits on the store).
 */
export function assertRestoreFlags(options: Pick<RestoreOptions, "clean" | "jobs" | "schema">): void {
  if (options.clean && (options.jobs ?? 1) > 1) {
    // pg_restore -j cannot run in one transaction: a failure part-way would leave the
    // target's objects dropped and the backup's half restored.
    throw new UsageError("--clean cannot be combined with --jobs > 1", {
      hint: "restore with --jobs into a new, empty database (then swap names), or use --clean serially, where a failure rolls back",
    });
  }
  if (options.schema !== undefined && (options.clean || (options.jobs ?? 1) > 1)) {
    throw new UsageError("a single schema is restored serially into a database that lacks it: no --clean, no --jobs", {
      hint: "drop the schema on the target first if it is to be replaced",
    });
  }
}

/**
 * Restores a backup into `target`: verify and decrypt the stats and roles, recreate
 * roles, stream the dump (ranged reads → age → zstd → pg_restore), then compare row
 * counts with those captured at dump time.
 */
export async function restore(options: RestoreOptions): Promise<RestoreResult> {
  const { log, target } = options;
  assertRestoreFlags(options);
  const started = performance.now();
  const { manifest } = options.backup;
  log.info("restoring backup", {
    backupId: manifest.backupId,
    databaseId: manifest.databaseId,
    target: describeConn(target),
  });
  return auditedJob(
    {
      log: options.audit,
      kind: "restore",
      job: { actor: options.actor ?? "cli", databaseId: manifest.databaseId, backupId: manifest.backupId },
      now: options.now ?? (() => new Date()),
      start: {
        target: describeConn(target),
        jobs: options.jobs ?? 1,
        manifestSha256: options.backup.sha256,
        ...(options.schema !== undefined ? { kind: "schema" } : {}),
      },
      ok: (result) => ({ target: result.target, tables: result.tables, rows: result.rows, seconds: result.seconds }),
    },
    () => restoreManifest(options, manifest, started),
  );
}

async function restoreManifest(options: RestoreOptions, manifest: Manifest, started: number): Promise<RestoreResult> {
  const { store, log, target } = options;
  const env = options.env ?? process.env;

  // Small objects first: a wrong identity or a tampered object fails before the target is touched.
  const statsEntry = manifestObject(manifest, "stats");
  const stats = parseStats((await getSealed(store, statsEntry, options.identities)).toString("utf8"), statsEntry.key);
  const rolesEntry = manifest.objects.find((o) => o.role === "roles");
  const roles = rolesEntry
    ? parseRoles((await getSealed(store, rolesEntry, options.identities)).toString("utf8"))
    : undefined;
  if (rolesEntry && !roles) {
    throw new ManifestError(`${rolesEntry.key} is not a ${ROLES_FORMAT} document`, {
      hint: "the backup is damaged or was written by an unknown tool; restore another one, or pass --no-owner",
    });
  }

  if (options.create) await createDatabaseIfMissing(target, options.log);
  const client = await connect(target, "strongroom-restore").catch((err: unknown) => {
    throw missingTargetHint(err, target.database);
  });
  try {
    const server = await serverInfo(client);
    const bin = await findPgRestoreFor(server, manifest.pgDump.version, env);
    if (options.schema !== undefined) {
      await assertSchemaAbsent(client, options.schema, target.database);
    } else if (!options.clean) {
      const n = await userObjectCount(client);
      if (n > 0) {
        throw new TargetNotEmptyError(`target database ${target.database} already holds ${n} user objects`, {
          hint: "restore into a new, empty database, or pass --clean to drop the backup's objects first",
        });
      }
    }
    if (!roles) {
      log.warn(
        "this backup's roles were saved as pg_dumpall text by strongroom < 0.2, which is never replayed (it is not safe to); create missing roles yourself or pass --no-owner",
      );
    }
    const applied = roles
      ? await applyRoles(client, roles, { targetDatabase: target.database, serverMajor: server.major, log })
      : { created: [], notCreated: [] };
    const have = new Set((await client.query<{ r: string }>("select rolname as r from pg_roles")).rows.map((r) => r.r));
    const missing = stats.owners.filter((o) => !have.has(o));
    if (missing.length > 0 && !options.noOwner) {
      throw new MissingRolesError(
        `roles that own objects in the backup are missing in the target cluster and ${target.user} cannot create them: ${missing.join(", ")}`,
        {
          hint: `create them first, or pass --no-owner to make ${target.user} own everything (grants are skipped too)`,
        },
      );
    }

    let excluded: Exclusion | undefined;
    const skip = options.skipExtensions ?? [];
    const config = new Map((stats.requirements?.extensions ?? []).map((e) => [e.name, e.config ?? []]));
    const choose: ChooseEntries | undefined =
      options.schema === undefined && skip.length === 0
        ? undefined
        : (entries) => {
            const chosen = options.schema === undefined ? entries : schemaEntries(entries, options.schema);
            if (skip.length === 0) return chosen;
            excluded = withoutExtensions(chosen, skip, config);
            return excluded.kept;
          };
    const staged = (options.jobs ?? 1) > 1;
    const dumpEntry = manifestObject(manifest, "dump");
    await assertStoredSize(store, dumpEntry);
    // Staged, pg_restore starts only once the whole archive is on disk and proven.
    if (!staged && (dumpEntry.storedHeadSha256 === undefined || choose !== undefined)) {
      // pg_restore commits once it has processed its last TOC entry, which can come before
      // the end of its input (a selective restore; or a replaced archive padded to the
      // committed size), and the SQL in a TOC entry can commit by itself: the held-back
      // last chunk cannot stop either. A dump whose age header the manifest pins releases
      // only chunks that authenticate under the committed key; an older one is proven
      // whole first (read and hashed, nothing decrypted). So is every dump a selective
      // restore reads, so that damage past the schema's last block restores nothing
      // (the pinned header keeps the second read to the committed bytes).
      options.onPhase?.("downloading", { totalBytes: dumpEntry.storedBytes });
      await assertStoredObject(store, dumpEntry, options.signal, options.onProgress);
    }
    const dumpBytes = await (staged
      ? restoreStaged(options, manifest, bin.dir, options.jobs ?? 1, choose)
      : restoreStreaming(options, manifest, bin.dir, choose));
    let counted = options.schema === undefined ? stats : schemaStats(stats, options.schema);
    if (excluded) counted = withoutTables(counted, excluded);
    if (options.rowCounts !== false) options.onPhase?.("counting rows");
    const rows = options.rowCounts === false ? 0 : await checkRowCounts(client, counted);
    const result: RestoreResult = {
      databaseId: manifest.databaseId,
      backupId: manifest.backupId,
      target: describeConn(target),
      tables: counted.tables.length,
      rows,
      dumpBytes,
      seconds: (performance.now() - started) / 1000,
      createdRoles: applied.created,
      ...(excluded ? { excluded } : {}),
    };
    const logged = {
      ...result,
      ...(excluded ? { excluded: { extensions: excluded.extensions, entries: excluded.entries.length } } : {}),
    };
    if (options.rowCounts === false) {
      const { rows: _notCounted, ...rest } = logged;
      log.info("restore done", rest);
    } else log.info("restore verified", logged);
    return result;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * The decrypting, decompressing, verifying stream from the store into `sink`. The
 * stored bytes are checked against the manifest's SHA-256; the plain bytes only by
 * count: age already authenticates every chunk, and hashing 1 GB of plain dump again
 * would cost about half a core-second for no added assurance.
 *
 * The last plain chunk is held back until the whole stored object has been hashed and
 * found to be the one the manifest committed. A replaced dump is still a valid age
 * file (the recipient is public), so nothing else would stop it. Held back, it never
 * reaches the end of its input: pg_restore, in one transaction, never commits it.
 */
async function fetchDump(
  options: RestoreOptions,
  manifest: Manifest,
  sink: Writable,
  ...more: Array<Transform | undefined>
): Promise<number> {
  const entry = manifestObject(manifest, "dump");
  const dump = dumpStages(options.store, entry, options.identities, {
    signal: options.signal,
    log: options.log,
    framesInFlight: 1,
  });
  let plainBytes = 0;
  let held: Buffer | undefined;
  const holdBack = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      plainBytes += chunk.length;
      options.onProgress?.(plainBytes, entry.plainBytes);
      const previous = held;
      held = chunk;
      callback(null, previous);
    },
    flush(callback) {
      try {
        assertMatches(entry, dump.stored.result());
        if (plainBytes !== entry.plainBytes) {
          throw new IntegrityError(
            `${entry.key} decrypted to ${plainBytes} bytes; its manifest says ${entry.plainBytes}`,
          );
        }
      } catch (err) {
        callback(err as Error);
        return;
      }
      callback(null, held);
    },
  });
  // Taps join the plain path only when asked for: each stage is a hop for every chunk.
  const taps = [options.tap, ...more].filter((t): t is Transform => t !== undefined);
  await naming(entry, async () =>
    pipeline(
      [dump.read, dump.stored, dump.decrypt, dump.decompress, ...taps, holdBack, sink],
      options.signal ? { signal: options.signal } : {},
    ),
  );
  return entry.plainBytes;
}

async function restoreStreaming(
  options: RestoreOptions,
  manifest: Manifest,
  binDir: string,
  choose: ChooseEntries | undefined,
): Promise<number> {
  let proc: ToolProcess | undefined;
  const start = (extra: string[]) => {
    proc = spawnTool(
      `${binDir}/pg_restore`,
      [...restoreArgs(options, options.target.database, true), ...extra],
      libpqEnv(options.target, "strongroom-restore"),
      { stdin: "pipe", stdout: "ignore", ...(options.signal ? { signal: options.signal } : {}) },
    );
    return proc;
  };
  let sink: Writable;
  let select: Transform | undefined;
  let cleanup: (() => Promise<void>) | undefined;
  if (choose === undefined) {
    sink = start([]).child.stdin as Writable;
  } else {
    // pg_restore starts once the TOC has been read and the chosen entries listed.
    ({ select, sink, cleanup } = await listedStream(choose, start, () => proc));
  }
  // The list file stays until pg_restore has exited: it opens it when it starts, which
  // can be after the last byte was piped to it.
  try {
    let fetched: number;
    try {
      options.onPhase?.("restoring data", { totalBytes: manifestObject(manifest, "dump").plainBytes });
      fetched = await fetchDump(options, manifest, sink, select);
    } catch (err) {
      const running = proc as ToolProcess | undefined;
      if (!running) throw err;
      running.child.kill("SIGTERM");
      const exit = await running.exited;
      if (options.signal?.aborted) throw new AbortedError("restore aborted", { cause: err });
      // pg_restore dying first shows up here as EPIPE; its own message is the useful one.
      if (exit.code !== 0 && (err as { code?: string }).code === "EPIPE") {
        throw new RestoreFailedError(`pg_restore ${describeExit(exit)}: ${running.stderr()}`, { cause: err });
      }
      throw err;
    }
    const done = proc as ToolProcess | undefined;
    if (!done) throw new RestoreFailedError("pg_restore never started: the archive has no table of contents");
    // pg_restore has taken its last input byte. Past it, only post-data is left: an archive
    // written to a pipe holds its data blocks after the TOC, in TOC order, and pg_restore
    // restores one entry at a time in that order, so it has read every block by the time it
    // reaches the first index; post-data (indexes, constraints, triggers, materialized
    // views) reads nothing more. The end of the input marks the phase in every PostgreSQL
    // version and language; pg_restore --verbose's "creating INDEX" lines would not (they
    // are translated and reworded between versions), and they would crowd out the stderr
    // tail that a failure's message quotes.
    options.onPhase?.("building indexes");
    const exit = await done.exited;
    if (exit.code !== 0) throw new RestoreFailedError(`pg_restore ${describeExit(exit)}: ${done.stderr()}`);
    return fetched;
  } finally {
    await cleanup?.();
  }
}

/**
 * pg_restore -j cannot read stdin, so the decrypted archive is staged in a private
 * (0700) temp dir, removed afterwards whatever happens.
 */
async function restoreStaged(
  options: RestoreOptions,
  manifest: Manifest,
  binDir: string,
  jobs: number,
  choose: ChooseEntries | undefined,
): Promise<number> {
  const base = options.stagingDir ?? tmpdir();
  const need = manifestObject(manifest, "dump").plainBytes;
  const fsStats = await statfs(base);
  if (fsStats.bavail * fsStats.bsize < need) {
    throw new StagingError(`not enough space in ${base} to stage the ${need} byte archive for --jobs`, {
      hint: "free space there, set --staging-dir (STRONGROOM_STAGING_DIR) elsewhere, or restore serially without --jobs",
    });
  }
  const dir = await mkdtemp(path.join(base, "strongroom-restore-"));
  const list = choose ? await listedFile(choose) : undefined;
  // One walk of the archive serves both: the list's choice and the data offsets.
  const offsets = list?.select ?? new ArchiveStatsTap();
  try {
    const file = path.join(dir, "dump.pgc");
    try {
      options.onPhase?.("downloading", { totalBytes: need });
      await fetchDump(options, manifest, createWriteStream(file, { mode: 0o600 }), offsets);
    } catch (err) {
      if ((err as { code?: string }).code === "ENOSPC") {
        throw new StagingError(`staging dir ${base} filled up while staging the archive`, {
          cause: err,
          hint: "free space there, or set --staging-dir elsewhere",
        });
      }
      throw err;
    }
    await giveDataOffsets(file, offsets, options);
    // pg_restore -j builds a table's indexes as soon as its rows are in, while other
    // tables still load: one phase, not two. (Running --section=data, then post-data,
    // would name them apart at the cost of that overlap.)
    options.onPhase?.("restoring data and building indexes");
    const proc = spawnTool(
      `${binDir}/pg_restore`,
      [
        ...restoreArgs(options, options.target.database, false),
        `--jobs=${jobs}`,
        ...((await list?.args()) ?? []),
        file,
      ],
      libpqEnv(options.target, "strongroom-restore"),
      { stdout: "ignore", ...(options.signal ? { signal: options.signal } : {}) },
    );
    const exit = await proc.exited;
    if (options.signal?.aborted) throw new AbortedError("restore aborted");
    if (exit.code !== 0) throw new RestoreFailedError(`pg_restore ${describeExit(exit)}: ${proc.stderr()}`);
    return need;
  } finally {
    await rm(dir, { recursive: true, force: true });
    await list?.cleanup();
  }
}

/**
 * The staged archive's TOC gets the data offsets pg_dump could not write to its pipe
 * (ArchiveStatsTap.dataOffsets), so pg_restore -j seeks to each table's rows instead of
 * reading the archive from its start for each one. Only the offset fields change, to
 * where this same walk of these bytes found each block; an archive it could not read
 * is staged as it came, which pg_restore restores as before, only slower.
 */
async function giveDataOffsets(file: string, offsets: ArchiveStatsTap, options: RestoreOptions): Promise<void> {
  const patches = offsets.dataOffsets();
  if (!patches) {
    options.log.debug("the staged archive keeps its TOC as written", { reason: offsets.failure?.message });
    return;
  }
  const handle = await open(file, "r+");
  try {
    for (const p of patches) await handle.write(p.bytes, 0, p.bytes.length, p.at);
  } finally {
    await handle.close();
  }
}

/** The backup's tables less those a restore left out (their definitions or their rows). */
export function withoutTables(stats: BackupStats, excluded: Exclusion): BackupStats {
  const out = new Set(
    excluded.entries
      .filter((e) => e.desc === "TABLE" || e.desc === "TABLE DATA")
      .map((e) => `${e.namespace}\0${e.tag}`),
  );
  return { ...stats, tables: stats.tables.filter((t) => !out.has(`${t.schema}\0${t.table}`)) };
}

/**
 * A restore's target that does not exist is the common first mistake: say how to make it
 * (createdb, with the name quoted for a shell where it needs it), or that --create does.
 */
function missingTargetHint(err: unknown, database: string): unknown {
  const code = (err as { cause?: { code?: string } }).cause?.code;
  if (!(err instanceof DatabaseConnectionError) || code !== "3D000") return err;
  const shell = /^[A-Za-z0-9_.-]+$/.test(database) ? database : `'${database.replaceAll("'", "'\\''")}'`;
  return new DatabaseConnectionError(err.message, {
    cause: err.cause,
    hint: `create it (createdb ${shell}) or pass --create`,
  });
}
