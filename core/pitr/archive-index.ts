import { walPrefix } from "../keys.ts";
import type { Logger } from "../log.ts";
import { listAll, type ObjectStore } from "../store/object-store.ts";
import type { BaseManifest } from "./base-manifest.ts";
import { baseOnPath, newestTimeline, type TimelineSpan, type TimelineSwitch, timelinePath } from "./timelines.ts";
import { checkWalRecord, decodeWalHeader, WAL_HEADER_MAX_BYTES, type WalRecord } from "./wal-record.ts";

/** What a database's WAL archive holds, as far as its listing and the signed headers read say. */
export interface ArchiveIndex {
  /** Every object name under `<db>/wal/`. */
  names: Set<string>;
  /** The names whose signed header was read and a trusted signer signed, with the record. */
  trusted: Map<string, WalRecord>;
  /** Names whose header was read and is not trusted (planted, another key's, unreadable): never counted. */
  untrusted: string[];
  /** Each timeline's ancestry, from trusted `.history` headers only, by the cluster that archived it. */
  histories: Map<string, Map<number, TimelineSwitch[]>>;
  /**
   * The newest trusted object by its signed `pushedAt` (never the store's modification
   * time, which a writer refreshes by putting the same bytes again): the archive's age.
   */
  newest?: { name: string; at: Date };
}

/** Header reads in flight at once. */
const HEADER_READS_AT_ONCE = 16;

/** `fn` over `items`, at most `limit` at a time; results in the items' order. */
async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * The signed header of one archived WAL file (one ranged GET), if a trusted signer signed
 * it for this database and name; undefined, with a warning, otherwise.
 */
export async function readTrustedHeader(
  store: ObjectStore,
  databaseId: string,
  name: string,
  signers: ReadonlySet<string>,
  log: Logger,
): Promise<WalRecord | undefined> {
  const key = `${walPrefix(databaseId)}${name}`;
  try {
    const chunks: Buffer[] = [];
    for await (const c of await store.get(key, { range: { start: 0, end: WAL_HEADER_MAX_BYTES - 1 } })) {
      chunks.push(c as Buffer);
    }
    const record = decodeWalHeader(Buffer.concat(chunks), key).record;
    checkWalRecord(record, { databaseId, name }, signers, key);
    return record;
  } catch (err) {
    log.warn("an archived WAL object is not trusted and is not counted", { key, problem: (err as Error).message });
    return undefined;
  }
}

/**
 * Lists `<db>/wal/` and reads the signed header (a ranged GET) of every object
 * (`headers: "all"`, for `wal verify`) or of the `.history` files only (`"history"`, for a
 * restore, which checks each segment when it replays it). A name alone proves nothing: a
 * store writer's planted history must not steer which timeline a recovery follows.
 */
export async function readArchive(o: {
  store: ObjectStore;
  databaseId: string;
  signers: ReadonlySet<string>;
  headers: "all" | "history";
  log: Logger;
  /** Header GETs in flight at once. @default 16 */
  headerReadsAtOnce?: number;
}): Promise<ArchiveIndex> {
  const prefix = walPrefix(o.databaseId);
  const index: ArchiveIndex = {
    names: new Set(),
    trusted: new Map(),
    untrusted: [],
    histories: new Map(),
  };
  const toRead: string[] = [];
  for await (const object of listAll(o.store, prefix)) {
    const name = object.key.slice(prefix.length);
    index.names.add(name);
    if (o.headers === "all" || name.endsWith(".history")) toRead.push(name);
  }
  // A header is one ranged GET of a few hundred bytes: latency, not bandwidth, so several at
  // once (an archive of a week holds thousands). Results are taken in listing order, so
  // the index does not depend on which GET answered first.
  const records = await mapBounded(toRead, o.headerReadsAtOnce ?? HEADER_READS_AT_ONCE, (name) =>
    readTrustedHeader(o.store, o.databaseId, name, o.signers, o.log),
  );
  toRead.forEach((name, i) => {
    const record = records[i];
    if (record === undefined) {
      index.untrusted.push(name);
      return;
    }
    index.trusted.set(name, record);
    if (record.kind === "history" && record.history !== undefined) {
      // Another cluster's history (a rebuilt server archiving under the same id) must not steer this one's path.
      const cluster = record.systemIdentifier ?? "";
      const mine = index.histories.get(cluster) ?? new Map<number, TimelineSwitch[]>();
      mine.set(record.timeline, record.history);
      index.histories.set(cluster, mine);
    }
    const pushedAt = new Date(record.pushedAt);
    if (!Number.isNaN(pushedAt.getTime()) && (!index.newest || pushedAt > index.newest.at)) {
      index.newest = { name, at: pushedAt };
    }
  });
  return index;
}

/** The timeline a recovery from `base` follows, and the spans of its path. */
export interface RecoveryPath {
  /** recovery_target_timeline: the one asked for, or the newest one PostgreSQL's 'latest' reaches. */
  timeline: number;
  spans: TimelineSpan[];
  /** Whether the base lies on the path (else PostgreSQL refuses: not a child of the server's history). */
  holdsBase: boolean;
}

/**
 * Timelines past a recovery path's newest on which the base's cluster archived trusted
 * segments, though no trusted history leads there: the `.history` file that starts one is
 * missing (deleted, or never archived). PostgreSQL's 'latest' follows histories only, so
 * a recovery would stop at the path's end and silently lose everything written on them.
 */
export function timelinesPastPath(
  names: Iterable<string>,
  ours: (name: string) => boolean,
  route: Pick<RecoveryPath, "timeline">,
): number[] {
  const found = new Set<number>();
  for (const name of names) {
    if (!/^[0-9A-F]{24}$/.test(name) || !ours(name)) continue;
    const timeline = Number.parseInt(name.slice(0, 8), 16);
    if (timeline > route.timeline) found.add(timeline);
  }
  return [...found].sort((a, b) => a - b);
}

/** The timeline histories the cluster that took `base` archived. */
export function historiesFor(
  archive: Pick<ArchiveIndex, "histories">,
  base: Pick<BaseManifest, "server">,
): ReadonlyMap<number, TimelineSwitch[]> {
  return archive.histories.get(base.server.systemIdentifier) ?? new Map();
}

export function recoveryPath(
  base: Pick<BaseManifest, "timeline" | "stopLsn">,
  histories: ReadonlyMap<number, TimelineSwitch[]>,
  requested?: number,
): RecoveryPath {
  const timeline = requested ?? newestTimeline(base.timeline, (t) => histories.has(t));
  const spans = timelinePath(timeline, timeline === 1 ? [] : histories.get(timeline));
  return { timeline, spans, holdsBase: baseOnPath(spans, base) };
}
