import { createHash } from "node:crypto";
import type { AuditRow } from "../audit/audit-chain.ts";
import { type AuditLog, readAll } from "../audit/audit-log.ts";
import { NotFoundError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { getBytes, listAll, type ObjectStore } from "../store/object-store.ts";
import { type BaseManifest, basePrefix, readBaseManifest } from "./base-manifest.ts";
import type { UntrustedBase } from "./retention.ts";

/** A base manifest is a few kilobytes; anything this large is not one, and is not read into memory. */
const MAX_MANIFEST_BYTES = 1024 * 1024;

export interface BaseReading {
  /** The base backups whose manifests a trusted signer signed, oldest first (by id). */
  trusted: BaseManifest[];
  /** Every other manifest under `<db>/base/`: planted, signed by another key, unreadable, misplaced. */
  untrusted: UntrustedBase[];
  /** The SHA-256 of each trusted manifest's bytes as read here, by base id: what an audit row names. */
  sha256: Map<string, string>;
  /**
   * Manifests of bases the audit log retired (`retiredBases`) that are still in the store:
   * a prune whose deletes were interrupted. Neither trusted nor untrusted: prune finishes
   * deleting them.
   */
  retired: Array<{ baseId: string; key: string }>;
}

/**
 * Every manifest under `<db>/base/`, each either trusted (signed by one of `signers`,
 * naming the database and base its key does) or untrusted with the reason. Readers that
 * only restore skip the untrusted; prune stops at them (core/pitr/retention.ts).
 */
export async function readBases(
  store: ObjectStore,
  databaseId: string,
  signers: ReadonlySet<string>,
  /** Base id → the manifest SHA-256 the audit log committed (`committedBases`): a base needs no signature then. */
  committed: ReadonlyMap<string, string> = new Map(),
  /** Base id → the manifest SHA-256 a `retain.delete` row retired (`retiredBases`). */
  retiredIds: ReadonlyMap<string, string | undefined> = new Map(),
): Promise<BaseReading> {
  const trusted: BaseManifest[] = [];
  const untrusted: UntrustedBase[] = [];
  const retired: BaseReading["retired"] = [];
  const sha256 = new Map<string, string>();
  const prefix = basePrefix(databaseId);
  for await (const object of listAll(store, prefix)) {
    // `<db>/base/<id>/manifest.json` only: a verification result under `<id>/verifications/` is never one.
    if (!/^[^/]+\/manifest\.json$/.test(object.key.slice(prefix.length))) continue;
    if (object.bytes > MAX_MANIFEST_BYTES) {
      untrusted.push({
        key: object.key,
        problem: `${object.key} is ${object.bytes} bytes, too large for a base manifest`,
      });
      continue;
    }
    let bytes: Buffer;
    try {
      bytes = await getBytes(store, object.key);
    } catch (err) {
      if (err instanceof NotFoundError) continue; // deleted while we listed (a prune running beside us)
      // Left to the SDK's retries, what remains is this object's: a store writer can put a
      // manifest nobody can read (another storage class, a customer key). It does not count,
      // named like any other, rather than stopping every reader of the database's bases.
      untrusted.push({ key: object.key, problem: `${object.key} cannot be read: ${(err as Error).name}` });
      continue;
    }
    const id = object.key.slice(prefix.length, -"/manifest.json".length);
    const digest = createHash("sha256").update(bytes).digest("hex");
    if (retiredIds.has(id) && (retiredIds.get(id) ?? digest) === digest) {
      retired.push({ baseId: id, key: object.key });
      continue;
    }
    try {
      const manifest = readBaseManifest(bytes.toString("utf8"), object.key, signers, committed.get(id));
      trusted.push(manifest);
      sha256.set(manifest.baseId, digest);
    } catch (err) {
      // readBaseManifest's messages name the key already.
      const message = (err as Error).message;
      untrusted.push({
        key: object.key,
        problem: message.includes(object.key) ? message : `${object.key}: ${message}`,
      });
    }
  }
  trusted.sort((a, b) => (a.baseId < b.baseId ? -1 : 1));
  return { trusted, untrusted, sha256, retired };
}

/** The database ids with a base backup manifest in the store (keys only; nothing read or trusted yet). */
export async function databaseIdsWithBases(store: ObjectStore): Promise<string[]> {
  const ids = new Set<string>();
  for await (const object of listAll(store, "")) {
    const m = /^([^/]+)\/base\/[^/]+\/manifest\.json$/.exec(object.key);
    if (m) ids.add(m[1] as string);
  }
  return [...ids].sort();
}

/**
 * The committed base backups of a database whose manifests a trusted signer signed, oldest
 * first. A planted or foreign manifest is skipped with a warning, never restored or counted.
 */
export async function trustedBases(
  store: ObjectStore,
  databaseId: string,
  signers: ReadonlySet<string>,
  log: Logger,
  committed?: ReadonlyMap<string, string>,
): Promise<BaseManifest[]> {
  return (await trustedBaseReading(store, databaseId, signers, log, committed)).trusted;
}

/** The same, with the SHA-256 of each manifest's bytes as read: resolved once, named in audit rows. */
export async function trustedBaseReading(
  store: ObjectStore,
  databaseId: string,
  signers: ReadonlySet<string>,
  log: Logger,
  committed?: ReadonlyMap<string, string>,
): Promise<{ trusted: BaseManifest[]; sha256: Map<string, string> }> {
  const { trusted, untrusted, sha256 } = await readBases(store, databaseId, signers, committed);
  for (const u of untrusted) {
    log.warn("a base backup manifest is not trusted and is skipped", { key: u.key, problem: u.problem });
  }
  return { trusted, sha256 };
}

/**
 * The base backups the audit log commits, by id: the manifest SHA-256 of the first
 * `backup.ok` row of kind "base" for each (a later row cannot re-commit other bytes under
 * the same id), none that a `retain.delete` of kind "base" retired. Only rows the log
 * trusts count (signed by a trusted signer in a store's own log; every row of a table
 * only audit-append writes).
 */
export function committedBases(
  rows: readonly AuditRow[],
  databaseId: string,
  trusts?: (row: AuditRow) => boolean,
): Map<string, string> {
  const committed = new Map<string, string>();
  const retired = new Set<string>();
  for (const row of rows) {
    if (row.databaseId !== databaseId || row.backupId === undefined || (trusts && !trusts(row))) continue;
    const d = row.details ?? {};
    if (d.kind !== "base") continue;
    if (row.event === "backup.ok" && typeof d.manifestSha256 === "string" && !committed.has(row.backupId)) {
      committed.set(row.backupId, d.manifestSha256);
    }
    if (row.event === "retain.delete") retired.add(row.backupId);
  }
  for (const id of retired) committed.delete(id);
  return committed;
}

/**
 * The base backups a `retain.delete` row of kind "base" retired, by id, with the manifest
 * SHA-256 the row names (undefined for a row that names none: any bytes at that id). Only
 * rows the log trusts count, so a store writer can make nothing here; a manifest it puts
 * at a retired id is deleted with the rest, which it could not do itself but loses nothing.
 */
export function retiredBases(
  rows: readonly AuditRow[],
  databaseId: string,
  trusts?: (row: AuditRow) => boolean,
): Map<string, string | undefined> {
  const retired = new Map<string, string | undefined>();
  for (const row of rows) {
    if (row.databaseId !== databaseId || row.backupId === undefined || (trusts && !trusts(row))) continue;
    const d = row.details ?? {};
    if (row.event !== "retain.delete" || d.kind !== "base") continue;
    retired.set(row.backupId, typeof d.manifestSha256 === "string" ? d.manifestSha256 : undefined);
  }
  return retired;
}

/** What a database's audit log says of its base backups: which it commits, which it retired. */
export async function baseRowsIn(
  audit: AuditLog | undefined,
  databaseId: string,
): Promise<{ committed: Map<string, string>; retired: Map<string, string | undefined> }> {
  if (!audit) return { committed: new Map(), retired: new Map() };
  const rows = await readAll(audit);
  const trusts = audit.trusts?.bind(audit);
  return { committed: committedBases(rows, databaseId, trusts), retired: retiredBases(rows, databaseId, trusts) };
}

/** `committedBases` of a database's audit log (empty without one). */
export async function committedBasesIn(audit: AuditLog | undefined, databaseId: string): Promise<Map<string, string>> {
  if (!audit) return new Map();
  return committedBases(await readAll(audit), databaseId, audit.trusts?.bind(audit));
}
