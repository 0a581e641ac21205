import { compareBackups } from "../backup-order.ts";
import { PruneHaltedError } from "../errors.ts";
import { type BackupPoint, type KeepReason, type RetentionPolicy, selectExpired } from "../gfs.ts";
import type { BaseManifest } from "./base-manifest.ts";
import { parseWalFileName, type WalFileKind } from "./wal-file.ts";

/**
 * GFS retention of physical base backups and of the WAL they need (docs/pitr.md,
 * Retention), as a pure function: no store, no clock.
 *
 * - GFS (core/gfs.ts, the logical backups' policy and time zone) runs over the trusted
 *   base backups by their stop time; the newest is always kept.
 * - WAL is kept from the oldest retained base's first segment onwards, on every
 *   timeline: a base needs only WAL from its own start on, so a file of any timeline
 *   whose segment number is below every retained base's first one serves none of them.
 *   Only segments, `.partial` and `.backup` files strictly below that floor go.
 * - A `.history` file is never deleted: it is tiny, and recovery reads every one to
 *   choose its timeline.
 * - No trusted base at all: no WAL is deleted (the archive may be all a team has).
 * - A manifest under `<db>/base/` that no trusted signer signed halts the whole plan:
 *   a store writer must not be able to steer which bases count, and so the floor.
 */

/** What the planner reads of a trusted base backup; the executor gets the same object back. */
export type BaseFacts = Pick<BaseManifest, "baseId" | "stoppedAt"> & {
  walSegments: Pick<BaseManifest["walSegments"], "first">;
};

/** A manifest under `<db>/base/` that does not count: planted, signed by another key, unreadable. */
export interface UntrustedBase {
  key: string;
  /** Why, as a sentence that names the key. */
  problem: string;
}

export interface BaseRetentionInput<B extends BaseFacts> {
  databaseId: string;
  /** The bases whose manifests a trusted signer signed (core/pitr/bases.ts `readBases`). */
  trusted: readonly B[];
  untrusted: readonly UntrustedBase[];
  /** The object names under `<db>/wal/`, as listed (any order; anything may be there). */
  walNames: readonly string[];
  policy: RetentionPolicy;
  now: Date;
}

export interface WalRetentionPlan {
  /**
   * The first segment kept: the oldest retained base's first one. Every WAL file whose
   * segment number (the 16 hex digits after the timeline) is at or above its own is
   * kept, whatever its timeline. Undefined when no base is retained.
   */
  keptFrom: string | undefined;
  /** Set when nothing is deleted for a reason the operator should hear. */
  skipped?: "no trusted base backup";
  /** Oldest first by segment number, then by name: the order they are deleted in. */
  delete: Array<{ name: string; kind: Exclude<WalFileKind, "history"> }>;
  /** How many WAL files stay (every `.history` among them). */
  kept: number;
  /** Names under `<db>/wal/` that are no WAL file name: never deleted. */
  ignored: string[];
}

export interface BaseRetentionPlan<B extends BaseFacts> {
  databaseId: string;
  /** Newest first. */
  keep: Array<{ base: B; reasons: KeepReason[] }>;
  /** Oldest first: the order they are deleted in. */
  expire: B[];
  /** The newest base is older than the daily window: nothing is expired (bases are failing). */
  backupsFailing: boolean;
  wal: WalRetentionPlan;
}

/** The segment number of a WAL file name: fixed-width uppercase hex, so string order is numeric order. */
const segmentNumber = (name: string): string => name.slice(8, 24);

/** WAL retention's order: by segment number, then by name (so by timeline within a number). */
export function compareWalNames(a: string, b: string): number {
  const [x, y] = [segmentNumber(a), segmentNumber(b)];
  return x < y ? -1 : x > y ? 1 : a < b ? -1 : a > b ? 1 : 0;
}

export function planBaseRetention<B extends BaseFacts>(input: BaseRetentionInput<B>): BaseRetentionPlan<B> {
  const { databaseId } = input;
  if (input.untrusted.length > 0) {
    throw new PruneHaltedError(
      `pruning of ${databaseId}'s base backups and WAL stopped, nothing of them deleted: ${input.untrusted
        .map((u) => u.problem)
        .join("; ")}`,
      {
        hint: "someone with write access to the store put or changed these manifests, or they were signed by a key not given with --signer; inspect them, delete what is not yours by hand, then prune again",
      },
    );
  }
  const byId = new Map<string, B>();
  const points: BackupPoint[] = input.trusted.map((base) => {
    const at = new Date(base.stoppedAt);
    if (Number.isNaN(at.getTime())) {
      // A signed manifest with no readable stop time cannot be placed in GFS; guessing
      // could expire the base a recovery needs.
      throw new PruneHaltedError(
        `pruning of ${databaseId}'s base backups stopped: base ${base.baseId} has no readable stop time`,
      );
    }
    byId.set(base.baseId, base);
    return { backupId: base.baseId, at, verified: false };
  });
  const gfs = selectExpired(points, input.policy, input.now);
  const baseOf = (p: BackupPoint) => byId.get(p.backupId) as B;
  const keep = gfs.keep.map((k) => ({ base: baseOf(k.backup), reasons: k.reasons }));
  const expire = [...gfs.expire].sort(compareBackups).map(baseOf);

  // Every retained base's first segment, not just the oldest's: two bases whose stop
  // order and start order disagree (one ran long) must both keep what they need.
  const floor = keep
    .map((k) => k.base.walSegments.first)
    .sort((a, b) => (segmentNumber(a) < segmentNumber(b) ? -1 : segmentNumber(a) > segmentNumber(b) ? 1 : 0))[0];
  const ignored: string[] = [];
  const candidates: WalRetentionPlan["delete"] = [];
  let kept = 0;
  for (const name of input.walNames) {
    let kind: WalFileKind;
    try {
      kind = parseWalFileName(name).kind;
    } catch {
      ignored.push(name);
      continue;
    }
    if (floor !== undefined && kind !== "history" && segmentNumber(name) < segmentNumber(floor)) {
      candidates.push({ name, kind });
    } else {
      kept++;
    }
  }
  candidates.sort((a, b) => compareWalNames(a.name, b.name));
  const wal: WalRetentionPlan =
    floor === undefined
      ? { keptFrom: undefined, skipped: "no trusted base backup", delete: [], kept: kept, ignored }
      : { keptFrom: floor, delete: candidates, kept, ignored };
  return { databaseId, keep, expire, backupsFailing: gfs.backupsFailing, wal };
}
