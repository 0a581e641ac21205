import { IntegrityError } from "../errors.ts";
import { formatLsn, parseLsn, segmentName } from "./lsn.ts";

/**
 * Timelines as PostgreSQL keeps them (src/backend/access/transam/timeline.c): each
 * promotion starts a new timeline and archives `TTTTTTTT.history`, one line per ancestor,
 * `<parent timeline>\t<LSN where it ended>\t<reason>`. Recovery follows one timeline's
 * history: WAL of the oldest ancestor up to its switch point, then the next, and so on.
 */

/** One line of a history file: `timeline` ended (was switched away from) at `switchLsn`. */
export interface TimelineSwitch {
  timeline: number;
  switchLsn: string;
}

/** A stretch of a recovery's path: WAL of `timeline` from `begin` (its parent's switch point), to `end` if it ended. */
export interface TimelineSpan {
  timeline: number;
  begin: bigint;
  end?: bigint;
}

/**
 * The ancestors a `TTTTTTTT.history` file lists, parsed as PostgreSQL's
 * readTimeLineHistory() does: blank lines and `#` comments skipped, each line a parent
 * timeline and its switch point, in increasing order, each below the file's own timeline.
 */
export function parseTimelineHistory(text: string, timeline: number): TimelineSwitch[] {
  const out: TimelineSwitch[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trimStart();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^(\d+)\s+([0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8})/.exec(line);
    const parent = m ? Number(m[1]) : Number.NaN;
    const previous = out.at(-1)?.timeline ?? 0;
    if (!m || !(parent > previous) || parent >= timeline) {
      throw new IntegrityError(`line ${JSON.stringify(raw.slice(0, 80))} is not a timeline history PostgreSQL writes`, {
        hint: `timeline ${timeline}'s history lists its ancestors, one "<timeline>\\t<LSN>\\t<reason>" line each, in increasing order`,
      });
    }
    out.push({ timeline: parent, switchLsn: formatLsn(parseLsn(m[2] as string)) });
  }
  return out;
}

/**
 * The timeline recovery_target_timeline = 'latest' chooses from `from`: PostgreSQL's
 * findNewestTimeLine() probes `from + 1`, `from + 2`, … for a history file and stops at
 * the first missing one.
 */
export function newestTimeline(from: number, hasHistory: (timeline: number) => boolean): number {
  let newest = from;
  while (hasHistory(newest + 1)) newest++;
  return newest;
}

/**
 * The spans a recovery to `target` walks, oldest first: the ancestors its history lists,
 * then `target` itself, open-ended. A timeline without a history (1, or one whose file is
 * not in the archive) is a path of itself alone, as PostgreSQL reads it.
 */
export function timelinePath(target: number, history: readonly TimelineSwitch[] | undefined): TimelineSpan[] {
  const spans: TimelineSpan[] = [];
  let begin = 0n;
  for (const h of history ?? []) {
    const end = parseLsn(h.switchLsn);
    spans.push({ timeline: h.timeline, begin, end });
    begin = end;
  }
  spans.push({ timeline: target, begin });
  return spans;
}

/**
 * Whether a base backup taken on `timeline` between `startLsn` and `stopLsn` can be
 * recovered along `path`: its timeline is on it, and did not end before the backup did
 * (PostgreSQL refuses "requested timeline is not a child of this server's history").
 */
export function baseOnPath(path: readonly TimelineSpan[], base: { timeline: number; stopLsn: string }): boolean {
  const span = path.find((s) => s.timeline === base.timeline);
  return span !== undefined && (span.end === undefined || parseLsn(base.stopLsn) <= span.end);
}

/** The segment number of a segment's name (its 16 hex digits after the timeline). */
export function segmentNumber(name: string, segmentBytes: number): bigint {
  const perId = 0x1_0000_0000n / BigInt(segmentBytes);
  return BigInt(`0x${name.slice(8, 16)}`) * perId + BigInt(`0x${name.slice(16, 24)}`);
}

/**
 * The timeline whose file recovery reads for segment `segno`: the newest span that began
 * at or before it (XLogFileReadAnyTLI). The segment a switch happened in is read from the
 * new timeline, whose copy of it holds the old timeline's WAL up to the switch.
 */
export function timelineForSegment(path: readonly TimelineSpan[], segno: bigint, segmentBytes: number): number {
  const size = BigInt(segmentBytes);
  for (let i = path.length - 1; i >= 0; i--) {
    const span = path[i] as TimelineSpan;
    if (span.begin / size <= segno) return span.timeline;
  }
  return (path[0] as TimelineSpan).timeline;
}

export function timelineHex(timeline: number): string {
  return timeline.toString(16).toUpperCase().padStart(8, "0");
}

/**
 * The continuous run of a base backup's WAL along a timeline path: from its first
 * segment, every next one that `has` (each from the timeline recovery reads it from),
 * and the first missing one when a later one on the path exists (recovery cannot pass
 * it). `last` is undefined when not even the first is there; `next` is the first segment
 * not there. Without a path, the base's own timeline alone.
 */
export function continuousRun(
  base: { timeline: number; firstSegment: string; segmentBytes: number },
  names: Iterable<string>,
  has: (name: string) => boolean,
  path: readonly TimelineSpan[] = [{ timeline: base.timeline, begin: 0n }],
): { last: string | undefined; next: string; gap: string | undefined } {
  const size = BigInt(base.segmentBytes);
  const nameOf = (segno: bigint) =>
    segmentName(timelineForSegment(path, segno, base.segmentBytes), segno * size, base.segmentBytes);
  let segno = segmentNumber(base.firstSegment, base.segmentBytes);
  let last: string | undefined;
  for (;;) {
    const name = nameOf(segno);
    if (!has(name)) break;
    last = name;
    segno++;
  }
  const next = nameOf(segno);
  // Only a segment recovery along this path would read counts: another timeline's is no gap's proof.
  const later = [...names].some((n) => {
    if (!/^[0-9A-F]{24}$/.test(n) || !has(n)) return false;
    const s = segmentNumber(n, base.segmentBytes);
    return s > segno && nameOf(s) === n;
  });
  return { last, next, gap: later ? next : undefined };
}
