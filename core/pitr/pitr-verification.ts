import { NotFoundError } from "../errors.ts";
import { verificationKeys } from "../keys.ts";
import { getBytes, listAll, type ObjectStore } from "../store/object-store.ts";
import type { ScratchIsolation, VerificationOutcome } from "../verification.ts";

/**
 * The result of `strongroom verify --pitr` (docs/formats.md, PITR verification): a base
 * backup and its archived WAL recovered into a scratch cluster to a point in the window,
 * and checked there. Stored beside the base, `<db>/base/<baseId>/verifications/`: the
 * full result encrypted to the base's recipients (its details may name tables), the
 * summary without details in plaintext, for status to read without a key. Pruning a base
 * takes its verifications with it (gc removes what a pruned base left).
 */
export const PITR_VERIFICATION_FORMAT = "strongroom.pitr-verification/1";
export const PITR_VERIFICATION_SUMMARY_FORMAT = "strongroom.pitr-verification-summary/1";

export const PITR_CHECK_NAMES = ["wal", "base", "recovery", "amcheck", "user-sql"] as const;
export type PitrCheckName = (typeof PITR_CHECK_NAMES)[number];

export interface PitrCheckResult {
  name: PitrCheckName;
  ok: boolean;
  skipped?: boolean;
  detail: string;
  seconds: number;
}

export interface PitrVerification {
  format: typeof PITR_VERIFICATION_FORMAT;
  kind: "pitr";
  /** True only when verified. */
  ok: boolean;
  outcome: VerificationOutcome;
  databaseId: string;
  baseId: string;
  /** The SHA-256 of the base's manifest as read: the verification counts for exactly that base. */
  manifestSha256: string;
  at: string;
  /**
   * Where it recovered to: a time or an LSN, given or chosen at random in the window, or
   * the end of the archive when the window after the base is shorter than a segment.
   */
  point: { kind: "time" | "lsn" | "latest"; value?: string; chosen: "given" | "random" | "end" };
  /** What PostgreSQL's log says it reached: its "recovery stopping" line, the last commit replayed, the timeline it promoted to. */
  reached?: { stopped?: string; lsn?: string; lastCommit?: string; timeline: number };
  /** The timelines recovered along, oldest first. */
  timelines: number[];
  /** The WAL replayed: its first and last segment, how many files and their plaintext bytes. */
  wal: { first: string; last: string; files: number; bytes: number };
  scratch?: { serverVersion: string; isolation: ScratchIsolation };
  checks: PitrCheckResult[];
  /** RTO: the base unpacked, the WAL fetched, the replay to promotion, the checks. */
  rto: {
    baseSeconds: number;
    walSeconds: number;
    replaySeconds: number;
    checksSeconds: number;
    totalSeconds: number;
    baseBytes: number;
    walBytes: number;
  };
  worker: { version: string; cores: number; memoryMiB: number };
}

export interface PitrVerificationSummary extends Omit<PitrVerification, "format" | "checks"> {
  format: typeof PITR_VERIFICATION_SUMMARY_FORMAT;
  checks: Array<Omit<PitrCheckResult, "detail">>;
}

/** The summary: outcomes, points and timings, no check details (which may name tables). */
export function summarizePitr(v: PitrVerification): PitrVerificationSummary {
  return {
    ...v,
    format: PITR_VERIFICATION_SUMMARY_FORMAT,
    checks: v.checks.map(({ detail: _detail, ...rest }) => rest),
  };
}

/** `<db>/base/<baseId>/verifications/<time>-<random>.json` (summary) and `.json.age` (full). */
export function pitrVerificationKeys(databaseId: string, baseId: string, at: Date): { full: string; summary: string } {
  const keys = verificationKeys(databaseId, baseId, at);
  const from = `${databaseId}/verifications/${baseId}/`;
  const to = `${databaseId}/base/${baseId}/verifications/`;
  return { full: keys.full.replace(from, to), summary: keys.summary.replace(from, to) };
}

/** A summary is a few kilobytes; anything larger is not one and is not read. */
const MAX_SUMMARY_BYTES = 256 * 1024;

/**
 * The plaintext summaries of a base backup's verifications, oldest first: those that
 * parse and name that database and base. A store writer can put one here, so nothing
 * decides on them alone: readers take only the timings of one that agrees with an
 * outcome and a manifest they know from elsewhere (the flow's path, the audit log).
 */
export async function listPitrSummaries(
  store: ObjectStore,
  databaseId: string,
  baseId: string,
): Promise<PitrVerificationSummary[]> {
  const prefix = pitrVerificationKeys(databaseId, baseId, new Date(0)).summary.replace(/[^/]+$/, "");
  const out: PitrVerificationSummary[] = [];
  for await (const o of listAll(store, prefix)) {
    // `<time>-<random>.json` right under verifications/, as verify --pitr names them: nothing deeper.
    if (!/^[^/]+\.json$/.test(o.key.slice(prefix.length)) || o.bytes > MAX_SUMMARY_BYTES) continue;
    let parsed: Partial<PitrVerificationSummary>;
    try {
      parsed = JSON.parse((await getBytes(store, o.key)).toString("utf8")) as Partial<PitrVerificationSummary>;
    } catch (err) {
      if (err instanceof SyntaxError || err instanceof NotFoundError) continue;
      throw err;
    }
    if (
      parsed?.format === PITR_VERIFICATION_SUMMARY_FORMAT &&
      parsed.databaseId === databaseId &&
      parsed.baseId === baseId &&
      typeof parsed.at === "string" &&
      typeof parsed.manifestSha256 === "string" &&
      parsed.rto !== undefined &&
      [parsed.rto.baseSeconds, parsed.rto.walSeconds, parsed.rto.replaySeconds, parsed.rto.totalSeconds].every(
        (n) => typeof n === "number" && Number.isFinite(n) && n >= 0,
      )
    ) {
      out.push(parsed as PitrVerificationSummary);
    }
  }
  return out.sort((a, b) => a.at.localeCompare(b.at));
}
