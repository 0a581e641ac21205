import { InvalidInputError } from "../errors.ts";

/** A WAL location as PostgreSQL prints it (`16/B374D848`), as a number. */
export function parseLsn(text: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!m) {
    throw new InvalidInputError(`${JSON.stringify(text)} is not a WAL location`, {
      hint: "an LSN is two hex numbers with a slash, as pg_current_wal_lsn() prints it: 0/3000028",
    });
  }
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffff_ffffn).toString(16).toUpperCase()}`;
}

/** The name of the segment holding byte `lsn` of `timeline` (XLogFileName). */
export function segmentName(timeline: number, lsn: bigint, segmentBytes: number): string {
  const size = BigInt(segmentBytes);
  const perId = 0x1_0000_0000n / size;
  const segno = lsn / size;
  const hex = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, "0");
  return `${hex(timeline)}${hex(segno / perId)}${hex(segno % perId)}`;
}

/** Every segment name from the one holding `from` to the one holding `to`, inclusive. */
export function segmentRange(timeline: number, from: bigint, to: bigint, segmentBytes: number): string[] {
  const size = BigInt(segmentBytes);
  const out: string[] = [];
  for (let segno = from / size; segno <= to / size; segno++)
    out.push(segmentName(timeline, segno * size, segmentBytes));
  return out;
}

/**
 * The continuous run of a base backup's WAL: from its first segment, every next one that
 * `has` (on the base's timeline), and the first missing one when a later one exists
 * (recovery cannot pass it). `last` is undefined when not even the first is there; `next`
 * is the first segment not there.
 */
export function continuousRun(
  base: { timeline: number; firstSegment: string; segmentBytes: number },
  names: Iterable<string>,
  has: (name: string) => boolean,
): { last: string | undefined; next: string; gap: string | undefined } {
  const size = BigInt(base.segmentBytes);
  const perId = 0x1_0000_0000n / size;
  const lsnOf = (name: string) => (BigInt(`0x${name.slice(8, 16)}`) * perId + BigInt(`0x${name.slice(16, 24)}`)) * size;
  let at = lsnOf(base.firstSegment);
  let last: string | undefined;
  for (;;) {
    const name = segmentName(base.timeline, at, base.segmentBytes);
    if (!has(name)) break;
    last = name;
    at += size;
  }
  const through = last ?? base.firstSegment;
  const tli = base.firstSegment.slice(0, 8);
  const later = [...names].some((n) => /^[0-9A-F]{24}$/.test(n) && n.slice(0, 8) === tli && n > through && has(n));
  const next = segmentName(base.timeline, at, base.segmentBytes);
  return { last, next, gap: later ? next : undefined };
}
