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
 * - A file below the floor archived at or after the oldest kept base's start (by the
 *   store's listing) is kept: it cannot be WAL that base skipped, so it is another line's,
 *   perhaps a base's still being taken on a newer timeline (no manifest yet). Without a
 *   time for a file, it may go (a pure plan over names, as the tests give it).
 * - No trusted base at all: no WAL is deleted (the archive may be all a team has).
 * - A manifest under `<db>/base/` that no trusted signer signed halts the whole plan:
 *   a store writer must not be able to steer which bases count, and so the floor.
 */

/** What the planner reads of a trusted base backup; the executor gets the same object back. */
export type BaseFacts = Pick<BaseManifest, "baseId" | "startedAt" | "stoppedAt"> & {
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
  /** When the store says each was archived (its listing's last-modified time), by name. */
  walArchivedAt?: ReadonlyMap<string, Date>;
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
  /**
   * Of those, files below the floor kept because they were archived after the oldest
   * kept base started: WAL of another line (a newer timeline, whose segment numbers may
   * start lower), perhaps of a base still being taken on it, which has no manifest yet.
   */
  archivedSinceOldestStart: number;
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

/** How many untrusted manifests a halt names; the rest are counted. */
const MAX_NAMED_PROBLEMS = 5;

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
    // The first few only: the message travels in a flow's state (256 KiB) and its alarm,
    // and a store writer decides how many there are.
    const named = input.untrusted.slice(0, MAX_NAMED_PROBLEMS).map((u) => u.problem);
    const more = input.untrusted.length - named.length;
    throw new PruneHaltedError(
      `pruning of ${databaseId}'s base backups and WAL stopped, nothing of them deleted: ${named.join("; ")}${
        more > 0 ? `; and ${more} more manifests that do not count` : ""
      }`,
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
  // A file below the floor was archived before the oldest kept base started, unless it is
  // WAL of another line: then it stays until a base that needs it has a manifest, or a
  // later prune finds it older than every kept base.
  const starts = keep.map((k) => new Date(k.base.startedAt).getTime()).filter((t) => !Number.isNaN(t));
  const oldestStart = starts.length === keep.length && starts.length > 0 ? Math.min(...starts) : undefined;
  const ignored: string[] = [];
  const candidates: WalRetentionPlan["delete"] = [];
  let kept = 0;
  let archivedSinceOldestStart = 0;
  for (const name of input.walNames) {
    let kind: WalFileKind;
    try {
      kind = parseWalFileName(name).kind;
    } catch {
      ignored.push(name);
      continue;
    }
    if (floor !== undefined && kind !== "history" && segmentNumber(name) < segmentNumber(floor)) {
      const archivedAt = input.walArchivedAt?.get(name)?.getTime();
      // An unreadable start keeps everything below the floor (oldestStart undefined): never guess.
      if (oldestStart === undefined || (archivedAt !== undefined && archivedAt >= oldestStart)) {
        kept++;
        archivedSinceOldestStart++;
      } else {
        candidates.push({ name, kind });
      }
    } else {
      kept++;
    }
  }
  candidates.sort((a, b) => compareWalNames(a.name, b.name));
  const wal: WalRetentionPlan =
    floor === undefined
      ? { keptFrom: undefined, skipped: "no trusted base backup", delete: [], kept, archivedSinceOldestStart, ignored }
      : { keptFrom: floor, delete: candidates, kept, archivedSinceOldestStart, ignored };
  return { databaseId, keep, expire, backupsFailing: gfs.backupsFailing, wal };
}
