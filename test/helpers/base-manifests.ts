import { parseSigningKey } from "#core/audit/row-signature.ts";
import { BASE_FORMAT, type BaseManifest, baseKeys, signBaseManifest } from "#core/pitr/base-manifest.ts";

const hex8 = (n: number) => n.toString(16).toUpperCase().padStart(8, "0");

/** The name of segment `n` (counted from 0) on `timeline`, with 16 MB segments (256 to a log id). */
export const segmentName = (timeline: number, n: number): string =>
  `${hex8(timeline)}${hex8(Math.floor(n / 256))}${hex8(n % 256)}`;

/** An LSN inside segment `n`, with 16 MB segments. */
export const lsnIn = (n: number): string =>
  `${Math.floor(n / 256)
    .toString(16)
    .toUpperCase()}/${((n % 256) * 0x1000000 + 0x28).toString(16).toUpperCase()}`;

/**
 * A base backup manifest signed with `secret` (a signing key's), as `basebackup` writes it,
 * whose WAL is the one segment `segment` on `timeline` and whose object is a stand-in:
 * for what reads manifests (retention, trust), never for a recovery.
 */
export function signedBaseManifest(o: {
  secret: string;
  databaseId?: string;
  baseId: string;
  timeline?: number;
  segment: number;
  startedAt: string;
  stoppedAt?: string;
}): BaseManifest {
  const databaseId = o.databaseId ?? "shop";
  const timeline = o.timeline ?? 1;
  return signBaseManifest(
    {
      format: BASE_FORMAT,
      databaseId,
      baseId: o.baseId,
      startedAt: o.startedAt,
      stoppedAt: o.stoppedAt ?? o.startedAt,
      server: { version: "15.8", major: 15, systemIdentifier: "7000000000000000001", walSegmentBytes: 16777216 },
      timeline,
      startLsn: lsnIn(o.segment),
      stopLsn: lsnIn(o.segment),
      walSegments: { first: segmentName(timeline, o.segment), last: segmentName(timeline, o.segment) },
      object: {
        key: baseKeys(databaseId, o.baseId).object,
        plainBytes: 1,
        plainSha256: "0".repeat(64),
        storedBytes: 1,
        storedSha256: "0".repeat(64),
      },
      backupManifestSha256: "0".repeat(64),
      recipients: ["age1example"],
    },
    parseSigningKey(o.secret),
  );
}
