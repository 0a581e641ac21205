import { describe, expect, it } from "vitest";
import { type AuditEntry, type AuditRow, verifyChain } from "#core/audit/audit-chain.ts";
import { type AuditLog, appendAudit, readAll } from "#core/audit/audit-log.ts";
import { AlreadyExistsError } from "#core/errors.ts";

export interface AuditFixture {
  /** A new, empty log; every call returns a fresh client onto the same chain. */
  open: () => AuditLog;
  /** Raw storage access, to tamper the way someone with write access could. */
  overwrite: (row: AuditRow, atSeq: string) => Promise<void>;
  remove: (seq: string) => Promise<void>;
}

const entry = (i: number): AuditEntry => ({
  at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
  event: "backup.ok",
  actor: `worker-${i}`,
  databaseId: "shop",
  backupId: "20260101T000000Z-abcdef",
  details: { i, bytes: 1000 + i, nested: { z: 1, a: [1, "two"] } },
});

/** One suite, every AuditLog backend (WAL-G style). */
export function auditLogContract(name: string, fixture: () => Promise<AuditFixture>): void {
  describe(`AuditLog contract: ${name}`, () => {
    it("appends rows with contiguous zero-padded sequences that form a verifying chain", async () => {
      const f = await fixture();
      const log = f.open();
      expect(await log.head()).toBeUndefined();
      for (let i = 1; i <= 5; i++) await appendAudit(log, entry(i));
      const rows = await readAll(log);
      expect(rows.map((r) => r.seq)).toEqual([
        "000000000001",
        "000000000002",
        "000000000003",
        "000000000004",
        "000000000005",
      ]);
      expect(rows[2]?.details).toEqual(entry(3).details);
      expect(verifyChain(rows)).toMatchObject({ ok: true, rows: 5, headSeq: "000000000005" });
      expect((await log.head())?.seq).toBe("000000000005");
      expect((await readAll(log, "000000000004")).map((r) => r.seq)).toEqual(["000000000004", "000000000005"]);
    });

    it("accepts the identical row again, as a retry after a lost answer must", async () => {
      const f = await fixture();
      const log = f.open();
      const first = await appendAudit(log, entry(1));
      await expect(log.putRow(first)).resolves.toBeUndefined();
      expect(await readAll(log)).toEqual([first]);
    });

    it("refuses to write a row whose sequence is taken, and keeps the original", async () => {
      const f = await fixture();
      const log = f.open();
      const first = await appendAudit(log, entry(1));
      await expect(log.putRow({ ...first, actor: "intruder" })).rejects.toBeInstanceOf(AlreadyExistsError);
      expect((await readAll(log))[0]?.actor).toBe("worker-1");
    });

    it("lets 50 concurrent appenders from separate clients land 50 contiguous, verifying rows", async () => {
      const f = await fixture();
      await Promise.all(Array.from({ length: 50 }, (_, i) => appendAudit(f.open(), entry(i + 1))));
      const rows = await readAll(f.open());
      expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
      expect(new Set(rows.map((r) => r.actor)).size).toBe(50);
      expect(verifyChain(rows).ok).toBe(true);
    });

    describe("detects tampering at the right row", () => {
      const chain = async () => {
        const f = await fixture();
        const log = f.open();
        const rows: AuditRow[] = [];
        for (let i = 1; i <= 6; i++) rows.push(await appendAudit(log, entry(i)));
        return { f, log, rows };
      };

      it("an edited field", async () => {
        const { f, log, rows } = await chain();
        await f.overwrite({ ...(rows[3] as AuditRow), details: { i: 4, bytes: 1 } }, "000000000004");
        expect(verifyChain(await readAll(log)).firstBad).toMatchObject({ seq: "000000000004", problem: "edited" });
      });

      it("a deleted row", async () => {
        const { f, log } = await chain();
        await f.remove("000000000003");
        expect(verifyChain(await readAll(log)).firstBad).toMatchObject({ seq: "000000000004", problem: "missing" });
      });

      it("two swapped rows, refused on read where they are stored", async () => {
        const { f, log, rows } = await chain();
        await f.overwrite(rows[3] as AuditRow, "000000000003");
        await f.overwrite(rows[2] as AuditRow, "000000000004");
        // Storage position 3 now holds row 4: the key no longer matches the row.
        await expect(readAll(log)).rejects.toThrow(/audit row \S*000000000003\S* holds seq "000000000004"/);
      });

      it("a row rewritten with a valid hash but a forged link", async () => {
        const { f, log, rows } = await chain();
        const { rowHash } = await import("#core/audit/audit-chain.ts");
        const forged = { ...(rows[4] as AuditRow), prevHash: "f".repeat(64), actor: "forger" };
        await f.overwrite({ ...forged, hash: rowHash(forged) }, "000000000005");
        expect(verifyChain(await readAll(log)).firstBad).toMatchObject({ seq: "000000000005", problem: "broken-link" });
      });
    });
  });
}
