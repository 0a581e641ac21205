import { createHash } from "node:crypto";
import { open, readFile, rename, unlink } from "node:fs/promises";
import * as path from "node:path";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { zstdCompress, zstdDecompress } from "node:zlib";
import type { RowSigner } from "#core/audit/row-signature.ts";
import {
  AlreadyExistsError,
  IntegrityError,
  NotFoundError,
  StoreUnavailableError,
  WalConflictError,
  WalFileMissingError,
} from "#core/errors.ts";
import { syncDir } from "#core/fsync-dir.ts";
import { walPrefix } from "#core/keys.ts";
import { parseTimelineHistory } from "#core/pitr/timelines.ts";
import { parseWalFileName, readSegmentHeader, segmentNameOf } from "#core/pitr/wal-file.ts";
import {
  checkWalRecord,
  decodeWalHeader,
  encodeWalHeader,
  signWalRecord,
  WAL_FORMAT,
  type WalRecord,
} from "#core/pitr/wal-record.ts";
import type { ObjectStore } from "#core/store/object-store.ts";
import { ageDecrypt, ageEncrypt } from "../stages/age-stream.ts";

const compress = promisify(zstdCompress);
const decompress = promisify(zstdDecompress) as (
  buffer: Buffer,
  options: { maxOutputLength: number },
) => Promise<Buffer>;

/** Larger than any WAL file PostgreSQL writes (segments are at most 1 GiB), with room for the header and age. */
const MAX_OBJECT_BYTES = 1024 ** 3 + 1024 ** 2;

/** What a WAL file's archiving did: stored now, or found already stored with the same content. */
export interface WalPushResult {
  key: string;
  name: string;
  outcome: "stored" | "already-stored";
  plainBytes: number;
  storedBytes: number;
  plainSha256: string;
}

/**
 * archive_command (`strongroom wal-push %p`): one WAL file, zstd-compressed, age-encrypted
 * to the recipients, behind a header its host signs, put only if its key is free. It
 * resolves only once the store holds it durably, which is when PostgreSQL may recycle
 * the segment. An object already at the key with the same plaintext (a retry whose
 * first answer was lost) counts as archived; any other is a WalConflictError, never
 * overwritten: a .history file, above all, is written once.
 */
export async function pushWal(
  store: ObjectStore,
  file: string,
  o: {
    databaseId: string;
    recipients: readonly string[];
    signer: RowSigner;
    now?: Date;
    /** The server's data directory, whose global/pg_control names the cluster. @default the working directory (archive_command's) */
    dataDirectory?: string;
  },
): Promise<WalPushResult> {
  const name = path.basename(file);
  const parsed = parseWalFileName(name);
  const plain = await readFile(file);
  let systemIdentifier: string | undefined;
  if (parsed.kind === "segment" || parsed.kind === "partial") {
    const header = readSegmentHeader(plain);
    const own = header ? segmentNameOf(header) : undefined;
    // A file whose pages say another segment than its name would be replayed in the wrong place.
    // Its first page may be an ancestor timeline's: the segment a promotion switched in
    // starts as a copy of the old timeline's (XLogFileCopy), and PostgreSQL reads it so.
    if (!header || own?.slice(8) !== name.slice(8, 24) || header.timeline > parsed.timeline) {
      throw new IntegrityError(`${file} is not the WAL segment ${name} (its first page says ${own ?? "no segment"})`, {
        hint: "archive_command must pass %p, the path PostgreSQL names, unchanged",
      });
    }
    systemIdentifier = header.systemIdentifier;
  }
  // archive_command runs in the data directory: its pg_control names the cluster, so that
  // a .history or .backup file is signed as this cluster's too (segments carry it themselves).
  const control = await readFile(path.join(o.dataDirectory ?? process.cwd(), "global", "pg_control")).catch(
    () => undefined,
  );
  const clusterId = control && control.length >= 8 ? control.readBigUInt64LE(0).toString() : undefined;
  if (clusterId !== undefined && systemIdentifier !== undefined && clusterId !== systemIdentifier) {
    throw new IntegrityError(
      `${file} belongs to cluster ${systemIdentifier}, and this data directory is cluster ${clusterId}`,
      {
        hint: "archive_command archives the server's own pg_wal only",
      },
    );
  }
  systemIdentifier ??= clusterId;
  // A timeline's ancestry, signed in the clear: continuity checks follow it without the key.
  const history = parsed.kind === "history" ? parseTimelineHistory(plain.toString("utf8"), parsed.timeline) : undefined;
  const plainSha256 = createHash("sha256").update(plain).digest("hex");
  const record = signWalRecord(
    {
      format: WAL_FORMAT,
      databaseId: o.databaseId,
      name,
      kind: parsed.kind,
      timeline: parsed.timeline,
      ...(systemIdentifier !== undefined ? { systemIdentifier } : {}),
      plainBytes: plain.length,
      plainSha256,
      pushedAt: (o.now ?? new Date()).toISOString(),
      ...(history !== undefined ? { history } : {}),
    },
    o.signer,
  );
  // On libuv's thread pool, not the main thread: the archiver pushes several files at once.
  const sealed = await seal(await compress(plain), o.recipients);
  const body = Buffer.concat([encodeWalHeader(record), sealed]);
  const key = walPrefix(o.databaseId) + name;
  const result = { key, name, plainBytes: plain.length, plainSha256 };
  try {
    await store.putIfAbsent(key, body);
    return { ...result, outcome: "stored", storedBytes: body.length };
  } catch (err) {
    if (!(err instanceof AlreadyExistsError)) throw err;
  }
  // Taken: the same file archived before (its ciphertext differs: age encrypts afresh), or another.
  const existing = await readHeader(store, key);
  const ours = new Set([o.signer.signer]);
  try {
    checkWalRecord(existing, { databaseId: o.databaseId, name }, ours, key);
  } catch (err) {
    throw new WalConflictError(`${key} already holds an object this host did not archive; it is left as it is`, {
      cause: err,
      hint: "someone else wrote the archive under this name: find out who (the store's access log), move the object aside, and PostgreSQL archives the file again on its next try",
    });
  }
  if (existing.plainSha256 !== plainSha256 || existing.plainBytes !== plain.length) {
    throw new WalConflictError(
      `${key} was archived before with other content (sha256 ${existing.plainSha256.slice(0, 12)}…, this file ${plainSha256.slice(0, 12)}…); it is never overwritten`,
      {
        hint: "two clusters archive into one database id (give each its own --database-id), or the cluster was restored without a new timeline; PostgreSQL keeps the file and retries",
      },
    );
  }
  return { ...result, outcome: "already-stored", storedBytes: body.length };
}

/**
 * restore_command (`strongroom wal-fetch %f %p`): the archived file, checked against its
 * signed header (name, database, signer, plaintext SHA-256 and size) before a byte
 * reaches `dest`, and put there whole (a temporary name, fsync, rename). Only a file the
 * store says is not there is WalFileMissingError.
 */
export async function fetchWal(
  store: ObjectStore,
  name: string,
  dest: string,
  o: {
    databaseId: string;
    identities: readonly string[];
    signers: ReadonlySet<string>;
    /** The recovering cluster's: a file archived by another cluster under this database id is refused. */
    systemIdentifier?: string;
  },
): Promise<{ key: string; plainBytes: number }> {
  parseWalFileName(name);
  const prefix = walPrefix(o.databaseId);
  const key = prefix + name;
  let size: number;
  try {
    size = (await store.stat(key)).bytes;
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    // "Not archived" ends the recovery: say it only when the archive itself is there.
    const archive = await store.list(prefix, { pageSize: 1 });
    if (archive.objects.length === 0) {
      throw new IntegrityError(
        `the archive ${prefix} holds nothing: a wrong --store or --database-id, or a store that is gone`,
        {
          hint: "check restore_command's --store and --database-id; recovery stops here rather than promote without the WAL",
        },
      );
    }
    throw new WalFileMissingError(`${name} is not in the archive (${key})`, { cause: err });
  }
  // A segment is at most 1 GiB; a larger object was planted (and would be read whole).
  if (size > MAX_OBJECT_BYTES) throw new IntegrityError(`${key} is ${size} bytes, more than any WAL file`);
  const bytes = await readAll(await store.get(key));
  const { record, bodyOffset } = decodeWalHeader(bytes, key);
  checkWalRecord(record, { databaseId: o.databaseId, name }, o.signers, key);
  if (o.systemIdentifier !== undefined && record.systemIdentifier !== o.systemIdentifier) {
    throw new IntegrityError(
      `${key} was archived by cluster ${record.systemIdentifier ?? "(unknown)"}, not the one being recovered (${o.systemIdentifier})`,
      { hint: "another cluster archived under this database id: its WAL is never replayed here" },
    );
  }
  if (record.plainBytes > MAX_OBJECT_BYTES)
    throw new IntegrityError(`${key}'s header claims ${record.plainBytes} bytes`);
  // Never more than the signed size: a planted body cannot expand without bound.
  const plain = await decompress(await unseal(bytes.subarray(bodyOffset), o.identities), {
    maxOutputLength: Math.max(record.plainBytes, 1),
  });
  const sha = createHash("sha256").update(plain).digest("hex");
  if (plain.length !== record.plainBytes || sha !== record.plainSha256) {
    throw new IntegrityError(`${key}'s content is not what its signed header says (sha256 ${sha.slice(0, 12)}…)`, {
      hint: "the object's body was replaced after it was archived; it is never replayed",
    });
  }
  const temporary = `${dest}.strongroom-${process.pid}`;
  try {
    const handle = await open(temporary, "w", 0o600);
    try {
      await handle.writeFile(plain);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, dest);
  } catch (err) {
    await unlink(temporary).catch(() => undefined);
    throw err;
  }
  await syncDir(path.dirname(dest));
  return { key, plainBytes: plain.length };
}

/** The header of the object at `key` (read whole: a duplicate push is rare, and an object is a segment at most). */
async function readHeader(store: ObjectStore, key: string): Promise<WalRecord> {
  return decodeWalHeader(await readAll(await store.get(key)), key).record;
}

async function seal(plain: Buffer, recipients: readonly string[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from([plain]), await ageEncrypt(recipients), collect(out));
  return Buffer.concat(out);
}

async function unseal(sealed: Uint8Array, identities: readonly string[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from([Buffer.from(sealed)]), ageDecrypt(identities), collect(out));
  return Buffer.concat(out);
}

function collect(chunks: Buffer[]): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk);
      callback();
    },
  });
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Rejects with StoreUnavailableError when `work` takes longer than `ms`: a hung store must not hold the archiver or a recovery. */
export async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new StoreUnavailableError(`${what} took longer than ${ms / 1000} s`, {
            hint: "the store did not answer in time; PostgreSQL tries again (--timeout, STRONGROOM_WAL_TIMEOUT, sets the limit)",
          }),
        ),
      ms,
    );
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
