import { describe, expect, it } from "vitest";
import { catalogRecord } from "#core/catalog/catalog.ts";
import { DynamoCatalogTable } from "#core/catalog/dynamo-catalog-table.ts";
import { newBackupId } from "#core/keys.ts";
import { assessStatus } from "#core/status.ts";
import {
  sampleManifest,
  sampleRecord,
  sampleVerification,
  writeBackup,
  writeVerification,
} from "../helpers/backups.ts";
import { runCli } from "../helpers/cli.ts";
import { createTable, dynamoClient } from "../helpers/dynamo.ts";
import { newStore } from "../helpers/fixture.ts";

const NOW = new Date("2026-11-21T12:00:00Z");
const HOUR = 3_600_000;
const ago = (h: number) => new Date(NOW.getTime() - h * HOUR);

describe("status readiness", () => {
  const backup = newBackupId(ago(10));
  const older = newBackupId(ago(24 * 5));

  it("is ready with a backup within 26 h and a successful verification within 8 days", () => {
    const s = assessStatus("shop", [older, backup], [sampleRecord(older, ago(24 * 4), true)], NOW);
    expect(s).toMatchObject({
      ready: true,
      problems: [],
      newestBackup: { backupId: backup, ageHours: 10 },
      newestVerified: { backupId: older, ageHours: 96 },
      lastVerification: { ok: true, restoreSeconds: 12.5, failedChecks: [] },
    });
    expect(s.days).toHaveLength(14);
    expect(s.days.at(-1)).toEqual({ date: "2026-11-21", mark: "backup" });
    expect(s.days.find((d) => d.date === "2026-11-17")?.mark).toBe("verified");
    expect(s.days.find((d) => d.date === "2026-11-16")?.mark).toBe("backup");
    expect(s.days[0]?.mark).toBe("none");
  });

  it.each([
    [
      "the newest backup is older than 26 h",
      [newBackupId(ago(30))],
      "verify-recent",
      "newest backup is 30h old (limit 26h)",
    ],
    ["nothing was ever verified", [backup], "none", "no successful verification"],
    [
      "the last successful verification is older than 8 days",
      [older, backup],
      "old",
      "last successful verification was 9d ago (limit 8d)",
    ],
    [
      "the last verification failed, though an older one succeeded",
      [older, backup],
      "failed-last",
      `last verification (of ${backup}) failed: row-counts`,
    ],
    ["there is no backup at all", [], "none", "no backup"],
  ])("is not ready when %s, and says so", (_, ids, history, problem) => {
    const verifications =
      history === "verify-recent"
        ? [sampleRecord(ids[0] as string, ago(1), true)]
        : history === "old"
          ? [sampleRecord(older, ago(24 * 9), true)]
          : history === "failed-last"
            ? [sampleRecord(older, ago(48), true), sampleRecord(backup, ago(2), false)]
            : [];
    const s = assessStatus("shop", ids as string[], verifications, NOW);
    expect(s.ready).toBe(false);
    expect(s.problems).toContain(problem);
    if (history === "failed-last") expect(s.days.at(-1)?.mark).toBe("verify-failed");
  });

  it("shows an inconclusive verification as neither verified nor failed: its own problem, day mark and outcome", () => {
    const inconclusive = {
      ...sampleRecord(backup, ago(2), false),
      outcome: "inconclusive" as const,
      failedChecks: [],
      missing: ["extension postgis 3.3.2"],
    };
    const s = assessStatus("shop", [older, backup], [sampleRecord(older, ago(48), true), inconclusive], NOW);
    expect(s.ready).toBe(false);
    expect(s.problems).toEqual([
      `last verification (of ${backup}) was inconclusive, neither verified nor failed: the scratch server lacked extension postgis 3.3.2`,
    ]);
    expect(s.problems.join()).not.toMatch(/\) failed/);
    expect(s.lastVerification).toMatchObject({
      ok: false,
      outcome: "inconclusive",
      missing: ["extension postgis 3.3.2"],
    });
    // The older success still counts as the newest verified; the inconclusive one does not.
    expect(s.newestVerified?.backupId).toBe(older);
    expect(s.days.at(-1)?.mark).toBe("verify-inconclusive");
    expect(s.days.find((d) => d.date === "2026-11-19")?.mark).toBe("verified");
  });

  it("ignores a verification of a backup that is not there, and an integrity pass", () => {
    const s = assessStatus(
      "shop",
      [backup],
      [sampleRecord(older, ago(1), true), sampleRecord(backup, ago(1), true, "integrity")],
      NOW,
    );
    expect(s.problems).toEqual(["no successful verification"]);
  });
});

describe("strongroom status", () => {
  it("exits 0 when every database is ready and 1 naming each database that is not, and why", async () => {
    const { store, url } = await newStore("file");
    const now = new Date();
    const shop = await writeBackup(store, "shop", new Date(now.getTime() - 2 * HOUR));
    await writeVerification(store, "shop", shop, new Date(now.getTime() - HOUR), true);
    const ready = await runCli(["status", "--json"], { STRONGROOM_STORE: url });
    expect(ready.code, ready.stderr).toBe(0);
    expect(JSON.parse(ready.stdout)).toEqual([expect.objectContaining({ databaseId: "shop", ready: true })]);

    await writeBackup(store, "billing", new Date(now.getTime() - 40 * HOUR));
    const text = await runCli(["status"], { STRONGROOM_STORE: url });
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/^DATABASE +READY +NEWEST BACKUP/);
    expect(text.stdout).toMatch(/billing +NO +\S+ \(40h ago\) +never/);
    expect(text.stderr).toContain(
      "strongroom: error: not ready: billing: newest backup is 40h old (limit 26h); no successful verification [NotReadyError]",
    );
    const strict = await runCli(["status", "--database-id", "shop", "--max-verify-age", "30m"], {
      STRONGROOM_STORE: url,
    });
    expect(strict.code).toBe(1);
    expect(strict.stderr).toContain("shop: last successful verification was 1h ago (limit 30m)");
  });

  it("reads the deployed catalog with --table: the same verdicts without listing the bucket", async () => {
    const table = await createTable(dynamoClient(), "catalog");
    const catalog = new DynamoCatalogTable(dynamoClient(), table);
    const now = new Date();
    const verifiedManifest = sampleManifest("cshop", new Date(now.getTime() - 2 * HOUR));
    await catalog.put(
      catalogRecord(verifiedManifest, [
        sampleVerification("cshop", verifiedManifest.backupId, new Date(now.getTime() - HOUR), true),
      ]),
    );
    const failedManifest = sampleManifest("cbilling", new Date(now.getTime() - 3 * HOUR));
    await catalog.put(
      catalogRecord(failedManifest, [
        sampleVerification("cbilling", failedManifest.backupId, new Date(now.getTime() - HOUR), false),
      ]),
    );
    const r = await runCli(["status", "--table", table, "--json"]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).map((s: { databaseId: string; ready: boolean }) => [s.databaseId, s.ready])).toEqual([
      ["cbilling", false],
      ["cshop", true],
    ]);
    expect(r.stderr).toContain(
      `cbilling: no successful verification; last verification (of ${failedManifest.backupId}) failed (its result in the store says which check)`,
    );
    const shopOnly = await runCli(["status", "--table", table, "--database-id", "cshop"]);
    expect(shopOnly.code, shopOnly.stderr).toBe(0);
  });

  it("reads one of --store or --table, and says so", async () => {
    const r = await runCli(["status"], { STRONGROOM_STORE: "" });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("status reads one of --store or --table");
  });

  it("refuses a malformed age as a usage error", async () => {
    const { url } = await newStore("file");
    const r = await runCli(["status", "--max-backup-age", "a day"], { STRONGROOM_STORE: url });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--max-backup-age must be a duration like 24h, 90m or 7d, got "a day"');
  });
});
