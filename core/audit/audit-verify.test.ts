import { describe, expect, it } from "vitest";
import type { AuditRow } from "./audit-chain.ts";
import { reconcile } from "./audit-verify.ts";

const row = (seq: number, fields: Partial<AuditRow>): AuditRow => ({
  seq: String(seq).padStart(12, "0"),
  prevHash: "0".repeat(64),
  hash: String(seq).repeat(64).slice(0, 64),
  at: "2026-12-03T02:00:00.000Z",
  event: "backup.ok",
  actor: "test",
  databaseId: "shop",
  ...fields,
});

describe("audit verify's reconciliation", () => {
  const id = "20261203T020000Z-abcdef";
  const committed = row(1, { backupId: id, details: { manifestSha256: "a".repeat(64) } });

  it("calls a committed backup whose manifest is gone lost unless a logical retain.delete row says why", () => {
    expect(reconcile([committed], [])).toEqual([expect.stringContaining("no retain.delete row says why")]);
    expect(reconcile([committed, row(2, { event: "retain.delete", backupId: id, details: {} })], [])).toEqual([]);
  });

  it("never takes a base's or the WAL's retain.delete under the same id for a logical backup's", () => {
    for (const kind of ["base", "wal"]) {
      const other = row(2, { event: "retain.delete", backupId: id, details: { kind } });
      expect(reconcile([committed, other], []), kind).toEqual([
        expect.stringContaining("no retain.delete row says why"),
      ]);
    }
  });
});
