import { type AuditLog, readAll } from "../audit/audit-log.ts";
import type { Logger } from "../log.ts";
import type { ObjectStore } from "../store/object-store.ts";
import type { VerificationOutcome } from "../verification.ts";
import { committedBases, trustedBaseReading } from "./bases.ts";
import { verifyWal } from "./wal-verify.ts";

/** `status`'s defaults: a base backup a week old plus a day; the archive's age is not gated unless asked. */
export const DEFAULT_PITR_LIMITS: Pick<PitrLimits, "maxBaseAgeMs"> = { maxBaseAgeMs: 8 * 86_400_000 };

export interface PitrLimits {
  /** Not ready when the newest archived WAL is older (the RPO now). Unset: not gated (an idle server archives nothing). */
  maxWalAgeMs?: number;
  /** Not ready when the newest base backup is older. */
  maxBaseAgeMs: number;
  /** Not ready when the newest successful `verify --pitr` is older. */
  maxVerifyAgeMs: number;
}

/** A database's point-in-time recovery, as `status` shows it. */
export interface PitrStatus {
  ready: boolean;
  problems: string[];
  bases: number;
  newestBase?: { baseId: string; stoppedAt: string; ageHours: number };
  /** Recoverable from the newest base's stop to the end of its continuous WAL. */
  window?: { from: string; through: string; timelines: number[]; gap?: string };
  newestWal?: { name: string; archivedAt: string; ageSeconds: number };
  /** From trusted verify.* audit rows with kind "pitr" naming a trusted base's manifest. */
  lastVerification?: {
    baseId: string;
    at: string;
    outcome: VerificationOutcome;
    failedChecks: string[];
    point?: string;
  };
  newestVerified?: { baseId: string; at: string; ageHours: number };
  /** Gaps that stop a recovery: the newest base's own WAL missing, then the first gap on each line after it. */
  gaps: number;
  /** Objects under `<db>/wal/` no trusted signer signed. */
  untrusted: number;
}

/** What the deployed readiness emits for a database's archive; no status (nothing archived, no base) is all zeros and no age. */
export function pitrFacts(status: PitrStatus | undefined): { walAgeMinutes?: number; gaps: number; untrusted: number } {
  if (!status) return { gaps: 0, untrusted: 0 };
  return {
    ...(status.newestWal ? { walAgeMinutes: Math.round((status.newestWal.ageSeconds / 60) * 10) / 10 } : {}),
    gaps: status.gaps,
    untrusted: status.untrusted,
  };
}

const OUTCOME: Partial<Record<string, VerificationOutcome>> = {
  "verify.ok": "verified",
  "verify.fail": "failed",
  "verify.inconclusive": "inconclusive",
};

const hours = (ms: number) => Math.round((ms / 3_600_000) * 10) / 10;
const age = (ms: number) =>
  ms >= 2 * 86_400_000
    ? `${Math.floor(ms / 86_400_000)}d`
    : ms >= 3_600_000
      ? `${Math.floor(ms / 3_600_000)}h`
      : ms >= 60_000
        ? `${Math.floor(ms / 60_000)}m`
        : `${Math.floor(ms / 1000)}s`;

/**
 * The point-in-time recovery of one database: its signed base backups, the window the
 * archived WAL gives the newest, the archive's age, and its `verify --pitr` results as
 * the audit log records them (never the summaries in the store, which a store writer can
 * put there). Undefined for a database without base backups.
 */
export async function readPitrStatus(o: {
  store: ObjectStore;
  databaseId: string;
  signers: ReadonlySet<string>;
  audit?: AuditLog;
  now: Date;
  limits: PitrLimits;
  log: Logger;
}): Promise<PitrStatus | undefined> {
  const rows = o.audit ? await readAll(o.audit) : [];
  // Signed by the host, or committed by the audit log (a base taken where no host key is).
  const committed = committedBases(rows, o.databaseId, o.audit?.trusts?.bind(o.audit));
  const { trusted: bases, sha256 } = await trustedBaseReading(o.store, o.databaseId, o.signers, o.log, committed);
  const report = await verifyWal({ ...o, now: o.now, bases });
  if (bases.length === 0 && report.untrusted.length === 0 && report.newest === undefined) return undefined;
  const problems: string[] = [];
  const now = o.now.getTime();
  const newest = bases.at(-1);
  const window = report.bases.find((b) => b.baseId === newest?.baseId);
  if (!newest) problems.push("no base backup signed by a trusted signer");
  else if (now - Date.parse(newest.stoppedAt) > o.limits.maxBaseAgeMs) {
    problems.push(
      `newest base backup is ${age(now - Date.parse(newest.stoppedAt))} old (limit ${age(o.limits.maxBaseAgeMs)})`,
    );
  }
  if (window && !window.recoverable) problems.push(`base ${window.baseId}'s own WAL is not all archived`);
  if (window?.gap) problems.push(`the archived WAL has a gap at ${window.gap}: no recovery past it`);
  // An older base's window matters too: the points between it and the next base are reached only from it.
  const olderGaps = new Set<string>();
  for (const older of report.bases) {
    if (older.baseId === window?.baseId) continue;
    if (!older.recoverable) problems.push(`base ${older.baseId}'s own WAL is not all archived`);
    if (older.gap && older.gap !== window?.gap && !olderGaps.has(older.gap)) {
      olderGaps.add(older.gap);
      problems.push(`the archived WAL has a gap at ${older.gap}: no recovery from base ${older.baseId} past it`);
    }
  }
  // Objects no trusted signer signed: planted (one at the next segment's name stops archiving), or another key's.
  if (report.untrusted.length > 0) {
    problems.push(
      `${report.untrusted.length} object(s) under ${o.databaseId}/wal/ no trusted signer signed (${report.untrusted.slice(0, 3).join(", ")}): planted, or archived with another key`,
    );
  }
  for (const t of window?.missingHistory ?? []) {
    problems.push(
      `timeline ${t}'s WAL is archived but no trusted ${t.toString(16).toUpperCase().padStart(8, "0")}.history is: a recovery to the latest point stops before it (a deleted history file?)`,
    );
  }
  for (const line of window?.otherLines ?? []) {
    if (line.gap) problems.push(`timeline ${line.timeline}'s archived WAL has a gap at ${line.gap}`);
  }
  if (o.limits.maxWalAgeMs !== undefined) {
    if (!report.newest) problems.push("no WAL archived");
    else if (report.newest.ageSeconds * 1000 > o.limits.maxWalAgeMs) {
      problems.push(
        `newest archived WAL is ${age(report.newest.ageSeconds * 1000)} old (limit ${age(o.limits.maxWalAgeMs)})`,
      );
    }
  }

  // verify --pitr's rows: trusted, of this database, naming the manifest of a base that is still signed and here.
  const shaOf = new Map([...sha256].map(([baseId, sha]) => [sha, baseId]));
  const verifications = rows
    .filter((r) => r.databaseId === o.databaseId && (o.audit?.trusts ? o.audit.trusts(r) : true))
    .flatMap((r) => {
      const outcome = OUTCOME[r.event];
      const d = r.details ?? {};
      const baseId = typeof d.manifestSha256 === "string" ? shaOf.get(d.manifestSha256) : undefined;
      if (!outcome || d.kind !== "pitr" || baseId === undefined || baseId !== r.backupId) return [];
      const failedChecks = Array.isArray(d.failedChecks) ? d.failedChecks.filter((c) => typeof c === "string") : [];
      return [
        {
          baseId,
          at: r.at,
          outcome,
          failedChecks: failedChecks as string[],
          ...(typeof d.point === "string" ? { point: d.point } : {}),
        },
      ];
    });
  const last = verifications.at(-1);
  const lastOk = verifications.filter((v) => v.outcome === "verified").at(-1);
  if (!lastOk) problems.push("no successful verify --pitr");
  else if (now - Date.parse(lastOk.at) > o.limits.maxVerifyAgeMs) {
    problems.push(
      `last successful verify --pitr was ${age(now - Date.parse(lastOk.at))} ago (limit ${age(o.limits.maxVerifyAgeMs)})`,
    );
  }
  // A verification of an older base proves that base: once the newest has had a verify
  // interval to be verified, it must have been (a store writer can hide it from one plan).
  if (
    newest &&
    lastOk &&
    lastOk.baseId !== newest.baseId &&
    now - Date.parse(newest.stoppedAt) > o.limits.maxVerifyAgeMs &&
    !verifications.some((v) => v.baseId === newest.baseId && v.outcome === "verified")
  ) {
    problems.push(
      `the newest base backup ${newest.baseId} has not been verified by verify --pitr (the last verified is ${lastOk.baseId})`,
    );
  }
  if (last && last.outcome !== "verified") {
    problems.push(
      `last verify --pitr (of ${last.baseId}) ${last.outcome === "failed" ? `failed${last.failedChecks.length ? `: ${last.failedChecks.join(", ")}` : ""}` : "was inconclusive"}`,
    );
  }
  return {
    ready: problems.length === 0,
    problems,
    bases: bases.length,
    gaps:
      olderGaps.size +
      report.bases.filter((b) => b.baseId !== window?.baseId && !b.recoverable).length +
      (window && !window.recoverable ? 1 : 0) +
      (window?.gap ? 1 : 0) +
      (window?.missingHistory?.length ?? 0) +
      (window?.otherLines ?? []).filter((l) => l.gap !== undefined).length,
    untrusted: report.untrusted.length,
    ...(newest
      ? {
          newestBase: {
            baseId: newest.baseId,
            stoppedAt: newest.stoppedAt,
            ageHours: hours(now - Date.parse(newest.stoppedAt)),
          },
        }
      : {}),
    ...(window
      ? {
          window: {
            from: window.from.time,
            through: window.through.segment,
            timelines: window.timelines,
            ...(window.gap ? { gap: window.gap } : {}),
          },
        }
      : {}),
    ...(report.newest ? { newestWal: report.newest } : {}),
    ...(last ? { lastVerification: last } : {}),
    ...(lastOk
      ? { newestVerified: { baseId: lastOk.baseId, at: lastOk.at, ageHours: hours(now - Date.parse(lastOk.at)) } }
      : {}),
  };
}
