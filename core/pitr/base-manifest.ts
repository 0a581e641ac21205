import { createHash } from "node:crypto";
import { type RowSignature, type RowSigner, textSignedByOneOf } from "../audit/row-signature.ts";
import { IntegrityError } from "../errors.ts";
import { assertDatabaseId } from "../keys.ts";
import { parseLsn, segmentRange } from "./lsn.ts";

/**
 * A physical base backup (`strongroom basebackup`): one object, `<db>/base/<baseId>/base.tar.zst.age`
 * (pg_basebackup -Ft -X none, zstd, age), and this manifest beside it, written last with
 * put-if-absent once the WAL from the backup's start to its stop is archived: a base
 * backup that cannot be recovered is never committed. The database host signs it, as it
 * signs the WAL (docs/formats.md, Base backup).
 */
export const BASE_FORMAT = "strongroom-base/1";
const CONTEXT = "strongroom.base/1\n";

export interface BaseManifest {
  format: typeof BASE_FORMAT;
  databaseId: string;
  baseId: string;
  startedAt: string;
  stoppedAt: string;
  /** `superuser`: the cluster's bootstrap superuser (absent in manifests written before it was recorded: postgres). */
  server: { version: string; major: number; systemIdentifier: string; walSegmentBytes: number; superuser?: string };
  timeline: number;
  startLsn: string;
  stopLsn: string;
  /** The WAL segments from the backup's start to its stop, every one archived before this was written. */
  walSegments: { first: string; last: string };
  object: { key: string; plainBytes: number; plainSha256: string; storedBytes: number; storedSha256: string };
  /** PostgreSQL's own backup_manifest (inside the tar too): its SHA-256. */
  backupManifestSha256: string;
  recipients: string[];
  /**
   * The database host's signature. Absent on a base taken where no host key is (a backup
   * server, a deployed task): such a base counts only once the audit log commits the
   * SHA-256 of its manifest's bytes (a `backup.ok` row of kind "base").
   */
  signature?: RowSignature;
}

export function baseKeys(databaseId: string, baseId: string): { object: string; manifest: string } {
  assertDatabaseId(databaseId);
  const dir = `${databaseId}/base/${baseId}`;
  return { object: `${dir}/base.tar.zst.age`, manifest: `${dir}/manifest.json` };
}

export function basePrefix(databaseId: string): string {
  assertDatabaseId(databaseId);
  return `${databaseId}/base/`;
}

const unsignedText = (m: Omit<BaseManifest, "signature">) => JSON.stringify(m);

/** The WAL segments a base needs are those of its own LSNs: prune and recovery rely on them. */
function checkWalSegments(m: BaseManifest, key: string): void {
  let expected: string[];
  try {
    const start = parseLsn(m.startLsn);
    const stop = parseLsn(m.stopLsn);
    if (!Number.isInteger(m.timeline) || m.timeline < 1 || !Number.isInteger(m.server?.walSegmentBytes)) {
      throw new Error("no timeline or segment size");
    }
    expected = segmentRange(m.timeline, start, stop > start ? stop - 1n : stop, m.server.walSegmentBytes);
  } catch (err) {
    throw new IntegrityError(`${key} has no valid WAL range: ${(err as Error).message}`);
  }
  if (m.walSegments?.first !== expected[0] || m.walSegments?.last !== expected.at(-1)) {
    throw new IntegrityError(
      `${key} says its WAL runs ${String(m.walSegments?.first)} to ${String(m.walSegments?.last)}; its LSNs say ${expected[0]} to ${expected.at(-1)}`,
    );
  }
}

/** A manifest's bytes as `basebackup` writes them: the only form a reader accepts. */
export function serializeBaseManifest(manifest: BaseManifest): string {
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

export function signBaseManifest(manifest: Omit<BaseManifest, "signature">, signer: RowSigner): BaseManifest {
  return { ...manifest, signature: signer.signText(CONTEXT, unsignedText(manifest)) };
}

/**
 * The manifest at `key`, refused unless a trusted signer signed it, or its bytes are the
 * ones the audit log committed (`committedSha256`), and it names the database and base
 * backup its key does: a store writer can put any manifest there.
 */
export function readBaseManifest(
  text: string,
  key: string,
  signers: ReadonlySet<string>,
  committedSha256?: string,
): BaseManifest {
  let parsed: BaseManifest;
  try {
    parsed = JSON.parse(text) as BaseManifest;
  } catch (err) {
    throw new IntegrityError(`${key} is not JSON`, { cause: err });
  }
  if (parsed?.format !== BASE_FORMAT) throw new IntegrityError(`${key} is not a ${BASE_FORMAT} manifest`);
  const { signature, ...rest } = parsed;
  // Committed: these exact bytes, which the audit log names, whoever wrote them.
  const committed =
    committedSha256 !== undefined && createHash("sha256").update(text).digest("hex") === committedSha256;
  if (!committed && !textSignedByOneOf(signature, CONTEXT, unsignedText(rest), signers)) {
    throw new IntegrityError(`${key} is not signed by a trusted signer, nor committed by the audit log`, {
      hint: "only base backups the database host signed (pass its --signer), or the audit log committed (pass the --audit-table or --audit store that holds its backup.ok), are restored",
    });
  }
  const expected = baseKeys(parsed.databaseId, parsed.baseId);
  if (expected.manifest !== key) throw new IntegrityError(`${key} describes ${expected.manifest}, not itself`);
  // What a reader fetches and replays from must be derived, not taken on the manifest's
  // word (an unsigned one is anyone's bytes until a row commits them).
  if (parsed.object?.key !== expected.object) {
    throw new IntegrityError(`${key} names its data at ${String(parsed.object?.key)}, not ${expected.object}`);
  }
  checkWalSegments(parsed, key);
  // The signature covers the fields, an audit row the bytes: other bytes with the same
  // fields (re-indented, reordered) would be a second trusted manifest under another
  // SHA-256, voiding every row that names the first.
  if (!committed && text !== serializeBaseManifest({ ...rest, ...(signature ? { signature } : {}) })) {
    throw new IntegrityError(`${key} is not in the form basebackup writes (its bytes were rewritten)`);
  }
  return parsed;
}
