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
