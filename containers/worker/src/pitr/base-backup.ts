import { createHash } from "node:crypto";
import * as path from "node:path";
import { PassThrough } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { createZstdCompress } from "node:zlib";
import type { RowSigner } from "#core/audit/row-signature.ts";
import { DumpFailedError, IntegrityError, InvalidInputError } from "#core/errors.ts";
import { newBackupId, walPrefix } from "#core/keys.ts";
import type { Logger } from "#core/log.ts";
import {
  BASE_FORMAT,
  type BaseManifest,
  baseKeys,
  serializeBaseManifest,
  signBaseManifest,
} from "#core/pitr/base-manifest.ts";
import { formatLsn, parseLsn, segmentRange } from "#core/pitr/lsn.ts";
import { decodeWalHeader, WAL_HEADER_MAX_BYTES } from "#core/pitr/wal-record.ts";
import type { ObjectStore } from "#core/store/object-store.ts";
import { findPgBin } from "../pg/binaries.ts";
import { connect, libpqEnv, type PgConn } from "../pg/conn.ts";
import { describeExit, spawnTool } from "../pg/tool-process.ts";
import { ageEncrypt } from "../stages/age-stream.ts";
import { sha256Tap } from "../stages/sha256-tap.ts";
import { TarMemberTap } from "./tar-members.ts";

export interface BaseBackupOptions {
  store: ObjectStore;
  conn: PgConn;
  databaseId: string;
  recipients: readonly string[];
  /** The host's key, which signs the manifest. Absent: an unsigned manifest, which counts only once the audit log commits it. */
  signer?: RowSigner;
  /** The base's id, when a flow chose it before the task (its audit rows name it). @default a new one */
  baseId?: string;
  /** How long to wait for the server to archive the WAL the backup needs. @default 300 s */
  walWaitMs?: number;
  log: Logger;
  signal?: AbortSignal;
  now?: () => Date;
}

/**
 * `strongroom basebackup`: pg_basebackup -Ft -D - -X none --checkpoint=fast over a
 * replication connection, through zstd and age into the store in one pass (no plaintext
 * on disk), PostgreSQL's backup_label, backup_manifest and pg_control read on the way.
 * Committed (its manifest written, signed) only once the store holds every WAL segment
 * from its start to its stop, archived by this cluster: a base backup nothing can
 * recover is never listed.
 */
export async function baseBackup(o: BaseBackupOptions): Promise<BaseManifest> {
  const now = o.now ?? (() => new Date());
  const client = await connect(o.conn, "strongroom basebackup");
  let version: string;
  let segmentBytes: number;
  let superuser: string;
  try {
    // The bootstrap superuser (OID 10): a verification connects to the recovered copy as it.
    const rows = await client.query<{ v: string; seg: string; mode: string; su: string }>(
      "select current_setting('server_version') as v, current_setting('wal_segment_size') as seg, current_setting('archive_mode') as mode, (select rolname from pg_roles where oid = 10) as su",
    );
    const row = rows.rows[0] as { v: string; seg: string; mode: string; su: string };
    superuser = row.su;
    version = row.v.split(" ")[0] as string;
    segmentBytes = sizeBytes(row.seg);
    if (row.mode === "off") {
      throw new InvalidInputError(
        "the server does not archive its WAL (archive_mode = off): a base backup could not be recovered",
        {
          hint: "set archive_mode = on and archive_command = 'strongroom wal-push %p …' (docs/pitr.md), restart the server, then take the base backup",
        },
      );
    }
  } finally {
    await client.end().catch(() => undefined);
  }
  const major = Number(version.split(".")[0]);
  const bin = await findPgBin(["pg_basebackup"], major, `a base backup of PostgreSQL ${version}`);
  const baseId = o.baseId ?? newBackupId(now());
  const keys = baseKeys(o.databaseId, baseId);
  const startedAt = now();
  const tool = spawnTool(
    path.join(bin.dir, "pg_basebackup"),
    ["-D", "-", "-Ft", "-X", "none", "--checkpoint=fast", "--no-password"],
    libpqEnv(o.conn, "strongroom basebackup"),
    { ...(o.signal ? { signal: o.signal } : {}) },
  );
  const tap = new TarMemberTap(new Set(["backup_label", "backup_manifest", "global/pg_control"]));
  const plain = sha256Tap();
  const stored = sha256Tap();
  const body = new PassThrough();
  const abort = new AbortController();
  // Never over another base's tar (a bucket policy requires it too): a manifest names its digest.
  const put = o.store.put(keys.object, body, { signal: abort.signal, ifAbsent: true });
  try {
    await Promise.all([
      pipeline(
        tool.child.stdout as NodeJS.ReadableStream,
        plain,
        tap,
        createZstdCompress(),
        await ageEncrypt(o.recipients),
        stored,
        body,
      ),
      tool.exited.then((exit) => {
        if (exit.code !== 0) {
          const stderr = tool.stderr();
          const why = /can only write single tablespace/.test(stderr)
            ? "the cluster has tablespaces besides the default ones, which a base backup here does not take yet"
            : stderr || describeExit(exit);
          throw new DumpFailedError(`pg_basebackup ${describeExit(exit)}: ${why}`, {
            hint: "the role needs REPLICATION (or to be a superuser), and pg_hba.conf a replication line for it",
          });
        }
      }),
      put,
    ]);
  } catch (err) {
    abort.abort(err);
    tool.child.kill("SIGTERM");
    await put.catch(() => undefined);
    throw err;
  }
  const label = tap.members.get("backup_label")?.toString("utf8") ?? "";
  const pgManifest = tap.members.get("backup_manifest");
  const control = tap.members.get("global/pg_control");
  const start = /START WAL LOCATION: ([0-9A-F]+\/[0-9A-F]+)/.exec(label)?.[1];
  const timeline = Number(/START TIMELINE: (\d+)/.exec(label)?.[1]);
  if (!start || !pgManifest || !control || control.length < 8 || !Number.isInteger(timeline)) {
    throw new IntegrityError("pg_basebackup's archive lacks backup_label, backup_manifest or global/pg_control", {
      hint: "a base backup is taken with pg_basebackup 13 or newer, which writes a backup manifest",
    });
  }
  const ranges = (
    JSON.parse(pgManifest.toString("utf8")) as { "WAL-Ranges"?: Array<{ Timeline: number; "End-LSN": string }> }
  )["WAL-Ranges"];
  const stop = ranges?.at(-1)?.["End-LSN"];
  if (!stop) throw new IntegrityError("pg_basebackup's backup_manifest has no WAL range");
  const systemIdentifier = control.readBigUInt64LE(0).toString();
  const startLsn = parseLsn(start);
  const stopLsn = parseLsn(stop);
  // The segment holding the last byte the backup needs.
  const needed = segmentRange(timeline, startLsn, stopLsn > startLsn ? stopLsn - 1n : stopLsn, segmentBytes);
  await waitForWal(o, needed, systemIdentifier, o.walWaitMs ?? 300_000);
  const fields: Omit<BaseManifest, "signature"> = {
    format: BASE_FORMAT,
    databaseId: o.databaseId,
    baseId,
    startedAt: startedAt.toISOString(),
    stoppedAt: now().toISOString(),
    server: { version, major, systemIdentifier, walSegmentBytes: segmentBytes, superuser },
    timeline,
    startLsn: formatLsn(startLsn),
    stopLsn: formatLsn(stopLsn),
    walSegments: { first: needed[0] as string, last: needed.at(-1) as string },
    object: {
      key: keys.object,
      plainBytes: plain.result().bytes,
      plainSha256: plain.result().sha256,
      storedBytes: stored.result().bytes,
      storedSha256: stored.result().sha256,
    },
    backupManifestSha256: createHash("sha256").update(pgManifest).digest("hex"),
    recipients: [...o.recipients],
  };
  const manifest: BaseManifest = o.signer ? signBaseManifest(fields, o.signer) : fields;
  await o.store.putIfAbsent(keys.manifest, serializeBaseManifest(manifest));
  o.log.info("base backup committed", {
    databaseId: o.databaseId,
    baseId,
    startLsn: manifest.startLsn,
    stopLsn: manifest.stopLsn,
    storedBytes: manifest.object.storedBytes,
  });
  return manifest;
}

/**
 * Waits until the store holds every one of `segments`, archived from this cluster (the
 * header's system identifier): the server archives the last one once the backup's stop
 * switched to a new segment.
 */
async function waitForWal(
  o: BaseBackupOptions,
  segments: string[],
  systemIdentifier: string,
  ms: number,
): Promise<void> {
  const until = Date.now() + ms;
  const prefix = walPrefix(o.databaseId);
  let missing = segments;
  for (;;) {
    const still: string[] = [];
    for (const name of missing) {
      try {
        // The signed header only: a ranged GET, not the whole segment.
        const head = await o.store.get(prefix + name, { range: { start: 0, end: WAL_HEADER_MAX_BYTES - 1 } });
        const chunks: Buffer[] = [];
        for await (const c of head) chunks.push(c as Buffer);
        const { record } = decodeWalHeader(Buffer.concat(chunks), prefix + name);
        if (record.systemIdentifier !== systemIdentifier) {
          throw new IntegrityError(
            `${prefix + name} was archived by another cluster (system identifier ${record.systemIdentifier}, this one ${systemIdentifier})`,
            { hint: "two clusters archive under one database id: give each its own --database-id" },
          );
        }
      } catch (err) {
        if ((err as Error).name !== "NotFoundError") throw err;
        still.push(name);
      }
    }
    missing = still;
    if (missing.length === 0) return;
    if (Date.now() > until) {
      throw new IntegrityError(
        `the WAL this base backup needs is not archived: ${missing.slice(0, 3).join(", ")}${missing.length > 3 ? ` and ${missing.length - 3} more` : ""} missing after ${ms / 1000} s; the base backup is not committed`,
        {
          hint: `check that archive_command runs strongroom wal-push with --database-id ${o.databaseId} and succeeds (pg_stat_archiver's last_failed_wal, the server's log)`,
        },
      );
    }
    await sleep(1000, undefined, o.signal ? { signal: o.signal } : {});
  }
}

/** `16MB` (SHOW's unit text) in bytes. */
function sizeBytes(text: string): number {
  const m = /^(\d+)\s*(kB|MB|GB)?$/.exec(text.trim());
  const unit = { kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 }[m?.[2] ?? ""] ?? 1;
  return Number(m?.[1] ?? Number.NaN) * unit;
}
