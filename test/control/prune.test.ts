import { describe, expect, it } from "vitest";
import { readAll } from "#core/audit/audit-log.ts";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { listBackupRefs } from "#core/backup-index.ts";
import { DEFAULT_POLICY } from "#core/gfs.ts";
import { executePrune, planPrune } from "#core/prune.ts";
import { writeBackup, writeVerification } from "../helpers/backups.ts";
import { runCli } from "../helpers/cli.ts";
import { allKeys, newStore } from "../helpers/fixture.ts";

const DAY = 86_400_000;
const NOW = new Date("2026-11-21T12:00:00Z");

/** The expected survivors of 400 daily 02:00 UTC backups under 7/4/12, by calendar rules. */
function expectedKeep(days: number, verifiedDay: number): Set<number> {
  const keep = new Set<number>([0, verifiedDay]);
  const dateOf = (d: number) => new Date(NOW.getTime() - d * DAY);
  for (let d = 0; d < 7; d++) keep.add(d);
  // ISO weeks: the newest backup of the current week is today's; of earlier weeks, Sunday's.
  const mondayOffset = (dateOf(0).getUTCDay() + 6) % 7; // days since this week's Monday
  for (let w = 1; w < 4; w++) keep.add(mondayOffset + 1 + (w - 1) * 7);
  // Months: today for this month, then the last day of each of the 11 before.
  for (let d = 0; d < days; d++) {
    const date = dateOf(d);
    const monthsBack = (NOW.getUTCFullYear() - date.getUTCFullYear()) * 12 + NOW.getUTCMonth() - date.getUTCMonth();
    const lastOfMonth = dateOf(d - 1).getUTCMonth() !== date.getUTCMonth();
    if (monthsBack > 0 && monthsBack < 12 && lastOfMonth) keep.add(d);
  }
  return keep;
}

describe("prune over 400 simulated days", () => {
  // The file store only: on moto the same 1,600 objects take ~30 s and prove nothing more.
  it.for(["file"] as const)("keeps exactly the GFS set and writes one audit row per deletion (%s)", async (kind) => {
    const { store } = await newStore(kind);
    const ids: string[] = [];
    for (let d = 0; d < 400; d++) {
      const at = new Date(Date.UTC(NOW.getUTCFullYear(), NOW.getUTCMonth(), NOW.getUTCDate(), 2) - d * DAY);
      ids[d] = await writeBackup(store, "shop", at);
    }
    const verifiedDay = 45;
    await writeVerification(store, "shop", ids[verifiedDay] as string, new Date(NOW.getTime() - DAY), true);
    // A newer verification that failed, of a backup GFS would not keep: it must not
    // count as verified (else day 45 would go and this one stay).
    const failedDay = [...Array(45).keys()].find((d) => d > 30 && !expectedKeep(400, verifiedDay).has(d)) as number;
    await writeVerification(store, "shop", ids[failedDay] as string, new Date(NOW.getTime() - DAY), false);

    const plan = await planPrune(store, "shop", DEFAULT_POLICY, NOW, new StoreAuditLog(store, "db#shop"));
    const audit = new StoreAuditLog(store, "db#shop");
    const result = await executePrune(store, plan, audit, "test", () => NOW);

    const expected = [...expectedKeep(400, verifiedDay)].map((d) => ids[d] as string).sort();
    const survivors = (await listBackupRefs(store, "shop")).map((r) => r.backupId);
    expect(survivors).toEqual(expected);
    expect(result.deleted).toHaveLength(400 - expected.length);
    const rows = await readAll(audit);
    expect(
      rows
        .filter((r) => r.event === "retain.delete")
        .map((r) => r.backupId)
        .sort(),
    ).toEqual(result.deleted.map((d) => d.backupId).sort());
    // Payloads of deleted backups are gone too; those of kept backups are intact.
    const keys = await allKeys(store, "shop/");
    for (const d of result.deleted) expect(keys.some((k) => k.includes(d.backupId))).toBe(false);
    for (const id of expected) expect(keys.filter((k) => k.includes(`backups/${id}/`))).toHaveLength(4);
    expect(keys.some((k) => k.includes(`verifications/${ids[verifiedDay]}`))).toBe(true);
    // And running it again deletes nothing more.
    const again = await planPrune(store, "shop", DEFAULT_POLICY, NOW, new StoreAuditLog(store, "db#shop"));
    expect(again.expire).toEqual([]);
  });

  it("deletes nothing when the newest backup is older than the daily window", async () => {
    const { store } = await newStore("file");
    for (let d = 10; d < 60; d++) await writeBackup(store, "stale", new Date(NOW.getTime() - d * DAY));
    const plan = await planPrune(store, "stale", DEFAULT_POLICY, NOW, new StoreAuditLog(store, "db#stale"));
    expect(plan.backupsFailing).toBe(true);
    await executePrune(store, plan, new StoreAuditLog(store, "db#stale"), "test", () => NOW);
    expect(await listBackupRefs(store, "stale")).toHaveLength(50);
  });

  it("prints the dry-run plan as a table and deletes nothing; the real run deletes and audits", async () => {
    const { store, url } = await newStore("file");
    const now = Date.now();
    for (let d = 0; d < 40; d++) await writeBackup(store, "shop", new Date(now - d * DAY - 60_000));
    const dry = await runCli(["prune", "--database-id", "shop", "--dry-run"], { STRONGROOM_STORE: url });
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/^BACKUP ID\s+ACTION\s+WHY$/m);
    expect(dry.stdout).toMatch(/\s+keep\s+newest, daily/);
    expect(dry.stdout).toMatch(/would delete\s+outside every retention window/);
    expect(await listBackupRefs(store, "shop")).toHaveLength(40);

    const real = await runCli(["prune", "--database-id", "shop", "--json"], { STRONGROOM_STORE: url });
    expect(real.code).toBe(0);
    const out = JSON.parse(real.stdout) as { deleted: Array<{ backupId: string }>; keep: unknown[] };
    expect(out.deleted.length).toBeGreaterThan(0);
    expect(await listBackupRefs(store, "shop")).toHaveLength(out.keep.length);
    const shown = await runCli(["audit", "show", "--scope", "db#shop", "--json"], { STRONGROOM_STORE: url });
    const rows = JSON.parse(shown.stdout) as Array<{ event: string }>;
    expect(rows.filter((r) => r.event === "retain.delete")).toHaveLength(out.deleted.length);
    const verified = await runCli(["audit", "verify", "--scope", "db#shop"], { STRONGROOM_STORE: url });
    // One backup.ok row per backup written, one retain.delete per deletion.
    expect(verified.stdout).toMatch(new RegExp(`audit chain db#shop ok: ${40 + out.deleted.length} rows`));
  });
});
