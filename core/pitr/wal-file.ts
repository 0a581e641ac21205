import { InvalidInputError } from "../errors.ts";

/**
 * The files PostgreSQL archives, by the names it gives them (src/include/access/xlog_internal.h):
 *
 * - a segment, `TTTTTTTTXXXXXXXXYYYYYYYY` (timeline, log, segment: 24 hex digits);
 * - a timeline history, `TTTTTTTT.history`;
 * - a backup history, `TTTTTTTTXXXXXXXXYYYYYYYY.OOOOOOOO.backup`;
 * - a partial segment, `TTTTTTTTXXXXXXXXYYYYYYYY.partial`, the last segment of a timeline
 *   a promotion left: never a full segment, never served for one.
 */
export type WalFileKind = "segment" | "history" | "backup" | "partial";

export interface WalFileName {
  name: string;
  kind: WalFileKind;
  timeline: number;
}

const PATTERNS: Array<[WalFileKind, RegExp]> = [
  ["segment", /^([0-9A-F]{8})[0-9A-F]{16}$/],
  ["history", /^([0-9A-F]{8})\.history$/],
  ["backup", /^([0-9A-F]{8})[0-9A-F]{16}\.[0-9A-F]{8}\.backup$/],
  ["partial", /^([0-9A-F]{8})[0-9A-F]{16}\.partial$/],
];

/** The file's kind and timeline, or a clear error for any other name (a path, a typo, a traversal). */
export function parseWalFileName(name: string): WalFileName {
  for (const [kind, pattern] of PATTERNS) {
    const m = pattern.exec(name);
    if (m) return { name, kind, timeline: Number.parseInt(m[1] as string, 16) };
  }
  throw new InvalidInputError(`${JSON.stringify(name)} is not a WAL file name PostgreSQL archives`, {
    hint: "archive_command passes %p (its path) and restore_command %f (its name): a segment (24 hex digits), TTTTTTTT.history, a .backup or a .partial file",
  });
}

/** XLogLongPageHeaderData (src/include/access/xlog_internal.h): the first page of every segment. */
export interface SegmentHeader {
  magic: number;
  timeline: number;
  /** The LSN of the segment's first byte. */
  pageAddress: bigint;
  systemIdentifier: string;
  segmentBytes: number;
  blockBytes: number;
}

const XLP_LONG_HEADER = 0x0002;

/**
 * The long page header a segment starts with: the cluster's system identifier, the
 * timeline and the segment's address. Little-endian, as every platform PostgreSQL runs on
 * here writes it. Undefined when the bytes hold no long header (not a segment).
 */
export function readSegmentHeader(bytes: Uint8Array): SegmentHeader | undefined {
  if (bytes.length < 40) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const info = view.getUint16(2, true);
  if ((info & XLP_LONG_HEADER) === 0) return undefined;
  return {
    magic: view.getUint16(0, true),
    timeline: view.getUint32(4, true),
    pageAddress: view.getBigUint64(8, true),
    systemIdentifier: view.getBigUint64(24, true).toString(),
    segmentBytes: view.getUint32(32, true),
    blockBytes: view.getUint32(36, true),
  };
}

/**
 * The segment's name as PostgreSQL derives it from its header (XLogFileName): a file
 * archived under another name than its own content's is refused, so a mislabelled or
 * renamed segment never enters the archive.
 */
export function segmentNameOf(header: SegmentHeader): string {
  const segmentsPerId = 0x1_0000_0000n / BigInt(header.segmentBytes);
  const segno = header.pageAddress / BigInt(header.segmentBytes);
  const hex = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, "0");
  return `${hex(header.timeline)}${hex(segno / segmentsPerId)}${hex(segno % segmentsPerId)}`;
}
