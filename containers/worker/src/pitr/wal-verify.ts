import { walPrefix } from "#core/keys.ts";
import type { Logger } from "#core/log.ts";
import { continuousRun } from "#core/pitr/lsn.ts";
import { checkWalRecord, decodeWalHeader, WAL_HEADER_MAX_BYTES } from "#core/pitr/wal-record.ts";
import { listAll, type ObjectStore } from "#core/store/object-store.ts";
import { trustedBases } from "./bases.ts";

export interface BaseWindow {
  baseId: string;
  timeline: number;
  /** Recoverable from the base's stop to the end of the continuous WAL after it. */
  from: { time: string; lsn: string };
  through: { segment: string };
  /** The first missing segment after the continuous run, when later ones exist: recovery cannot pass it. */
  gap?: string;
  /** The base's own WAL (start to stop) is all there: it can reach consistency. */
  recoverable: boolean;
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
 * WAL (start to stop) and how far the WAL after it runs without a gap, by name; and the
 * archive's age. Names only: each file's signature and content are checked when it is
 * fetched, never trusted from here.
 */
export async function verifyWal(o: {
  store: ObjectStore;
  databaseId: string;
  signers: ReadonlySet<string>;
  log: Logger;
  now?: Date;
}): Promise<WalVerifyReport> {
  const bases = await trustedBases(o.store, o.databaseId, o.signers, o.log);
  const prefix = walPrefix(o.databaseId);
  // Each file's signed header, read by a ranged GET: a name alone proves nothing, and a
  // writer's planted object must neither fill a gap nor fake one.
  const clusterOf = new Map<string, string | undefined>();
  const untrusted: string[] = [];
  let newest: { name: string; at: Date } | undefined;
  for await (const object of listAll(o.store, prefix)) {
    const name = object.key.slice(prefix.length);
    try {
      const chunks: Buffer[] = [];
      for await (const c of await o.store.get(object.key, { range: { start: 0, end: WAL_HEADER_MAX_BYTES - 1 } })) {
        chunks.push(c as Buffer);
      }
      const { record } = decodeWalHeader(Buffer.concat(chunks), object.key);
      checkWalRecord(record, { databaseId: o.databaseId, name }, o.signers, object.key);
      clusterOf.set(name, record.systemIdentifier);
    } catch (err) {
      untrusted.push(name);
      o.log.warn("an archived WAL object is not trusted and is not counted", {
        key: object.key,
        problem: (err as Error).message,
      });
      continue;
    }
    if (!newest || object.lastModified > newest.at) newest = { name, at: object.lastModified };
  }
  const windows = bases.map((base): BaseWindow => {
    const ours = (name: string) => clusterOf.has(name) && clusterOf.get(name) === base.server.systemIdentifier;
    const { last, gap } = continuousRun(
      { timeline: base.timeline, firstSegment: base.walSegments.first, segmentBytes: base.server.walSegmentBytes },
      clusterOf.keys(),
      ours,
    );
    const through = last ?? base.walSegments.first;
    const recoverable = last !== undefined && last >= base.walSegments.last;
    return {
      baseId: base.baseId,
      timeline: base.timeline,
      from: { time: base.stoppedAt, lsn: base.stopLsn },
      through: { segment: through },
      ...(gap !== undefined ? { gap } : {}),
      recoverable,
    };
  });
  const now = o.now ?? new Date();
  return {
    databaseId: o.databaseId,
    bases: windows,
    untrusted,
    ...(newest
      ? {
          newest: {
            name: newest.name,
            archivedAt: newest.at.toISOString(),
            ageSeconds: Math.max(0, Math.round((now.getTime() - newest.at.getTime()) / 1000)),
          },
        }
      : {}),
    ok: windows.length > 0 && windows.every((w) => w.recoverable && w.gap === undefined),
  };
}
