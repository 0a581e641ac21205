import { ManifestError, NotFoundError } from "./errors.ts";
import { verificationPrefix } from "./keys.ts";
import { getBytes, listAll, type ObjectStore } from "./store/object-store.ts";

/**
 * The result of `strongroom verify` (docs/formats.md, Verification). The full result
 * names tables and failing values, which are schema data, so it is stored encrypted;
 * the summary holds outcomes and timings only and is stored in plaintext, for prune
 * ("never delete the newest verified backup") and `status` to read without a key.
 */
export const VERIFICATION_FORMAT = "strongroom.verification/1";
export const VERIFICATION_SUMMARY_FORMAT = "strongroom.verification-summary/1";

export const CHECK_NAMES = [
  "preflight",
  "restore",
  "row-counts",
  "schema",
  "constraints",
  "amcheck",
  "user-sql",
  "integrity",
] as const;
export type CheckName = (typeof CHECK_NAMES)[number];

export interface CheckResult {
  name: CheckName;
  ok: boolean;
  /** Not run: an earlier check it needs failed, or what it compares with is missing. */
  skipped?: boolean;
  detail: string;
  seconds: number;
}

export interface Rto {
  /** Download, decrypt, decompress and pg_restore (integrity: the same without pg_restore). */
  restoreSeconds: number;
  checksSeconds: number;
  totalSeconds: number;
  dumpBytes: number;
  storedBytes: number;
  /** pg_restore's parallel jobs (1: streamed into a single pg_restore; more: staged, then -j). Absent before it was recorded. */
  jobs?: number;
}

export type ScratchIsolation = "separate-user" | "same-user";

/**
 * verified: restored and every check passed. failed: the backup did not restore or a
 * check failed. inconclusive: the scratch server lacks what the backup needs (an
 * extension, a version, a locale), so nothing was proven either way; never failed.
 */
export const VERIFICATION_OUTCOMES = ["verified", "failed", "inconclusive"] as const;
export type VerificationOutcome = (typeof VERIFICATION_OUTCOMES)[number];

/** Something the scratch server lacked for the backup's restore. */
export interface MissingOnScratch {
  kind: "extension" | "extension-version" | "extension-unusable" | "preload" | "locale";
  name: string;
  version?: string;
  detail: string;
}

/**
 * What a verification restored without (`--skip-extension`): extensions no verifier can
 * have, and everything the archive records as depending on them. A backup verified with
 * exclusions is verified: every check passed on everything else.
 */
export interface Exclusions {
  /** The extensions left out, as the backup names them. */
  extensions: string[];
  /** How many archive entries were left out with them (definitions, rows, indexes, comments). */
  objects: number;
  /** Those entries, by type, schema and name: names tables, so in the encrypted result only. */
  entries?: Array<{ desc: string; schema: string; name: string }>;
}

export interface Verification {
  format: typeof VERIFICATION_FORMAT;
  /**
   * restore: restored into a scratch database and checked (what prune and status count as
   * verified); integrity: every object downloaded, decrypted and decompressed and found
   * to be what the manifest recorded, no restore (never counts as verified).
   */
  kind: "restore" | "integrity";
  /** True only when verified. */
  ok: boolean;
  /** Absent in results before it was recorded: verified when ok, else failed. */
  outcome?: VerificationOutcome;
  /** Inconclusive: what the scratch server lacked (names extensions and locales: encrypted only). */
  missing?: MissingOnScratch[];
  /** Verified with exclusions: what the restore left out. */
  excluded?: Exclusions;
  databaseId: string;
  backupId: string;
  at: string;
  /**
   * `auto` (a throwaway cluster of the backup's major) or the server given; absent for
   * integrity. `isolation` (auto only): the cluster's server ran as another OS user than
   * the worker's (`separate-user`), or as the same (`same-user`: the dump's code could
   * read the worker's environment and files).
   */
  scratch?: { kind: "auto" | "url"; serverVersion: string; isolation?: ScratchIsolation };
  checks: CheckResult[];
  rto: Rto;
  /** The machine the RTO was measured on, so the figure travels with its size. */
  worker: { version: string; cores: number; memoryMiB: number };
}

export interface VerificationSummary extends Omit<Verification, "format" | "checks" | "missing"> {
  format: typeof VERIFICATION_SUMMARY_FORMAT;
  checks: Array<Omit<CheckResult, "detail">>;
}

export function summarize(v: Verification): VerificationSummary {
  const { missing: _missing, excluded, ...rest } = v;
  return {
    ...rest,
    ...(excluded ? { excluded: { extensions: excluded.extensions, objects: excluded.objects } } : {}),
    format: VERIFICATION_SUMMARY_FORMAT,
    checks: v.checks.map(({ detail: _detail, ...rest }) => rest),
  };
}

/** Parses a plaintext summary; anything else is a ManifestError naming the key. */
export function parseVerificationSummary(text: string, key: string): VerificationSummary {
  let doc: Partial<VerificationSummary> | undefined;
  try {
    doc = JSON.parse(text) as Partial<VerificationSummary>;
  } catch {
    doc = undefined;
  }
  if (
    !doc ||
    doc.format !== VERIFICATION_SUMMARY_FORMAT ||
    typeof doc.ok !== "boolean" ||
    typeof doc.backupId !== "string" ||
    typeof doc.at !== "string" ||
    !Array.isArray(doc.checks) ||
    (doc.kind !== "restore" && doc.kind !== "integrity")
  ) {
    throw new ManifestError(`${key} is not a ${VERIFICATION_SUMMARY_FORMAT} document`);
  }
  return doc as VerificationSummary;
}

/** A result's outcome; results written before outcomes were recorded were verified or failed. */
export function outcomeOf(v: Pick<Verification, "ok" | "outcome">): VerificationOutcome {
  return v.outcome ?? (v.ok ? "verified" : "failed");
}

/** A successful verification by restore: what prune keeps and status counts; an integrity pass is not one. */
export function isVerifiedRestore(v: VerificationSummary): boolean {
  return v.ok && v.kind === "restore";
}

/**
 * Every verification summary of a database, oldest first per backup. A summary that
 * does not parse is skipped: it never counts as verified (a verified backup is kept by
 * prune, so a forged or damaged one can only keep a backup longer, never delete one).
 */
export async function listVerifications(store: ObjectStore, databaseId: string): Promise<VerificationSummary[]> {
  const out: VerificationSummary[] = [];
  for await (const o of listAll(store, verificationPrefix(databaseId))) {
    if (!o.key.endsWith(".json")) continue;
    try {
      const summary = parseVerificationSummary((await getBytes(store, o.key)).toString("utf8"), o.key);
      if (summary.databaseId === databaseId && o.key.split("/")[2] === summary.backupId) out.push(summary);
    } catch (err) {
      if (!(err instanceof ManifestError || err instanceof NotFoundError)) throw err;
    }
  }
  return out.sort((a, b) => a.at.localeCompare(b.at));
}
