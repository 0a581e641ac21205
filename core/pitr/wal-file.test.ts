import { describe, expect, it } from "vitest";
import { generateSigningKey, parseSigningKey } from "../audit/row-signature.ts";
import { parseWalFileName, readSegmentHeader, segmentNameOf } from "./wal-file.ts";
import { checkWalRecord, decodeWalHeader, encodeWalHeader, signWalRecord, WAL_FORMAT } from "./wal-record.ts";

describe("WAL file names, as PostgreSQL gives them", () => {
  it("knows segments, timeline histories, backup labels and partial segments, with their timelines", () => {
    expect(parseWalFileName("00000002000000010000003A")).toEqual({
      name: "00000002000000010000003A",
      kind: "segment",
      timeline: 2,
    });
    expect(parseWalFileName("0000000A.history")).toMatchObject({ kind: "history", timeline: 10 });
    expect(parseWalFileName("000000010000000000000002.00000028.backup")).toMatchObject({ kind: "backup", timeline: 1 });
    expect(parseWalFileName("000000010000000000000005.partial")).toMatchObject({ kind: "partial", timeline: 1 });
  });

  it("refuses anything else: a path, lower case, a short name, a traversal, text that a shell or a key would parse", () => {
    for (const bad of [
      "pg_wal/000000010000000000000001",
      "00000001000000000000000a",
      "0000000100000000000001",
      "../000000010000000000000001",
      "000000010000000000000001\n",
      "00000001.history; rm -rf /",
      "",
    ]) {
      expect(() => parseWalFileName(bad), JSON.stringify(bad)).toThrow(/is not a WAL file name/);
    }
  });

  it("reads the system identifier, timeline and segment from a segment's long page header, and names the segment from it", () => {
    const page = new Uint8Array(8192);
    const view = new DataView(page.buffer);
    view.setUint16(0, 0xd110, true); // PostgreSQL 15's XLOG_PAGE_MAGIC
    view.setUint16(2, 0x0002 | 0x0004, true); // XLP_LONG_HEADER | XLP_BKP_REMOVABLE
    view.setUint32(4, 3, true);
    // 16 MiB segments, 256 to a log file: segment number 256 + 5 is log 1, segment 5.
    view.setBigUint64(8, (256n + 5n) * 16n * 1024n * 1024n, true);
    view.setBigUint64(24, 7_312_345_678_901_234_567n, true);
    view.setUint32(32, 16 * 1024 * 1024, true);
    view.setUint32(36, 8192, true);
    const header = readSegmentHeader(page);
    expect(header).toMatchObject({ timeline: 3, systemIdentifier: "7312345678901234567", blockBytes: 8192 });
    expect(segmentNameOf(header as NonNullable<typeof header>)).toBe("000000030000000100000005");
    // A short page header (a page inside a segment) is no segment start.
    view.setUint16(2, 0, true);
    expect(readSegmentHeader(page)).toBeUndefined();
    expect(readSegmentHeader(new Uint8Array(10))).toBeUndefined();
  });
});

describe("the signed record an archived WAL file starts with", () => {
  const host = parseSigningKey(generateSigningKey().secret);
  const record = signWalRecord(
    {
      format: WAL_FORMAT,
      databaseId: "shop",
      name: "000000010000000000000003",
      kind: "segment",
      timeline: 1,
      systemIdentifier: "7312345678901234567",
      plainBytes: 16777216,
      plainSha256: "ab".repeat(32),
      pushedAt: "2026-12-03T08:00:00.000Z",
    },
    host,
  );
  const trusted = new Set([host.signer]);

  it("round-trips through its header line and passes its checks", () => {
    const bytes = Buffer.concat([encodeWalHeader(record), Buffer.from("age-encryption.org/v1\n…")]);
    const { record: back, bodyOffset } = decodeWalHeader(bytes, "k");
    expect(back).toEqual(record);
    expect(bytes.subarray(bodyOffset).toString()).toMatch(/^age-encryption/);
    expect(() => checkWalRecord(back, { databaseId: "shop", name: record.name }, trusted, "k")).not.toThrow();
  });

  it("fails its checks for any field changed after signing, another signer, another database or another name", () => {
    for (const changed of [
      { ...record, plainSha256: "cd".repeat(32) },
      { ...record, plainBytes: 1 },
      { ...record, systemIdentifier: "1" },
      { ...record, timeline: 2 },
    ]) {
      expect(() => checkWalRecord(changed, { databaseId: "shop", name: record.name }, trusted, "k")).toThrow(
        /not signed by a trusted signer/,
      );
    }
    const other = parseSigningKey(generateSigningKey().secret);
    expect(() =>
      checkWalRecord(record, { databaseId: "shop", name: record.name }, new Set([other.signer]), "k"),
    ).toThrow(/not signed by a trusted signer/);
    expect(() => checkWalRecord(record, { databaseId: "billing", name: record.name }, trusted, "k")).toThrow(
      /not what its key says/,
    );
    expect(() =>
      checkWalRecord(record, { databaseId: "shop", name: "000000010000000000000004" }, trusted, "k"),
    ).toThrow(/not what its key says/);
  });

  it("refuses an object that does not start with a header: no newline in 4 KiB, not JSON, another format", () => {
    expect(() => decodeWalHeader(Buffer.alloc(5000, 0x41), "k")).toThrow(/does not start with a strongroom WAL header/);
    expect(() => decodeWalHeader(Buffer.from("{oops\n"), "k")).toThrow(/is not JSON/);
    expect(() => decodeWalHeader(Buffer.from('{"format":"other/1"}\n'), "k")).toThrow(/is not in strongroom-wal\/1/);
  });
});
