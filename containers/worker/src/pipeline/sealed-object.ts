import { createHash } from "node:crypto";
import { Readable, type Transform, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { IntegrityError, NotFoundError, StrongroomError } from "#core/errors.ts";
import type { Logger } from "#core/log.ts";
import { type ManifestObject, ZSTD_CHECKSUMS } from "#core/manifest.ts";
import type { ObjectStore } from "#core/store/object-store.ts";
import { readRanged } from "#core/store/ranged-read.ts";
import { ageDecrypt, ageEncrypt } from "../stages/age-stream.ts";
import { type Sha256Tap, sha256Tap, type TapResult } from "../stages/sha256-tap.ts";
import { zstdDecompressFrames } from "../stages/zstd-frames.ts";

export const AGE_CHAIN = "age-v1-x25519";

/**
 * Encrypts a small in-memory object (stats, globals) to `recipients` and stores it.
 * It is sealed in memory first, so an encryption failure surfaces here rather than
 * as a half-fed upload.
 */
export async function putSealed(
  store: ObjectStore,
  key: string,
  role: ManifestObject["role"],
  plain: Buffer,
  recipients: readonly string[],
  signal?: AbortSignal,
): Promise<ManifestObject> {
  const plainTap = sha256Tap();
  const storedTap = sha256Tap();
  const sealed: Buffer[] = [];
  await pipeline(Readable.from([plain]), plainTap, await ageEncrypt(recipients), storedTap, collect(sealed));
  await store.put(key, Readable.from([Buffer.concat(sealed)]), signal ? { signal } : {});
  return objectEntry(role, key, [AGE_CHAIN], plainTap.result(), storedTap.result());
}

function collect(chunks: Buffer[]): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk);
      callback();
    },
  });
}

/** How an object's plain bytes are proven: their SHA-256 (small objects), or the dump's zstd frame checksums. */
export type PlainProof = TapResult | { bytes: number; plainCheck: typeof ZSTD_CHECKSUMS };

export function objectEntry(
  role: ManifestObject["role"],
  key: string,
  chain: string[],
  plain: PlainProof,
  stored: TapResult,
  /** The age header and nonce the object starts with (AgeEncryptor.head). */
  head?: Buffer,
): ManifestObject {
  return {
    role,
    key,
    chain,
    plainBytes: plain.bytes,
    storedBytes: stored.bytes,
    ...("sha256" in plain ? { plainSha256: plain.sha256 } : { plainCheck: plain.plainCheck }),
    storedSha256: stored.sha256,
    ...(head ? { storedHeadSha256: createHash("sha256").update(head).digest("hex") } : {}),
  };
}

/**
 * Checks the stored object's size against the manifest before reading it, so a
 * truncated or replaced object is named as such rather than as a decryption failure.
 */
export async function assertStoredSize(store: ObjectStore, entry: ManifestObject): Promise<void> {
  const info = await store.stat(entry.key).catch((err: unknown) => {
    if (err instanceof NotFoundError) {
      throw new IntegrityError(`${entry.key} is missing, though the manifest lists it`, {
        cause: err,
        hint: "the backup is damaged; restore another one (`strongroom list`)",
      });
    }
    throw err;
  });
  if (info.bytes !== entry.storedBytes) {
    throw new IntegrityError(
      `${entry.key} is ${info.bytes} bytes but its manifest says ${entry.storedBytes}: it was truncated or replaced`,
      { hint: "the backup is damaged; restore another one (`strongroom list`)" },
    );
  }
}

/**
 * The stages from a stored dump to its plain bytes, shared by restore, verify and
 * recover-table: ranged reads (resumed after a dropped connection,
 * core/store/ranged-read.ts), the stored SHA-256 (`stored`, compared with the manifest
 * by the caller), age, and zstd with the checksums the manifest promises.
 * `framesInFlight: 1` where a database takes the output (~100 MB/s; a frame decodes at
 * ~1 GB/s, a second in flight would only hold 4 MiB more).
 */
export function dumpStages(
  store: ObjectStore,
  entry: ManifestObject,
  identities: readonly string[],
  options: { signal?: AbortSignal | undefined; log?: Logger | undefined; framesInFlight?: number } = {},
): { read: Readable; stored: Sha256Tap; decrypt: Transform; decompress: Transform } {
  return {
    read: readStored(store, entry, options),
    stored: sha256Tap(),
    // The committed header pins the payload key: no chunk a store writer made is released.
    decrypt: ageDecrypt(identities, entry.storedHeadSha256),
    decompress: zstdDecompressFrames({
      requireChecksum: entry.plainCheck === ZSTD_CHECKSUMS,
      ...(options.framesInFlight === undefined ? {} : { maxInFlight: options.framesInFlight }),
    }),
  };
}

/** A large stored object as ranged GETs, each resumed where it stopped after a dropped connection. */
function readStored(
  store: ObjectStore,
  entry: ManifestObject,
  options: { signal?: AbortSignal | undefined; log?: Logger | undefined },
): Readable {
  return readRanged(store, entry.key, {
    bytes: entry.storedBytes,
    ...(options.signal ? { signal: options.signal } : {}),
    onRetry: (retry) => options.log?.warn("store read interrupted; resuming", { key: entry.key, ...retry }),
  });
}

/** Runs `work` on an object, prefixing any typed failure with the object's key. */
export async function naming<T>(entry: ManifestObject, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof StrongroomError && !err.message.startsWith(entry.key))
      err.message = `${entry.key}: ${err.message}`;
    throw err;
  }
}

/**
 * Reads a whole stored object and checks its size and SHA-256 against the manifest,
 * decrypting nothing: proof that the object is the committed one before a consumer that
 * may stop reading early (a selective pg_restore) gets it.
 */
export async function assertStoredObject(
  store: ObjectStore,
  entry: ManifestObject,
  signal?: AbortSignal,
  onProgress?: (storedBytes: number, totalBytes: number) => void,
): Promise<void> {
  await assertStoredSize(store, entry);
  const storedTap = sha256Tap();
  let read = 0;
  await naming(entry, async () =>
    pipeline(
      readStored(store, entry, { signal }),
      storedTap,
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          read += chunk.length;
          onProgress?.(read, entry.storedBytes);
          callback();
        },
      }),
      signal ? { signal } : {},
    ),
  );
  assertMatches(entry, storedTap.result());
}

/** Fetches, verifies against the manifest and decrypts a small object. */
export async function getSealed(
  store: ObjectStore,
  entry: ManifestObject,
  identities: readonly string[],
): Promise<Buffer> {
  await assertStoredSize(store, entry);
  const storedTap = sha256Tap();
  const plainTap = sha256Tap();
  const chunks: Buffer[] = [];
  await naming(entry, async () =>
    pipeline(await store.get(entry.key), storedTap, ageDecrypt(identities), plainTap, collect(chunks)),
  );
  assertMatches(entry, storedTap.result(), plainTap.result());
  return Buffer.concat(chunks);
}

/** Stored and plain sizes and digests must be exactly those the manifest recorded. */
export function assertMatches(
  entry: ManifestObject,
  stored: TapResult,
  plain?: { bytes: number; sha256?: string },
): void {
  if (stored.bytes !== entry.storedBytes || stored.sha256 !== entry.storedSha256) {
    throw new IntegrityError(
      `${entry.key} does not match its manifest (stored ${stored.bytes} bytes, sha256 ${stored.sha256.slice(0, 12)}…; manifest says ${entry.storedBytes} bytes, ${entry.storedSha256.slice(0, 12)}…)`,
      { hint: "the object was replaced or damaged; restore another backup (`strongroom list`)" },
    );
  }
  const plainDiffers =
    plain !== undefined &&
    (plain.bytes !== entry.plainBytes || (entry.plainSha256 !== undefined && plain.sha256 !== entry.plainSha256));
  if (plainDiffers) {
    throw new IntegrityError(`${entry.key} decrypts to bytes that do not match its manifest`);
  }
}
