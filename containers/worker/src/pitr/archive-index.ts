import { walPrefix } from "#core/keys.ts";
import type { Logger } from "#core/log.ts";
import type { BaseManifest } from "#core/pitr/base-manifest.ts";
import {
  baseOnPath,
  newestTimeline,
  type TimelineSpan,
  type TimelineSwitch,
  timelinePath,
} from "#core/pitr/timelines.ts";
import { checkWalRecord, decodeWalHeader, WAL_HEADER_MAX_BYTES, type WalRecord } from "#core/pitr/wal-record.ts";
import { listAll, type ObjectStore } from "#core/store/object-store.ts";

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
}): Promise<ArchiveIndex> {
  const prefix = walPrefix(o.databaseId);
  const index: ArchiveIndex = {
    names: new Set(),
    trusted: new Map(),
    untrusted: [],
    histories: new Map(),
  };
  for await (const object of listAll(o.store, prefix)) {
    const name = object.key.slice(prefix.length);
    index.names.add(name);
    if (o.headers === "history" && !name.endsWith(".history")) continue;
    let record: WalRecord;
    try {
      const chunks: Buffer[] = [];
      for await (const c of await o.store.get(object.key, { range: { start: 0, end: WAL_HEADER_MAX_BYTES - 1 } })) {
        chunks.push(c as Buffer);
      }
      record = decodeWalHeader(Buffer.concat(chunks), object.key).record;
      checkWalRecord(record, { databaseId: o.databaseId, name }, o.signers, object.key);
    } catch (err) {
      index.untrusted.push(name);
      o.log.warn("an archived WAL object is not trusted and is not counted", {
        key: object.key,
        problem: (err as Error).message,
      });
      continue;
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
  }
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
