import type { AuditLog } from "./audit/audit-log.ts";
import type { CatalogTable } from "./catalog/catalog.ts";
import { backupIdTime } from "./keys.ts";
import { readLedgers } from "./ledger.ts";
import type { ObjectStore } from "./store/object-store.ts";
import { outcomeOf, type VerificationOutcome } from "./verification.ts";

/**
 * `strongroom status`: per database, how recent its newest backup and its newest
 * successful verification are, and whether that is good enough (the readiness gate).
 * The assessment is pure; `readStatus` reads what it needs from a store.
 */
export interface StatusLimits {
  /** The newest successful verification may be at most this old. */
  maxVerifyAgeMs: number;
  /** The newest backup may be at most this old. */
  maxBackupAgeMs: number;
}

export const DEFAULT_LIMITS: StatusLimits = { maxVerifyAgeMs: 8 * 86_400_000, maxBackupAgeMs: 26 * 3_600_000 };

/**
 * One day of the record: a successful verification, a failed one, only inconclusive ones
 * (the verifier lacked something: neither verified nor failed), a backup only, or nothing.
 */
export type DayMark = "verified" | "verify-failed" | "verify-inconclusive" | "backup" | "none";

export interface DatabaseStatus {
  databaseId: string;
  ready: boolean;
  /** Why not ready, one line each. */
  problems: string[];
  newestBackup?: { backupId: string; at: string; ageHours: number };
  /** The backup of the newest successful verification, and when that verification ran. */
  newestVerified?: {
    backupId: string;
    verifiedAt: string;
    ageHours: number;
    /** Verified with exclusions: the extensions its restore left out (and what depends on them). */
    excluded?: string[];
  };
  lastVerification?: {
    backupId: string;
    at: string;
    ok: boolean;
    outcome: VerificationOutcome;
    /** Inconclusive: what the scratch server lacked, where the record says. */
    missing?: string[];
    /** Verified with exclusions: the extensions its restore left out. */
    excluded?: string[];
    restoreSeconds: number;
    failedChecks: string[];
  };
  /** The last 14 days (UTC), oldest first. */
  days: Array<{ date: string; mark: DayMark }>;
}

/**
 * One verification as status reads it: from the audit log's verify.ok / verify.fail rows
 * for the backup's committed manifest (core/ledger.ts), or from the deployed catalog.
 * Never from summaries in the store, which anyone who can write the store can put there.
 */
export interface VerificationRecord {
  backupId: string;
  kind: "restore" | "integrity";
  ok: boolean;
  /** @default verified when ok, else failed */
  outcome?: VerificationOutcome;
  missing?: string[];
  /** Verified with exclusions: the extensions left out. */
  excluded?: string[];
  at: string;
  restoreSeconds?: number;
  failedChecks: string[];
}

const hours = (ms: number) => Math.round((ms / 3_600_000) * 10) / 10;

function age(ms: number): string {
  if (ms >= 2 * 86_400_000) return `${Math.floor(ms / 86_400_000)}d`;
  return ms >= 3_600_000 ? `${Math.floor(ms / 3_600_000)}h` : `${Math.floor(ms / 60_000)}m`;
}

export function assessStatus(
  databaseId: string,
  backupIds: readonly string[],
  verifications: readonly VerificationRecord[],
  now: Date,
  limits: StatusLimits = DEFAULT_LIMITS,
  /** What else makes the database not ready: manifests that do not count, a broken chain. */
  ledgerProblems: readonly string[] = [],
): DatabaseStatus {
  const problems: string[] = [...ledgerProblems];
  const backups = backupIds.map((id) => ({ id, at: backupIdTime(id) })).sort((a, b) => a.at.getTime() - b.at.getTime());
  const newest = backups.at(-1);
  // Verifications by restore only: an integrity pass proves the bytes, not that they restore.
  const mine = verifications
    .filter((v) => v.kind === "restore" && backupIds.includes(v.backupId))
    .sort((a, b) => a.at.localeCompare(b.at));
  const last = mine.at(-1);
  const lastOk = mine.filter((v) => v.ok).at(-1);

  if (!newest) problems.push("no backup");
  else if (now.getTime() - newest.at.getTime() > limits.maxBackupAgeMs) {
    problems.push(
      `newest backup is ${age(now.getTime() - newest.at.getTime())} old (limit ${age(limits.maxBackupAgeMs)})`,
    );
  }
  if (!lastOk) problems.push("no successful verification");
  else if (now.getTime() - Date.parse(lastOk.at) > limits.maxVerifyAgeMs) {
    problems.push(
      `last successful verification was ${age(now.getTime() - Date.parse(lastOk.at))} ago (limit ${age(limits.maxVerifyAgeMs)})`,
    );
  }
  if (last && outcomeOf(last) === "inconclusive") {
    problems.push(
      `last verification (of ${last.backupId}) was inconclusive, neither verified nor failed: the scratch server lacked ${last.missing?.length ? last.missing.join(", ") : "what the backup needs (its result says what)"}`,
    );
  } else if (last && !last.ok) {
    const failed = last.failedChecks;
    problems.push(
      `last verification (of ${last.backupId}) failed${failed.length ? `: ${failed.join(", ")}` : " (its result in the store says which check)"}`,
    );
  }

  const days: DatabaseStatus["days"] = [];
  for (let d = 13; d >= 0; d--) {
    const date = new Date(now.getTime() - d * 86_400_000).toISOString().slice(0, 10);
    const that = mine.filter((v) => v.at.slice(0, 10) === date);
    const mark: DayMark = that.some((v) => v.ok)
      ? "verified"
      : that.some((v) => outcomeOf(v) === "failed")
        ? "verify-failed"
        : that.length > 0
          ? "verify-inconclusive"
          : backups.some((b) => b.at.toISOString().slice(0, 10) === date)
            ? "backup"
            : "none";
    days.push({ date, mark });
  }

  return {
    databaseId,
    ready: problems.length === 0,
    problems,
    ...(newest
      ? {
          newestBackup: {
            backupId: newest.id,
            at: newest.at.toISOString(),
            ageHours: hours(now.getTime() - newest.at.getTime()),
          },
        }
      : {}),
    ...(lastOk
      ? {
          newestVerified: {
            backupId: lastOk.backupId,
            verifiedAt: lastOk.at,
            ageHours: hours(now.getTime() - Date.parse(lastOk.at)),
            ...(lastOk.excluded?.length ? { excluded: lastOk.excluded } : {}),
          },
        }
      : {}),
    ...(last
      ? {
          lastVerification: {
            backupId: last.backupId,
            at: last.at,
            ok: last.ok,
            outcome: outcomeOf(last),
            ...(last.missing ? { missing: last.missing } : {}),
            ...(last.excluded?.length ? { excluded: last.excluded } : {}),
            restoreSeconds: last.restoreSeconds ?? 0,
            failedChecks: last.failedChecks,
          },
        }
      : {}),
    days,
  };
}

/**
 * The same from the deployed catalog table, without listing the bucket: each item's
 * backup id, and its newest verification by restore (`lastVerifiedAt`, `lastVerifyOk`,
 * `verifyRestoreSeconds`), which is all readiness needs. Which checks failed is in the
 * store only.
 */
export async function readStatusFromCatalog(
  catalog: CatalogTable,
  options: { databaseId?: string; now: Date; limits?: StatusLimits },
): Promise<DatabaseStatus[]> {
  const ids = options.databaseId ? [options.databaseId] : await catalog.databaseIds();
  const out: DatabaseStatus[] = [];
  for (const id of ids) {
    const items = await catalog.list(id);
    const verifications: VerificationRecord[] = items.flatMap((item) =>
      item.lastVerifiedAt === undefined
        ? []
        : [
            {
              kind: "restore" as const,
              ok: item.lastVerifyOk === true,
              ...(item.lastVerifyOutcome ? { outcome: item.lastVerifyOutcome } : {}),
              ...(item.lastVerifyExcluded?.length ? { excluded: item.lastVerifyExcluded } : {}),
              backupId: item.backupId,
              at: item.lastVerifiedAt,
              restoreSeconds: item.verifyRestoreSeconds ?? 0,
              failedChecks: [],
            },
          ],
    );
    out.push(
      assessStatus(
        id,
        items.map((i) => i.backupId),
        verifications,
        options.now,
        options.limits,
      ),
    );
  }
  return out;
}

/**
 * Every database in the store (or the one asked for), assessed from its ledger: only
 * committed backups and audited verifications count, and every manifest that does not
 * count is a problem (someone wrote into the store).
 */
export async function readStatus(
  store: ObjectStore,
  options: {
    databaseId?: string;
    now: Date;
    limits?: StatusLimits;
    audit?: (databaseId: string) => AuditLog;
    trustStore?: boolean;
  },
): Promise<DatabaseStatus[]> {
  const ledgers = await readLedgers(store, {
    now: options.now,
    ...(options.databaseId !== undefined ? { databaseId: options.databaseId } : {}),
    ...(options.audit ? { audit: options.audit } : {}),
    trustStore: options.trustStore === true,
  });
  return ledgers.map((ledger) =>
    assessStatus(
      ledger.databaseId,
      ledger.backups.map((b) => b.backupId),
      ledger.backups.flatMap((b) => b.verifications),
      options.now,
      options.limits,
      ledger.problems.map((p) => p.message),
    ),
  );
}
