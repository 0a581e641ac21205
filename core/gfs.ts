import { compareNewestFirst } from "./backup-order.ts";
import { InvalidPolicyError } from "./errors.ts";

/**
 * Grandfather-father-son retention (docs/architecture.md §6), as a pure function.
 *
 * Buckets are calendar days, ISO weeks and months in the policy's time zone; a window
 * of N covers the N most recent buckets counting back from `now` (this day, week or
 * month included). The newest backup in each bucket of a window is kept. Never
 * selected: the newest backup, the newest verified backup, anything dated after `now`,
 * and anything at all while backups are failing (the newest is older than the daily
 * window): then everything is kept and the caller should alarm instead.
 */
export interface RetentionPolicy {
  daily: number;
  weekly: number;
  monthly: number;
  /** IANA time zone for bucket boundaries. @default "UTC" */
  timeZone: string;
}

export const DEFAULT_POLICY: RetentionPolicy = { daily: 7, weekly: 4, monthly: 12, timeZone: "UTC" };

export interface BackupPoint {
  backupId: string;
  at: Date;
  verified: boolean;
}

export type KeepReason = "newest" | "newest-verified" | "daily" | "weekly" | "monthly" | "future" | "backups-failing";

export interface RetentionPlan {
  keep: Array<{ backup: BackupPoint; reasons: KeepReason[] }>;
  expire: BackupPoint[];
  /** True when the newest backup is older than the daily window: nothing is expired. */
  backupsFailing: boolean;
}

const DAY_MS = 86_400_000;
const formatters = new Map<string, Intl.DateTimeFormat>();

/** The calendar date of `at` in `timeZone`, as days since 1970-01-01 (a plain day number). */
function localDay(at: Date, timeZone: string): number {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" });
    formatters.set(timeZone, f);
  }
  const parts = Object.fromEntries(f.formatToParts(at).map((p) => [p.type, p.value]));
  return Math.floor(Date.UTC(Number(parts.year), Number(parts.month) - 1, Number(parts.day)) / DAY_MS);
}

/** Bucket index of a day number: days, ISO weeks (Monday start), months. */
function bucketOf(day: number, kind: "daily" | "weekly" | "monthly"): number {
  if (kind === "daily") return day;
  if (kind === "weekly") return Math.floor((day + 3) / 7); // 1970-01-01 was a Thursday; +3 makes weeks start on Monday
  const d = new Date(day * DAY_MS);
  return d.getUTCFullYear() * 12 + d.getUTCMonth();
}

export function validatePolicy(policy: RetentionPolicy): void {
  for (const k of ["daily", "weekly", "monthly"] as const) {
    if (!Number.isInteger(policy[k]) || policy[k] < 0)
      throw new InvalidPolicyError(`retention ${k} must be a whole number >= 0, got ${JSON.stringify(policy[k])}`);
  }
  if (policy.daily < 1)
    throw new InvalidPolicyError("retention daily must be at least 1: it is also the failing-backups window");
  try {
    new Intl.DateTimeFormat("en", { timeZone: policy.timeZone });
  } catch (err) {
    throw new InvalidPolicyError(`unknown time zone ${JSON.stringify(policy.timeZone)}`, {
      cause: err,
      hint: "use an IANA zone name such as UTC or Europe/Berlin",
    });
  }
}

export function selectExpired(backups: readonly BackupPoint[], policy: RetentionPolicy, now: Date): RetentionPlan {
  validatePolicy(policy);
  const sorted = [...backups].sort(compareNewestFirst);
  const reasons = new Map<BackupPoint, Set<KeepReason>>();
  const keep = (b: BackupPoint, why: KeepReason) => {
    const set = reasons.get(b) ?? new Set<KeepReason>();
    set.add(why);
    reasons.set(b, set);
  };

  const newest = sorted.find((b) => b.at.getTime() <= now.getTime()) ?? sorted[0];
  const backupsFailing = newest === undefined || now.getTime() - newest.at.getTime() > policy.daily * DAY_MS;
  for (const b of sorted) {
    if (backupsFailing) keep(b, "backups-failing");
    else if (b.at.getTime() > now.getTime()) keep(b, "future");
  }
  if (newest) keep(newest, "newest");
  const newestVerified = sorted.find((b) => b.verified);
  if (newestVerified) keep(newestVerified, "newest-verified");

  const today = localDay(now, policy.timeZone);
  for (const kind of ["daily", "weekly", "monthly"] as const) {
    const current = bucketOf(today, kind);
    const taken = new Set<number>();
    for (const b of sorted) {
      if (b.at.getTime() > now.getTime()) continue;
      const bucket = bucketOf(localDay(b.at, policy.timeZone), kind);
      if (bucket > current - policy[kind] && !taken.has(bucket)) {
        taken.add(bucket);
        keep(b, kind);
      }
    }
  }

  return {
    keep: sorted.filter((b) => reasons.has(b)).map((b) => ({ backup: b, reasons: [...(reasons.get(b) ?? [])] })),
    expire: sorted.filter((b) => !reasons.has(b)),
    backupsFailing,
  };
}
