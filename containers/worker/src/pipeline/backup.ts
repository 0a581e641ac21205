import { createHash } from "node:crypto";
import { availableParallelism } from "node:os";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type pg from "pg";
import { type AuditLog, auditRecorder, failureDetails } from "#core/audit/audit-log.ts";
import { listBackupRefs, readManifest } from "#core/backup-index.ts";
import { AbortedError, DumpFailedError, SourceMismatchError } from "#core/errors.ts";
import { newBackupId, objectKey } from "#core/keys.ts";
import type { Logger } from "#core/log.ts";
import { MANIFEST_FORMAT, type Manifest, serializeManifest } from "#core/manifest.ts";
import type { ObjectStore } from "#core/store/object-store.ts";
import { storeSink } from "#core/store/store-sink.ts";
import { ArchiveStatsTap, type TableStats } from "../pg/archive-stats.ts";
import { findPgBin } from "../pg/binaries.ts";
import { connect, describeConn, libpqEnv, type PgConn } from "../pg/conn.ts";
import { captureRoles } from "../pg/roles.ts";
import { countRows, dumpedTables } from "../pg/row-counts.ts";
import { describeExit, spawnTool } from "../pg/tool-process.ts";
import { ageEncrypt, assertX25519Recipient } from "../stages/age-stream.ts";
import { sha256Tap } from "../stages/sha256-tap.ts";
import { zstdCompressFrames } from "../stages/zstd-frames.ts";
import { WORKER_VERSION } from "../version.ts";
import { AGE_CHAIN, objectEntry, putSealed } from "./sealed-object.ts";

export interface BackupOptions {
  conn: PgConn;
  store: ObjectStore;
  recipients: string[];
  /** @default the database name */
  databaseId?: string;
  signal?: AbortSignal;
  log: Logger;
  /** Called with the count of pg_dump bytes read so far. */
  onProgress?: (dumpBytes: number, estimatedBytes: number) => void;
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

/** The encrypted stats object: everything about the schema that must not be plaintext. */
export interface BackupStats {
  format: "strongroom.stats/1";
  source: "archive" | "count";
  schemaFingerprint: string;
  tables: TableStats[];
  largeObjects: number;
  owners: string[];
}

export interface ServerInfo {
  version: string;
  versionNum: number;
  major: number;
  systemIdentifier: string | null;
  database: string;
  databaseBytes: number;
}

export async function serverInfo(client: pg.Client): Promise<ServerInfo> {
  const { rows } = await client.query<{ v: string; n: string; db: string; size: string }>(
    `select current_setting('server_version') as v, current_setting('server_version_num') as n,
            current_database() as db, pg_database_size(current_database())::text as size`,
  );
  const row = rows[0] as { v: string; n: string; db: string; size: string };
  let systemIdentifier: string | null = null;
  try {
    // Superusers and pg_monitor-like roles only; a least-privilege role goes without.
    const id = await client.query<{ id: string }>("select system_identifier::text as id from pg_control_system()");
    systemIdentifier = id.rows[0]?.id ?? null;
  } catch {
    systemIdentifier = null;
  }
  const versionNum = Number(row.n);
  return {
    version: row.v.split(" ")[0] as string,
    versionNum,
    major: Math.floor(versionNum / 10000),
    systemIdentifier,
    database: row.db,
    databaseBytes: Number(row.size),
  };
}

const COALESCE_BYTES = 1024 * 1024;

/**
 * pg_dump and its server backend need a core between them, so compression gets the
 * rest: on 2 cores one frame at a time measured faster than two (bench/backup.bench.ts).
 */
const COMPRESSION = { level: 3, maxInFlight: Math.max(1, availableParallelism() - 1) };

/**
 * pg_dump's stdout, which errors instead of ending when pg_dump fails: a dump cut
 * short by a crash or a kill must never complete an upload.
 */
function dumpSource(proc: ReturnType<typeof spawnTool>, signal?: AbortSignal): Readable {
  const stdout = proc.child.stdout as Readable;
  let exited = false;
  void proc.exited.then(() => {
    exited = true;
  });
  const source = Readable.from(
    (async function* () {
      // Pipe reads arrive in 64 KiB pieces; handing on 1 MiB ones costs one copy and
      // saves the stages below some 15 of every 16 calls.
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      for await (const chunk of stdout) {
        pending.push(chunk as Buffer);
        pendingBytes += (chunk as Buffer).length;
        if (pendingBytes >= COALESCE_BYTES) {
          yield Buffer.concat(pending, pendingBytes);
          pending = [];
          pendingBytes = 0;
        }
      }
      if (pendingBytes > 0) yield Buffer.concat(pending, pendingBytes);
      const exit = await proc.exited;
      if (signal?.aborted) throw new AbortedError("backup aborted");
      if (exit.code !== 0) {
        const stderr = proc.stderr();
        throw new DumpFailedError(`pg_dump ${describeExit(exit)}: ${stderr || "no error output"}`, {
          ...(/permission denied/.test(stderr)
            ? {
                hint: "the backup role must read everything: grant it pg_read_all_data (PostgreSQL 14+); large objects need their own GRANT SELECT ON LARGE OBJECT (see README, least-privilege role)",
              }
            : {}),
        });
      }
    })(),
    { objectMode: false },
  );
  // Torn down by a failure elsewhere in the pipeline (the store, a stage): stop pg_dump
  // at once, so its snapshot and locks on the source are released now, not when some
  // later write of its finds the pipe closed.
  source.once("close", () => {
    if (!exited) proc.child.kill("SIGTERM");
  });
  return source;
}

/**
 * Refuses to add a backup to a series whose newest backup came from another source:
 * retention counts a series as one database's history, and two servers feeding one
 * series would expire each other's backups.
 */
async function assertSameSource(store: ObjectStore, databaseId: string, source: string): Promise<void> {
  const newest = (await listBackupRefs(store, databaseId)).at(-1);
  if (!newest) return;
  const previous = (await readManifest(store, newest)).source;
  if (previous === undefined || previous === source) return;
  throw new SourceMismatchError(
    `the backups of ${databaseId} in this store come from ${previous}, not from ${source}`,
    {
      hint: `pass --database-id to give this database its own series, or --allow-source-change if ${databaseId} really moved`,
    },
  );
}

/**
 * Backs one database up: pg_dump on an exported snapshot → zstd frames → age →
 * store, then the encrypted roles and stats, then the manifest (put-if-absent),
 * which is what makes it a backup. Nothing of the dump touches local disk.
 */
export async function backup(options: BackupOptions): Promise<Manifest> {
  const { conn, store, log, signal } = options;
  const env = options.env ?? process.env;
  const now = options.now ?? (() => new Date());
  for (const r of options.recipients) assertX25519Recipient(r);
  // Fail on a bad recipient before touching the database.
  const encryptor = await ageEncrypt(options.recipients);

  const startedAt = now();
  const client = await connect(conn, "strongroom-backup");
  try {
    const server = await serverInfo(client);
    const databaseId = options.databaseId ?? server.database;
    const backupId = newBackupId(startedAt);
    const source = server.systemIdentifier
      ? `system:${server.systemIdentifier}/${server.database}`
      : `address:${conn.host}:${conn.port}/${server.database}`;
    if (!options.allowSourceChange) await assertSameSource(store, databaseId, source);
    const record = auditRecorder(
      options.audit?.(databaseId),
      { actor: options.actor ?? "cli", databaseId, backupId },
      now,
    );
    const start = await record("backup.start", { server: server.version, databaseBytes: server.databaseBytes });
    try {
      const manifest = await runBackup();
      const dump = manifest.objects.find((o) => o.role === "dump");
      await record("backup.ok", {
        // Restore compares the manifest it reads with this: a plaintext manifest rewritten
        // in the bucket (to match a replaced dump) no longer hashes to what was committed.
        manifestSha256: createHash("sha256").update(serializeManifest(manifest)).digest("hex"),
        dumpBytes: dump?.plainBytes,
        storedBytes: manifest.objects.reduce((n, o) => n + o.storedBytes, 0),
        seconds: (now().getTime() - startedAt.getTime()) / 1000,
      });
      return manifest;
    } catch (err) {
      await record("backup.fail", failureDetails(err)).catch(() => undefined);
      throw err;
    }

    async function runBackup(): Promise<Manifest> {
      const bin = await findPgBin(["pg_dump"], server.major, `a PostgreSQL ${server.version} server`, env);
      log.info("backup started", {
        backupId,
        databaseId,
        target: describeConn(conn),
        server: server.version,
        pgDump: bin.version,
        databaseBytes: server.databaseBytes,
      });

      // The snapshot lives as long as this transaction; pg_dump and our fallback counts share it.
      await client.query("begin isolation level repeatable read read only");
      const snapshot = (await client.query<{ s: string }>("select pg_export_snapshot() as s")).rows[0]?.s as string;
      const toolEnv = libpqEnv(conn, "strongroom-backup");

      const roles = await captureRoles(client);

      const dump = spawnTool(`${bin.dir}/pg_dump`, ["-Fc", "-Z0", `--snapshot=${snapshot}`, "--no-password"], toolEnv, {
        ...(signal ? { signal } : {}),
      });
      const plainTap = sha256Tap();
      const storedTap = sha256Tap();
      const archive = new ArchiveStatsTap();
      let dumpBytes = 0;
      plainTap.on("data", (c: Buffer) => {
        dumpBytes += c.length;
        options.onProgress?.(dumpBytes, server.databaseBytes);
      });
      const dumpKey = objectKey(databaseId, backupId, "dump");
      try {
        await pipeline(
          dumpSource(dump, signal),
          plainTap,
          archive,
          zstdCompressFrames(COMPRESSION),
          encryptor,
          storedTap,
          storeSink(store, dumpKey, { expectedBytes: server.databaseBytes, ...(signal ? { signal } : {}) }),
          signal ? { signal } : {},
        );
      } catch (err) {
        if (signal?.aborted) throw new AbortedError("backup aborted; nothing was committed", { cause: err });
        throw err;
      }
      const dumpEntry = objectEntry(
        "dump",
        dumpKey,
        ["pg_dump -Fc -Z0", "zstd-frames/1 level 3", AGE_CHAIN],
        plainTap.result(),
        storedTap.result(),
      );

      const fromArchive = archive.result();
      if (!fromArchive)
        log.warn("could not read row counts from the archive; counting on the snapshot", {
          reason: archive.failure?.message,
        });
      const stats: BackupStats = {
        format: "strongroom.stats/1",
        source: fromArchive ? "archive" : "count",
        schemaFingerprint: fromArchive?.schemaFingerprint ?? "",
        tables: fromArchive?.tables ?? (await countRows(client, await dumpedTables(client))),
        largeObjects: fromArchive?.largeObjects ?? 0,
        owners: fromArchive?.owners ?? [],
      };
      // Everything was read on the snapshot by now. A commit that fails (the session was
      // cut by something we could not switch off) loses nothing: the transaction was read only.
      await client.query("commit").catch((err: unknown) =>
        log.warn("could not end the snapshot transaction; the dump is complete", {
          reason: (err as Error).message,
        }),
      );

      const rolesEntry = await putSealed(
        store,
        objectKey(databaseId, backupId, "roles"),
        "roles",
        Buffer.from(JSON.stringify(roles)),
        options.recipients,
        signal,
      );
      const statsEntry = await putSealed(
        store,
        objectKey(databaseId, backupId, "stats"),
        "stats",
        Buffer.from(JSON.stringify(stats)),
        options.recipients,
        signal,
      );
      if (signal?.aborted) throw new AbortedError("backup aborted; nothing was committed");

      const manifest: Manifest = {
        format: MANIFEST_FORMAT,
        databaseId,
        backupId,
        database: server.database,
        startedAt: startedAt.toISOString(),
        finishedAt: now().toISOString(),
        server: { version: server.version, versionNum: server.versionNum, systemIdentifier: server.systemIdentifier },
        source,
        pgDump: { version: bin.version },
        recipients: [...options.recipients],
        objects: [dumpEntry, rolesEntry, statsEntry],
        worker: { version: WORKER_VERSION },
        ...(start ? { audit: { seq: start.seq, hash: start.hash } } : {}),
      };
      // The commit point: until this put succeeds, the objects above are garbage, not a backup.
      await store.putIfAbsent(objectKey(databaseId, backupId, "manifest"), serializeManifest(manifest));
      log.info("backup committed", {
        backupId,
        databaseId,
        dumpBytes: dumpEntry.plainBytes,
        storedBytes: dumpEntry.storedBytes,
        tables: stats.tables.length,
      });
      return manifest;
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}
