import type { AuditLog } from "../audit/audit-log.ts";
import { NotFoundError } from "../errors.ts";
import { walPrefix } from "../keys.ts";
import type { Logger } from "../log.ts";
import { getBytes, listAll, type ObjectStore } from "../store/object-store.ts";
import { readTrustedHeader } from "./archive-index.ts";
import { type BaseManifest, basePrefix, readBaseManifest } from "./base-manifest.ts";
import { committedBasesIn } from "./bases.ts";
import { compareWalNames } from "./retention.ts";

/**
 * The archive's age (the RPO now) from a handful of requests, for a check every few
 * minutes: the hourly readiness reads every header, which a busy archive makes thousands
 * of GETs. Only the newest files matter, and WAL names sort by timeline, log id and
 * segment, so:
 * 1. the newest trusted base backup (signed by the host, or committed by the audit log)
 *    gives a timeline and log id the newest WAL is at or past;
 * 2. one-key listings walk the timelines, then the log ids (256 segments of 16 MB each),
 *    upward from there while a prefix holds anything;
 * 3. the last such prefix is listed whole (at most a log id's files), and the headers of
 *    its newest few names are read until trusted ones give the newest `pushedAt`.
 * A store writer can add names, never trusted ones: what it plants cannot make the
 * archive look younger. A prefix past the real ones holding only its names is passed over
 * for the one before it (a few times); more than that, or newer base ids that do not
 * count, give no age or an older one, and the alarm fires.
 * Without a trusted base, the whole archive is listed (bounded), as before a first base
 * backup.
 */
export interface WalAge {
  /** The newest trusted file found, and when its host pushed it. */
  newest?: { name: string; pushedAt: string };
  ageMinutes?: number;
  /** Requests made: listings and GETs, for the cost the docs state. */
  requests: number;
}

/** Headers read in one prefix, newest name first, before trying the prefix before it. */
const HEADERS_TO_TRY = 8;
/** Headers read in all, and prefixes tried, before giving up (no age: the alarm fires). */
const MAX_HEADERS = 24;
const MAX_PREFIXES = 4;
/** Newest base manifests tried (newest id first) before falling back to listing everything. */
const BASES_TO_TRY = 4;
/** Listing pages when there is no trusted base to start from (1000 names each). */
const MAX_FULL_PAGES = 100;

const hex8 = (n: number) => n.toString(16).toUpperCase().padStart(8, "0");

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
  const prefix = walPrefix(databaseId);
  /** Whether anything is archived under `<db>/wal/<start>`: one one-key listing. */
  const any = async (start: string) => {
    requests++;
    return (await store.list(`${prefix}${start}`, { pageSize: 1 })).objects.length > 0;
  };
  const namesUnder = async (start: string, maxPages: number) => {
    const names: string[] = [];
    let pageToken: string | undefined;
    let pages = 0;
    do {
      requests++;
      const page = await store.list(`${prefix}${start}`, pageToken === undefined ? {} : { pageToken });
      for (const object of page.objects) names.push(object.key.slice(prefix.length));
      pageToken = page.nextToken;
    } while (pageToken !== undefined && ++pages < maxPages);
    return names;
  };

  const base = await newestTrustedBase(o, () => requests++);
  /** The newest trusted file among `names` (newest name first), reading at most a few headers. */
  let headersLeft = MAX_HEADERS;
  const newestTrusted = async (names: string[]): Promise<WalAge["newest"]> => {
    names.sort(compareWalNames).reverse();
    for (const name of names.slice(0, HEADERS_TO_TRY)) {
      if (headersLeft-- <= 0) return undefined;
      requests++;
      // Files are pushed in name order, so the newest name that counts is the newest push.
      const record = await readTrustedHeader(store, databaseId, name, o.signers, o.log);
      if (record && !Number.isNaN(new Date(record.pushedAt).getTime())) return { name, pushedAt: record.pushedAt };
    }
    return undefined;
  };

  let newest: WalAge["newest"];
  if (!base) {
    newest = await newestTrusted(await namesUnder("", MAX_FULL_PAGES));
  } else {
    const timelines = [base.timeline];
    while (await any(hex8((timelines.at(-1) as number) + 1))) timelines.push((timelines.at(-1) as number) + 1);
    // Newest first; a prefix holding only names no trusted signer signed (planted past
    // the real ones) is passed over for the one before it, a few times at most.
    let prefixesLeft = MAX_PREFIXES;
    search: for (const timeline of timelines.reverse()) {
      const prefixes: string[] = [];
      if (timeline === base.timeline) {
        let logId = Number.parseInt(base.walSegments.first.slice(8, 16), 16);
        prefixes.push(`${hex8(timeline)}${hex8(logId)}`);
        while (await any(`${hex8(timeline)}${hex8(logId + 1)}`)) prefixes.push(`${hex8(timeline)}${hex8(++logId)}`);
      } else {
        // A timeline younger than the newest base: few files, listed whole.
        prefixes.push(hex8(timeline));
      }
      for (const start of prefixes.reverse()) {
        if (prefixesLeft-- <= 0) break search;
        newest = await newestTrusted(await namesUnder(start, MAX_FULL_PAGES));
        if (newest) break search;
      }
    }
  }
  if (!newest) return { requests };
  const ageMinutes = Math.max(0, (o.now.getTime() - new Date(newest.pushedAt).getTime()) / 60_000);
  return { newest, ageMinutes, requests };
}

/** The newest base backup that counts, from the newest few manifest ids; undefined if none does. */
async function newestTrustedBase(
  o: { store: ObjectStore; databaseId: string; signers: ReadonlySet<string>; audit?: AuditLog | undefined },
  count: () => void,
): Promise<BaseManifest | undefined> {
  const prefix = basePrefix(o.databaseId);
  const ids: string[] = [];
  count();
  for await (const object of listAll(o.store, prefix)) {
    const m = /^([^/]+)\/manifest\.json$/.exec(object.key.slice(prefix.length));
    if (m) ids.push(m[1] as string);
  }
  ids.sort().reverse();
  const committed = ids.length > 0 ? await committedBasesIn(o.audit, o.databaseId) : new Map<string, string>();
  for (const id of ids.slice(0, BASES_TO_TRY)) {
    const key = `${prefix}${id}/manifest.json`;
    count();
    try {
      const text = (await getBytes(o.store, key)).toString("utf8");
      return readBaseManifest(text, key, o.signers, committed.get(id));
    } catch (err) {
      if (!(err instanceof NotFoundError)) continue; // planted, unreadable: the next id
    }
  }
  return undefined;
}
