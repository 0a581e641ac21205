import type { AuditLog } from "../audit/audit-log.ts";
import { walPrefix } from "../keys.ts";
import type { Logger } from "../log.ts";
import { getBytes, type ObjectStore } from "../store/object-store.ts";
import { readTrustedHeader } from "./archive-index.ts";
import { type BaseManifest, basePrefix, readBaseManifest } from "./base-manifest.ts";
import { committedBasesIn } from "./bases.ts";
import { compareWalNames } from "./retention.ts";

/**
 * The archive's age (the RPO now) from a few requests, for a check every five minutes:
 * the hourly readiness reads every header, which a busy archive makes thousands of GETs.
 * WAL names sort by timeline, log id (4 GB of WAL) and segment, so:
 * 1. the newest trusted base backup (signed by the host, or committed by the audit log)
 *    gives the cluster, and the timeline and log id its WAL starts at;
 * 2. one-key listings find the timelines from there on and, per timeline, its newest log
 *    id by a galloping search (so a log id more costs about two listings per doubling);
 * 3. per timeline (the newest few), the newest log id is listed whole and the headers of
 *    its newest names read until one that counts: signed, and by the base's cluster;
 * 4. the age is the newest `pushedAt` over those timelines (an older line still archiving,
 *    a restored server's short-lived one: the newest push wins).
 * Every walk is bounded. What a store writer plants cannot make the archive look younger:
 * its names are read and not counted, and prefixes of nothing but its names are passed
 * over or, past the bounds, give no age, which the caller reports as not known (the
 * alarm fires). Not seen here: a segment missing below the newest (the archiver retries a
 * failing file while pushing later ones); the hourly run's WalGaps alarm says that.
 */
export interface WalAge {
  /** The newest trusted file found, and when its host pushed it. */
  newest?: { name: string; pushedAt: string };
  ageMinutes?: number;
  /** Requests made: listings and GETs (and the audit read, when it was needed). */
  requests: number;
}

/** Headers read in one log id, newest name first, before trying the one before it. */
const HEADERS_PER_PREFIX = 8;
/** All the listings and reads one database's check may make: past it, no age. */
const MAX_REQUESTS = 64;
/** Timelines looked into, newest first. */
const MAX_TIMELINES = 4;
/** Newest base manifests tried (newest id first); bigger than this is no manifest. */
const BASES_TO_TRY = 4;
const MAX_MANIFEST_BYTES = 1024 * 1024;

const hex8 = (n: number) => n.toString(16).toUpperCase().padStart(8, "0");

class OutOfRequests extends Error {}

export async function newestWalAge(o: {
  store: ObjectStore;
  databaseId: string;
  signers: ReadonlySet<string>;
  audit?: AuditLog | undefined;
  now: Date;
  log: Logger;
}): Promise<WalAge> {
  const { store, databaseId } = o;
  let requests = 0;
  const spend = () => {
    if (++requests > MAX_REQUESTS) throw new OutOfRequests();
  };
  const prefix = walPrefix(databaseId);
  /** The first name archived under `<db>/wal/<start>`, if any: one one-key listing. */
  const first = async (start: string): Promise<string | undefined> => {
    spend();
    return (await store.list(`${prefix}${start}`, { pageSize: 1 })).objects[0]?.key.slice(prefix.length);
  };
  /** The largest n ≥ from for which `has(n)`, assuming `has(from)`: galloping, then bisecting. */
  const highest = async (from: number, has: (n: number) => Promise<boolean>): Promise<number> => {
    let low = from;
    let step = 1;
    while (await has(low + step)) {
      low += step;
      step *= 2;
    }
    let high = low + step; // has(high) is false
    while (high - low > 1) {
      const mid = Math.floor((low + high) / 2);
      if (await has(mid)) low = mid;
      else high = mid;
    }
    return low;
  };

  try {
    const base = await newestTrustedBase(o, spend);
    if (!base) return { requests };
    const cluster = base.server.systemIdentifier;
    const newestTimeline = await highest(base.timeline, async (t) => (await first(hex8(t))) !== undefined);
    let newest: WalAge["newest"];
    // The newest few, and always the base's own: planted timelines past the real ones cannot push it out.
    const timelines = new Set<number>([base.timeline]);
    for (let t = newestTimeline; t > base.timeline && t > newestTimeline - MAX_TIMELINES; t--) timelines.add(t);
    for (const t of [...timelines].sort((a, b) => b - a)) {
      // Where the timeline's segments start: the base's log id on its own, else its first name's.
      const start =
        t === base.timeline ? Number.parseInt(base.walSegments.first.slice(8, 16), 16) : await firstLogId(t, first);
      if (start === undefined) continue;
      const has = async (x: number) => (await first(`${hex8(t)}${hex8(x)}`)) !== undefined;
      let logId = await highest(start, has);
      // The newest log id whose names count; one of nothing but planted names is passed over.
      for (let tries = 0; tries < 3 && logId >= start; tries++, logId--) {
        const found = await newestIn(`${hex8(t)}${hex8(logId)}`);
        if (found) {
          if (!newest || new Date(found.pushedAt) > new Date(newest.pushedAt)) newest = found;
          break;
        }
      }
    }
    if (!newest) return { requests };
    const ageMinutes = Math.max(0, (o.now.getTime() - new Date(newest.pushedAt).getTime()) / 60_000);
    return { newest, ageMinutes, requests };

    /** The newest file under a log id that counts (the base's cluster, a trusted signer). */
    async function newestIn(start: string): Promise<WalAge["newest"]> {
      const names: string[] = [];
      let pageToken: string | undefined;
      do {
        spend();
        const page = await store.list(`${prefix}${start}`, pageToken === undefined ? {} : { pageToken });
        for (const object of page.objects) names.push(object.key.slice(prefix.length));
        pageToken = page.nextToken;
      } while (pageToken !== undefined);
      names.sort(compareWalNames).reverse();
      for (const name of names.slice(0, HEADERS_PER_PREFIX)) {
        spend();
        const record = await readTrustedHeader(store, databaseId, name, o.signers, o.log);
        if (!record || Number.isNaN(new Date(record.pushedAt).getTime())) continue;
        // Another cluster archiving under the same id (a rebuilt server) is not this one's age.
        if (record.systemIdentifier !== undefined && record.systemIdentifier !== cluster) continue;
        return { name, pushedAt: record.pushedAt };
      }
      return undefined;
    }
  } catch (err) {
    if (err instanceof OutOfRequests) {
      o.log.warn("the archive's age was not found within the requests allowed", { databaseId, requests });
      return { requests };
    }
    throw err;
  }
}

/** A timeline's first log id, from its first segment's name (its `.history` sorts after the segments). */
async function firstLogId(
  timeline: number,
  first: (start: string) => Promise<string | undefined>,
): Promise<number | undefined> {
  const name = await first(`${hex8(timeline)}0`);
  return name && /^[0-9A-F]{24}/.test(name) ? Number.parseInt(name.slice(8, 16), 16) : undefined;
}

/**
 * The newest base backup that counts, from the newest few manifest ids: signed first; the
 * audit log is read only when none of them is signed (a base the flow committed).
 */
async function newestTrustedBase(
  o: { store: ObjectStore; databaseId: string; signers: ReadonlySet<string>; audit?: AuditLog | undefined },
  spend: () => void,
): Promise<BaseManifest | undefined> {
  const prefix = basePrefix(o.databaseId);
  const manifests: Array<{ id: string; bytes: number }> = [];
  let pageToken: string | undefined;
  do {
    spend();
    const page = await o.store.list(prefix, pageToken === undefined ? {} : { pageToken });
    for (const object of page.objects) {
      const m = /^([^/]+)\/manifest\.json$/.exec(object.key.slice(prefix.length));
      if (m) manifests.push({ id: m[1] as string, bytes: object.bytes });
    }
    pageToken = page.nextToken;
  } while (pageToken !== undefined);
  const newest = manifests
    .filter((m) => m.bytes <= MAX_MANIFEST_BYTES)
    .sort((a, b) => (a.id < b.id ? 1 : -1))
    .slice(0, BASES_TO_TRY);
  const texts = new Map<string, string>();
  const read = (id: string, committed?: string) => {
    try {
      return readBaseManifest(texts.get(id) as string, `${prefix}${id}/manifest.json`, o.signers, committed);
    } catch {
      return undefined; // planted, another key's, committed by no row: the next id
    }
  };
  // Newest first, one GET each, until one is signed: usually the first.
  for (const { id } of newest) {
    spend();
    try {
      texts.set(id, (await getBytes(o.store, `${prefix}${id}/manifest.json`)).toString("utf8"));
    } catch {
      continue; // gone since the listing, or not servable: not a base
    }
    const signed = read(id);
    if (signed) return signed;
  }
  if (!o.audit || texts.size === 0) return undefined;
  spend();
  const committed = await committedBasesIn(o.audit, o.databaseId);
  for (const id of texts.keys()) {
    const base = read(id, committed.get(id));
    if (base) return base;
  }
  return undefined;
}
