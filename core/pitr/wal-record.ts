import { type RowSignature, type RowSigner, textSignedByOneOf } from "../audit/row-signature.ts";
import { IntegrityError } from "../errors.ts";
import type { TimelineSwitch } from "./timelines.ts";
import type { WalFileKind } from "./wal-file.ts";

/**
 * A stored WAL file: one object, `<db>/wal/<name>`, of a plaintext header line (this
 * record, JSON) and then the file, zstd-compressed and age-encrypted to the organisation's
 * recipients (docs/formats.md, WAL). The header lets anyone with the store compare a
 * file's plaintext SHA-256 without decrypting it (a re-archived segment, a gap), and the
 * host's Ed25519 signature over it lets a restore refuse a file a store writer planted:
 * replaying WAL changes data, so a forged segment is as dangerous as a forged dump.
 */
export const WAL_FORMAT = "strongroom-wal/1";
const CONTEXT = "strongroom.wal/1\n";
/** A header is a few hundred bytes; anything past this before the newline is not one. */
export const WAL_HEADER_MAX_BYTES = 4096;

export interface WalRecord {
  format: typeof WAL_FORMAT;
  databaseId: string;
  name: string;
  kind: WalFileKind;
  timeline: number;
  /** The cluster's system identifier: from a segment's first page, else from the data directory's pg_control. */
  systemIdentifier?: string;
  plainBytes: number;
  plainSha256: string;
  pushedAt: string;
  /**
   * A `.history` file's timelines, as PostgreSQL wrote them (parent timeline and the LSN
   * where it ended): signed in the clear, so that a store's continuity check can follow
   * timeline switches without the organisation's key.
   */
  history?: TimelineSwitch[];
  signature: RowSignature;
}

type Unsigned = Omit<WalRecord, "signature">;

/** The signed text: the record's fields but the signature, in a fixed order. */
function signedText(r: Unsigned): string {
  return JSON.stringify([
    r.format,
    r.databaseId,
    r.name,
    r.kind,
    r.timeline,
    r.systemIdentifier ?? null,
    r.plainBytes,
    r.plainSha256,
    r.pushedAt,
    // Appended only when present: a record without one signs the same text as before it existed.
    ...(r.history !== undefined ? [r.history.map((h) => [h.timeline, h.switchLsn])] : []),
  ]);
}

export function signWalRecord(record: Unsigned, signer: RowSigner): WalRecord {
  return { ...record, signature: signer.signText(CONTEXT, signedText(record)) };
}

/** The header line an object starts with. */
export function encodeWalHeader(record: WalRecord): Buffer {
  return Buffer.from(`${JSON.stringify(record)}\n`);
}

/**
 * The record an object starts with, and where its sealed body begins. Throws
 * IntegrityError for anything else: no header, not JSON, another format.
 */
export function decodeWalHeader(bytes: Uint8Array, key: string): { record: WalRecord; bodyOffset: number } {
  const newline = Buffer.from(bytes.subarray(0, WAL_HEADER_MAX_BYTES)).indexOf(0x0a);
  if (newline < 0) throw new IntegrityError(`${key} does not start with a strongroom WAL header`);
  let record: WalRecord;
  try {
    record = JSON.parse(Buffer.from(bytes.subarray(0, newline)).toString("utf8")) as WalRecord;
  } catch (err) {
    throw new IntegrityError(`${key}'s WAL header is not JSON`, { cause: err });
  }
  if (record?.format !== WAL_FORMAT) {
    throw new IntegrityError(`${key} is not in ${WAL_FORMAT} format (${JSON.stringify(record?.format)})`);
  }
  return { record, bodyOffset: newline + 1 };
}

/**
 * Whether the record is the one asked for and signed by a trusted signer. A store
 * writer can put any object at any key, with the public recipients and any header: only
 * the signature, which needs the archiving host's secret, says the host archived it.
 */
export function checkWalRecord(
  record: WalRecord,
  expected: { databaseId: string; name: string },
  signers: ReadonlySet<string>,
  key: string,
): void {
  if (record.databaseId !== expected.databaseId || record.name !== expected.name) {
    throw new IntegrityError(
      `${key} holds ${JSON.stringify(record.databaseId)}/${JSON.stringify(record.name)}, not what its key says`,
      { hint: "an object was copied or planted under another key; it is never replayed" },
    );
  }
  if (!textSignedByOneOf(record.signature, CONTEXT, signedText(record), signers)) {
    throw new IntegrityError(`${key} is not signed by a trusted signer`, {
      hint: "only WAL the database host archived with its signing key is replayed: pass that host's --signer (STRONGROOM_SIGNERS); an unsigned or foreign-signed file was planted or archived by another key",
    });
  }
}
