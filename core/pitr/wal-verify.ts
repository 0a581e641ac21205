import type { Logger } from "../log.ts";
import type { ObjectStore } from "../store/object-store.ts";
import { historiesFor, readArchive, recoveryPath, timelinesPastPath } from "./archive-index.ts";
import type { BaseManifest } from "./base-manifest.ts";
import { trustedBases } from "./bases.ts";
import { continuousRun } from "./timelines.ts";

export interface BaseWindow {
  baseId: string;
  timeline: number;
  /** Recoverable from the base's stop to the end of the continuous WAL after it. */
  from: { time: string; lsn: string };
  through: { segment: string };
  /**
   * The timelines the window runs along, oldest first: the base's, then each one a
   * promotion started after it, as far as their signed histories lead ('latest').
   */
  timelines: number[];
  /** Set when the newest timeline does not descend from this base (it was taken on an old primary after a promotion): the window is then the base's own timeline, recovered with --timeline. */
  offLatest?: { latest: number };
  /** The first missing segment after the continuous run, when later ones exist: recovery cannot pass it. */
  gap?: string;
  /** The other timelines the base leads to (recovered with --timeline): how far each runs, and its gap. */
  otherLines?: OtherLine[];
  /** The base's own WAL (start to stop) is all there: it can reach consistency. */
  recoverable: boolean;
  /**
   * Later timelines whose segments are archived but whose `.history` is not: a recovery
   * to 'latest' would stop before them, losing what was written there.
   */
  missingHistory?: number[];
}

export interface OtherLine {
  timeline: number;
  through: string;
  gap?: string;
}

export interface WalVerifyReport {
  databaseId: string;
  bases: BaseWindow[];
  /** Objects under `<db>/wal/` whose header a trusted signer did not sign (planted, or another key's): never counted. */
  untrusted: string[];
  /** The newest archived WAL file, and its age: the data a loss of the server right now would cost. */
  newest?: { name: string; archivedAt: string; ageSeconds: number };
  ok: boolean;
}

/**
 * `strongroom wal verify`: for every signed base backup, whether the archive holds its own
 * WAL (start to stop) and how far the WAL after it runs without a gap, by name, across the
 * timeline switches its signed histories record; and the archive's age. Each file's
 * content is checked when it is fetched, never trusted from here.
 */
export async function verifyWal(o: {
  store: ObjectStore;
  databaseId: string;
  signers: ReadonlySet<string>;
  log: Logger;
  now?: Date;
  /** The trusted bases, when the caller read them already (status): not read twice. */
  bases?: readonly BaseManifest[];
  /** Base id → manifest SHA-256 the audit log committed (bases taken without the host's key). */
  committed?: ReadonlyMap<string, string>;
}): Promise<WalVerifyReport> {
  const bases = o.bases ?? (await trustedBases(o.store, o.databaseId, o.signers, o.log, o.committed));
  // Every file's signed header, read by a ranged GET: a writer's planted object must neither fill a gap nor fake one.
  const archive = await readArchive({ ...o, headers: "all" });
  const windows = bases.map((base): BaseWindow => {
    const ours = (name: string) => archive.trusted.get(name)?.systemIdentifier === base.server.systemIdentifier;
    const histories = historiesFor(archive, base);
    const latest = recoveryPath(base, histories);
    const path = latest.holdsBase ? latest : recoveryPath(base, histories, base.timeline);
    const { last, gap } = continuousRun(
      { timeline: base.timeline, firstSegment: base.walSegments.first, segmentBytes: base.server.walSegmentBytes },
      archive.trusted.keys(),
      ours,
      path.spans,
    );
    const through = last ?? base.walSegments.first;
    // Its own WAL: every segment to its last, which lies on its own timeline or on the one that took that segment over.
    const recoverable = last !== undefined && last.slice(8) >= base.walSegments.last.slice(8);
    const from = path.spans.findIndex((s) => s.timeline === base.timeline);
    // Every other line the base leads to (an old primary that went on archiving after a
    // promotion, an older recovery's timeline): a gap on one is a gap too.
    const others = [base.timeline, ...histories.keys()]
      .filter((t, i, all) => all.indexOf(t) === i && t !== path.timeline)
      .map((t) => recoveryPath(base, histories, t))
      .filter((p) => p.holdsBase)
      .map((p): OtherLine => {
        const run = continuousRun(
          { timeline: base.timeline, firstSegment: base.walSegments.first, segmentBytes: base.server.walSegmentBytes },
          archive.trusted.keys(),
          ours,
          p.spans,
        );
        return {
          timeline: p.timeline,
          through: run.last ?? base.walSegments.first,
          ...(run.gap !== undefined ? { gap: run.gap } : {}),
        };
      });
    const missingHistory = latest.holdsBase ? timelinesPastPath(archive.trusted.keys(), ours, latest) : [];
    return {
      baseId: base.baseId,
      timeline: base.timeline,
      from: { time: base.stoppedAt, lsn: base.stopLsn },
      through: { segment: through },
      timelines: path.spans.slice(Math.max(0, from)).map((s) => s.timeline),
      ...(latest.holdsBase ? {} : { offLatest: { latest: latest.timeline } }),
      ...(gap !== undefined ? { gap } : {}),
      ...(others.length > 0 ? { otherLines: others } : {}),
      ...(missingHistory.length > 0 ? { missingHistory } : {}),
      recoverable,
    };
  });
  const now = o.now ?? new Date();
  const newest = archive.newest;
  return {
    databaseId: o.databaseId,
    bases: windows,
    untrusted: archive.untrusted,
    ...(newest
      ? {
          newest: {
            name: newest.name,
            archivedAt: newest.at.toISOString(),
            ageSeconds: Math.max(0, Math.round((now.getTime() - newest.at.getTime()) / 1000)),
          },
        }
      : {}),
    ok:
      windows.length > 0 &&
      windows.every(
        (w) =>
          w.recoverable &&
          w.gap === undefined &&
          w.missingHistory === undefined &&
          (w.otherLines ?? []).every((l) => !l.gap),
      ),
  };
}
