import { backupIdTime } from "./keys.ts";

/**
 * The one total order on backups: by time, then by backup id. Everything that says
 * "newest" (GFS, prune, `latest`, status, and the tests' oracles) sorts with this, so
 * two backups stamped with the same instant can never be ranked differently by two
 * pieces of code. `at` defaults to the time the backup id encodes.
 */
export interface Ordered {
  backupId: string;
  at?: Date;
}

/** Oldest first; negative when `a` is older than `b`. */
export function compareBackups(a: Ordered, b: Ordered): number {
  const at = (a.at ?? backupIdTime(a.backupId)).getTime() - (b.at ?? backupIdTime(b.backupId)).getTime();
  if (at !== 0) return at;
  return a.backupId < b.backupId ? -1 : a.backupId > b.backupId ? 1 : 0;
}

/** Newest first. */
export function compareNewestFirst(a: Ordered, b: Ordered): number {
  return compareBackups(b, a);
}
