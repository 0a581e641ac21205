import { createHash } from "node:crypto";
import { IntegrityError } from "../errors.ts";

/**
 * The append-only, hash-chained audit log (docs/formats.md, Audit row). Each row's hash covers the
 * previous row's hash and the canonical JSON of the row, so editing, deleting or
 * reordering any row breaks the chain at that row. This module is pure: no I/O, no clock.
 */
export const AUDIT_EVENTS = [
  "backup.start",
  "backup.ok",
  "backup.fail",
  "retain.delete",
  "verify.start",
  "verify.ok",
  "verify.fail",
  "verify.inconclusive",
  "verify.alarm",
  "restore.start",
  "restore.ok",
  "restore.fail",
  "probe.ok",
  "probe.fail",
  "gc.delete",
] as const;
export type AuditEvent = (typeof AUDIT_EVENTS)[number];

/** What a caller appends; the log adds seq, prevHash and hash. */
export interface AuditEntry {
  at: string;
  event: AuditEvent;
  actor: string;
  databaseId?: string;
  backupId?: string;
  details?: Record<string, unknown>;
}

export interface AuditRow extends AuditEntry {
  /** Zero-padded so that string order is sequence order. */
  seq: string;
  prevHash: string;
  hash: string;
  /**
   * An Ed25519 signature over `hash` by the host that wrote the row (local mode with a
   * signing key; core/audit/row-signature.ts). Outside the hash: it says who wrote the row,
   * the chain says where it stands.
   */
  signature?: { signer: string; value: string };
}

export const SEQ_DIGITS = 12;
const SEQ_PATTERN = /^\d{12}$/;
export const GENESIS_HASH = "0".repeat(64);

export function formatSeq(n: number): string {
  return String(n).padStart(SEQ_DIGITS, "0");
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * A stored row as read back (a store object's JSON, a DynamoDB item): its fields must have
 * their types, else IntegrityError. The chain's own checks (seq pattern, hashes, links)
 * are verifyChain's: a row here may still be one that does not verify.
 */
export function parseAuditRow(value: unknown, where: string): AuditRow {
  const bad = (what: string) =>
    new IntegrityError(`audit row ${where} is malformed: ${what}`, {
      hint: "rows are append-only; someone with write access to the log altered one",
    });
  if (!isObject(value)) throw bad("not an object");
  for (const field of ["seq", "at", "actor", "prevHash", "hash"] as const) {
    if (typeof value[field] !== "string") throw bad(`${field} is not a string`);
  }
  if (!(AUDIT_EVENTS as readonly unknown[]).includes(value.event))
    throw bad(`unknown event ${JSON.stringify(value.event)}`);
  for (const field of ["databaseId", "backupId"] as const) {
    if (value[field] !== undefined && typeof value[field] !== "string") throw bad(`${field} is not a string`);
  }
  if (value.details !== undefined && !isObject(value.details)) throw bad("details is not an object");
  const sig = value.signature;
  if (sig !== undefined && !(isObject(sig) && typeof sig.signer === "string" && typeof sig.value === "string")) {
    throw bad("signature is not {signer, value}");
  }
  return value as unknown as AuditRow;
}

/** Parses a row stored as JSON text. */
export function parseAuditRowText(text: string, where: string): AuditRow {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new IntegrityError(`audit row ${where} is not JSON`, {
      hint: "rows are append-only; someone with write access to the log altered one",
    });
  }
  return parseAuditRow(value, where);
}

/** JSON with object keys sorted at every depth and no whitespace: one text per value. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}

/** sha256(prevHash || canonical JSON of the row without its hash and signature). */
export function rowHash(row: Omit<AuditRow, "hash">): string {
  const { hash: _ignored, signature: _signature, ...rest } = row as AuditRow;
  return createHash("sha256").update(row.prevHash).update(canonicalJson(rest)).digest("hex");
}

/** The row that follows `head` (or starts the chain when there is none). */
export function nextRow(head: AuditRow | undefined, entry: AuditEntry): AuditRow {
  const seq = formatSeq(head ? Number(head.seq) + 1 : 1);
  const prevHash = head ? head.hash : GENESIS_HASH;
  const row: Omit<AuditRow, "hash"> = {
    seq,
    at: entry.at,
    event: entry.event,
    actor: entry.actor,
    ...(entry.databaseId !== undefined ? { databaseId: entry.databaseId } : {}),
    ...(entry.backupId !== undefined ? { backupId: entry.backupId } : {}),
    details: entry.details ?? {},
    prevHash,
  };
  return { ...row, hash: rowHash(row) };
}

export type ChainProblem = "edited" | "missing" | "reordered" | "broken-link" | "malformed";

export interface ChainReport {
  ok: boolean;
  rows: number;
  headSeq?: string;
  headHash?: string;
  /** The first row at which the chain fails, and why. */
  firstBad?: { seq: string; problem: ChainProblem; detail: string };
}

/**
 * Walks rows in storage order (ascending seq as stored) and names the first bad one:
 *  - edited: the row's content no longer hashes to its hash;
 *  - missing: a sequence number is skipped (a row was deleted);
 *  - reordered: rows are stored out of sequence order, or a row links to a later one;
 *  - broken-link: the row's prevHash is not its predecessor's hash;
 *  - malformed: its seq is not 12 digits (a non-number would otherwise disable the gap check).
 */
export function verifyChain(rows: readonly AuditRow[]): ChainReport {
  let prev: AuditRow | undefined;
  for (const [index, row] of rows.entries()) {
    const expectedSeq = prev ? Number(prev.seq) + 1 : 1;
    const seq = Number(row.seq);
    const bad = (problem: ChainProblem, detail: string): ChainReport => ({
      ok: false,
      rows: rows.length,
      firstBad: { seq: row.seq, problem, detail },
    });
    // The row this one links to, if it is stored after it: rows were moved.
    const linksForward = () => rows.slice(index + 1).some((r) => r.hash === row.prevHash);
    if (typeof row.seq !== "string" || !SEQ_PATTERN.test(row.seq)) {
      return bad("malformed", `its seq ${JSON.stringify(row.seq)} is not ${SEQ_DIGITS} digits`);
    }
    if (rowHash(row) !== row.hash) return bad("edited", "its content does not match its hash");
    if (seq < expectedSeq) return bad("reordered", `sequence ${row.seq} is stored after ${prev?.seq}`);
    if (seq > expectedSeq) {
      if (linksForward()) return bad("reordered", "the row it follows is stored after it");
      return bad("missing", `row ${formatSeq(expectedSeq)} is missing before it`);
    }
    if (row.prevHash !== (prev ? prev.hash : GENESIS_HASH)) {
      if (linksForward()) return bad("reordered", "the row it follows is stored after it");
      return bad("broken-link", "its prevHash is not the previous row's hash");
    }
    prev = row;
  }
  return { ok: true, rows: rows.length, ...(prev ? { headSeq: prev.seq, headHash: prev.hash } : {}) };
}
