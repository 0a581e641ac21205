import { cp, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, inject, it } from "vitest";
import { type AuditEntry, nextRow } from "#core/audit/audit-chain.ts";
import { appendAudit, readAll } from "#core/audit/audit-log.ts";
import { generateSigningKey, parseSigningKey, type RowSigner } from "#core/audit/row-signature.ts";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { listBackupRefs } from "#core/backup-index.ts";
import { newBackupId, objectKey, verificationKeys } from "#core/keys.ts";
import { readLedger } from "#core/ledger.ts";
import { type Manifest, serializeManifest } from "#core/manifest.ts";
import { getBytes } from "#core/store/object-store.ts";
import { manifestSha256, sampleVerification, writeBackup, writeVerification } from "../helpers/backups.ts";
import { runCli } from "../helpers/cli.ts";
import { identityFile, newStore, type StoreUnderTest } from "../helpers/fixture.ts";
import { createDatabase, sql } from "../helpers/pg.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * The store writer (leaked bucket credentials, a compromised backup task, write access
 * to a file store's directory) can put, copy and edit objects, and read the plaintext
 * manifests, recipients included. It holds neither the age identity nor the audit log.
 * Nothing it puts may count as a backup or a verification, steer prune, or be restored.
 */
const pgUrl = inject("pgUrl");
const DAY = 86_400_000;

async function database(prefix: string, marker: string): Promise<{ name: string; url: string }> {
  const db = await createDatabase(pgUrl, prefix);
  await sql(db.url, `create table who(v text); insert into who values ('${marker}')`);
  return db;
}

/** The store's directory, for a writer who copies files into it. */
const dirOf = (url: string) => fileURLToPath(url);

describe("a store writer cannot make a backup count", () => {
  it("a forged backup made with the victim's recipient and copied in is never latest, restored, verified or pruned by, and list and audit verify name it", async () => {
    const victim = await newStore("file");
    const key = await identityFile();
    const shop = await database("victim", "genuine");
    const made = await runCli(["backup", "--recipient", key.recipient, "--database-id", "shop"], {
      DATABASE_URL: shop.url,
      STRONGROOM_STORE: victim.url,
    });
    expect(made.code, made.stderr).toBe(0);
    const genuine = made.stdout.trim();

    // The forger backs up a database of its own to the victim's public recipient, read
    // from the victim's plaintext manifest, without an audit log, and copies it in.
    const manifest = JSON.parse(
      (await getBytes(victim.store, objectKey("shop", genuine, "manifest"))).toString("utf8"),
    ) as Manifest;
    const evil = await database("evil", "forged");
    const own = await newStore("file");
    const forged = await runCli(
      ["backup", "--recipient", manifest.recipients[0] as string, "--database-id", "shop", "--audit", "none"],
      { DATABASE_URL: evil.url, STRONGROOM_STORE: own.url, STRONGROOM_ALLOW_SOURCE_CHANGE: "1" },
    );
    expect(forged.code, forged.stderr).toBe(0);
    const forgedId = forged.stdout.trim();
    await cp(
      path.join(dirOf(own.url), "shop", "backups", forgedId),
      path.join(dirOf(victim.url), "shop", "backups", forgedId),
      {
        recursive: true,
      },
    );
    // …and a plaintext summary saying it verified.
    await victim.store.putIfAbsent(
      verificationKeys("shop", forgedId, new Date()).summary,
      JSON.stringify(sampleVerification("shop", forgedId, new Date(), true)),
    );

    const env = { STRONGROOM_STORE: victim.url };
    const listed = await runCli(["list", "--json"], env);
    expect(listed.code).toBe(1);
    const doc = JSON.parse(listed.stdout) as {
      backups: Manifest[];
      problems: Array<{ backupId: string; kind: string }>;
    };
    expect(doc.backups.map((m) => m.backupId)).toEqual([genuine]);
    expect(doc.problems).toEqual([expect.objectContaining({ backupId: forgedId, kind: "unanchored" })]);
    expect(listed.stderr).toContain(`1 manifest in the store does not count: ${forgedId} [UncommittedBackupError]`);

    // latest is the genuine backup: the restored table says so.
    const target = await createDatabase(pgUrl, "restored");
    const restored = await runCli(["restore", "--identity", key.file, "--target", target.url], env);
    expect(restored.code, restored.stderr).toBe(0);
    expect(await sql(target.url, "select v from who")).toEqual([{ v: "genuine" }]);

    // Asked for by id, it is refused before anything is read or restored.
    const other = await createDatabase(pgUrl, "never");
    const byId = await runCli(["restore", "--identity", key.file, "--target", other.url, "--backup", forgedId], env);
    expect(byId.code).toBe(1);
    expect(byId.stderr).toContain("no backup.ok audit row commits it");
    expect(byId.stderr).toContain("[UncommittedBackupError]");
    expect(await sql(other.url, "select count(*)::int as n from pg_class where relname = 'who'")).toEqual([{ n: 0 }]);
    const verified = await runCli(["verify", "--identity", key.file, "--backup", forgedId, "--integrity-only"], env);
    expect(verified.code).toBe(1);
    expect(verified.stderr).toContain("[UncommittedBackupError]");

    // Status: the forged summary does not make anything verified; the forgery is named.
    const status = await runCli(["status", "--json"], env);
    const [s] = JSON.parse(status.stdout) as Array<{
      ready: boolean;
      problems: string[];
      newestBackup: { backupId: string };
    }>;
    expect(s?.newestBackup.backupId).toBe(genuine);
    expect(s?.problems).toContain("no successful verification");
    expect(s?.problems.some((p) => p.includes(forgedId))).toBe(true);

    const audit = await runCli(["audit", "verify", "--scope", "db#shop"], env);
    expect(audit.code).toBe(1);
    expect(audit.stdout + audit.stderr).toContain(
      `backup ${forgedId}: no backup.ok row records its manifest's SHA-256`,
    );
  });

  it("a copy of the newest manifest under a later id, with an ok summary, stops prune naming it, and deletes nothing", async () => {
    const { store, url } = await newStore("file");
    const now = Date.now();
    const older = await writeBackup(store, "shop", new Date(now - DAY));
    const newest = await writeBackup(store, "shop", new Date(now - 120_000));
    // The forger copies the newest manifest to a later id on the same day, its ids and
    // keys rewritten to match the new location, and adds an ok summary for it.
    const laterId = newBackupId(new Date(now - 60_000));
    const copy = JSON.parse(
      (await getBytes(store, objectKey("shop", newest, "manifest"))).toString("utf8"),
    ) as Manifest;
    const moved: Manifest = {
      ...copy,
      backupId: laterId,
      objects: copy.objects.map((o) => ({ ...o, key: objectKey("shop", laterId, o.role) })),
    };
    for (const o of moved.objects) await store.putIfAbsent(o.key, "abc");
    await store.putIfAbsent(objectKey("shop", laterId, "manifest"), serializeManifest(moved));
    await store.putIfAbsent(
      verificationKeys("shop", laterId, new Date()).summary,
      JSON.stringify(sampleVerification("shop", laterId, new Date(), true)),
    );

    const pruned = await runCli(
      ["prune", "--database-id", "shop", "--keep-daily", "1", "--keep-weekly", "0", "--keep-monthly", "0"],
      { STRONGROOM_STORE: url },
    );
    expect(pruned.code).toBe(1);
    expect(pruned.stderr).toContain("prune of shop stopped, nothing deleted");
    expect(pruned.stderr).toContain(laterId);
    expect(pruned.stderr).toContain("[PruneHaltedError]");
    expect((await listBackupRefs(store, "shop")).map((r) => r.backupId)).toEqual([older, newest, laterId]);

    // Once the forgery is gone, prune runs over committed backups only.
    await rm(path.join(dirOf(url), "shop", "backups", laterId), { recursive: true });
    const again = await runCli(
      ["prune", "--database-id", "shop", "--keep-daily", "1", "--keep-weekly", "0", "--keep-monthly", "0", "--json"],
      { STRONGROOM_STORE: url },
    );
    expect(again.code, again.stderr).toBe(0);
    expect(
      (JSON.parse(again.stdout) as { deleted: Array<{ backupId: string }> }).deleted.map((d) => d.backupId),
    ).toEqual([older]);
  });

  it("a plaintext ok summary never protects a backup from prune: only a verify.ok row for its manifest does", async () => {
    const { store } = await newStore("file");
    const now = new Date();
    const ids: string[] = [];
    for (let d = 5; d >= 0; d--) ids.push(await writeBackup(store, "shop", new Date(now.getTime() - d * DAY - 60_000)));
    const [audited, summarized] = [ids[0] as string, ids[1] as string];
    await writeVerification(store, "shop", audited, new Date(now.getTime() - DAY), true);
    // A summary only: what a store writer can put.
    await store.putIfAbsent(
      verificationKeys("shop", summarized, now).summary,
      JSON.stringify(sampleVerification("shop", summarized, now, true)),
    );
    const ledger = await readLedger(store, "shop", { audit: new StoreAuditLog(store, "db#shop"), now });
    expect(ledger.backups.filter((b) => b.verifications.some((v) => v.ok)).map((b) => b.backupId)).toEqual([audited]);
  });
});

describe("planted keys never stop the rest", () => {
  it("an empty manifest dated 9999 and a malformed one are each reported for that backup; list, status and the next backup go on", async () => {
    const victim = await newStore("file");
    const key = await identityFile();
    const shop = await database("planted", "genuine");
    const env = { DATABASE_URL: shop.url, STRONGROOM_STORE: victim.url };
    const first = await runCli(["backup", "--recipient", key.recipient, "--database-id", "shop"], env);
    expect(first.code, first.stderr).toBe(0);

    const dir = dirOf(victim.url);
    const plant = async (id: string, text: string) => {
      await mkdir(path.join(dir, "shop", "backups", id), { recursive: true });
      await writeFile(path.join(dir, "shop", "backups", id, "manifest.json"), text);
    };
    await plant("99991231T235959Z-aaaaaa", "");
    await plant(newBackupId(new Date(Date.now() - 60_000)), "{not json");
    await victim.store.putIfAbsent(
      "shop/verifications/99991231T235959Z-aaaaaa/99991231T235959000Z-aaaaaa.json",
      JSON.stringify(sampleVerification("shop", "99991231T235959Z-aaaaaa", new Date("9999-12-31T23:59:59Z"), true)),
    );

    const listed = await runCli(["list", "--json"], { STRONGROOM_STORE: victim.url });
    const doc = JSON.parse(listed.stdout) as { backups: Manifest[]; problems: Array<{ kind: string }> };
    expect(doc.backups.map((m) => m.backupId)).toEqual([first.stdout.trim()]);
    expect(doc.problems.map((p) => p.kind).sort()).toEqual(["future", "malformed"]);

    const status = await runCli(["status", "--json"], { STRONGROOM_STORE: victim.url });
    expect(status.code).toBe(1);
    const [s] = JSON.parse(status.stdout) as Array<{ ready: boolean; problems: string[] }>;
    expect(s?.ready).toBe(false);
    expect(s?.problems).toContain("no successful verification");

    const second = await runCli(["backup", "--recipient", key.recipient, "--database-id", "shop"], env);
    expect(second.code, second.stderr).toBe(0);
    const after = JSON.parse((await runCli(["list", "--json"], { STRONGROOM_STORE: victim.url })).stdout) as {
      backups: Manifest[];
    };
    // Two backups in one second order by their random suffix: compare as a set.
    expect(after.backups.map((m) => m.backupId).sort()).toEqual([first.stdout.trim(), second.stdout.trim()].sort());
  });
});

describe("replayed and replaced manifests", () => {
  it("a genuine manifest edited in place (recipients added) is refused by restore and verify, and nothing is written", async () => {
    const victim = await newStore("file");
    const key = await identityFile();
    const thief = await identityFile();
    const shop = await database("edited", "genuine");
    const made = await runCli(["backup", "--recipient", key.recipient, "--database-id", "shop"], {
      DATABASE_URL: shop.url,
      STRONGROOM_STORE: victim.url,
    });
    expect(made.code, made.stderr).toBe(0);
    const id = made.stdout.trim();
    const file = path.join(dirOf(victim.url), "shop", "backups", id, "manifest.json");
    const manifest = JSON.parse(await readFile(file, "utf8")) as Manifest;
    await writeFile(file, serializeManifest({ ...manifest, recipients: [...manifest.recipients, thief.recipient] }));

    const env = { STRONGROOM_STORE: victim.url };
    const verified = await runCli(["verify", "--identity", key.file, "--backup", id], env);
    expect(verified.code).toBe(1);
    expect(verified.stderr).toContain("is not the one committed");
    // No result was written, so nothing was encrypted to the added recipient.
    const keys: string[] = [];
    for await (const o of (await import("#core/store/object-store.ts")).listAll(victim.store, "shop/verifications/"))
      keys.push(o.key);
    expect(keys).toEqual([]);
  });

  it("a backup deleted by retention whose manifest is put back does not count again, and the next prune deletes it again", async () => {
    const { store, url } = await newStore("file");
    const now = Date.now();
    const old = await writeBackup(store, "shop", new Date(now - 3 * DAY));
    await writeBackup(store, "shop", new Date(now - 60_000));
    const saved = await getBytes(store, objectKey("shop", old, "manifest"));
    const pruned = await runCli(
      ["prune", "--database-id", "shop", "--keep-daily", "1", "--keep-weekly", "0", "--keep-monthly", "0"],
      { STRONGROOM_STORE: url },
    );
    expect(pruned.code, pruned.stderr).toBe(0);
    await store.putIfAbsent(objectKey("shop", old, "manifest"), saved);
    const ledger = await readLedger(store, "shop", { audit: new StoreAuditLog(store, "db#shop"), now: new Date() });
    expect(ledger.backups.map((b) => b.backupId)).not.toContain(old);
    // The replayed bytes are the committed manifest: retired, as if its delete had been interrupted.
    expect(ledger.retired.map((b) => b.backupId)).toEqual([old]);
    const again = await runCli(
      ["prune", "--database-id", "shop", "--keep-daily", "1", "--keep-weekly", "0", "--keep-monthly", "0", "--json"],
      { STRONGROOM_STORE: url },
    );
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout).deleted).toEqual([expect.objectContaining({ backupId: old })]);
    expect(await store.list(`shop/backups/${old}/`)).toMatchObject({ objects: [] });
  });

  it("a manifest put back under a retired id with other bytes is reported, and stops prune", async () => {
    const { store, url } = await newStore("file");
    const now = Date.now();
    const old = await writeBackup(store, "shop", new Date(now - 3 * DAY));
    await writeBackup(store, "shop", new Date(now - 60_000));
    const args = ["prune", "--database-id", "shop", "--keep-daily", "1", "--keep-weekly", "0", "--keep-monthly", "0"];
    expect((await runCli(args, { STRONGROOM_STORE: url })).code).toBe(0);
    await store.putIfAbsent(objectKey("shop", old, "manifest"), "{}");
    const ledger = await readLedger(store, "shop", { audit: new StoreAuditLog(store, "db#shop"), now: new Date() });
    expect(ledger.retired).toEqual([]);
    expect(ledger.problems).toEqual([expect.objectContaining({ backupId: old, kind: "malformed" })]);
    const halted = await runCli(args, { STRONGROOM_STORE: url });
    expect(halted.code).not.toBe(0);
    expect(halted.stderr).toContain(old);
  });
});

describe("disaster recovery", () => {
  it("without the audit log nothing counts, until --trust-store says so loudly", async () => {
    const victim = await newStore("file");
    const key = await identityFile();
    const shop = await database("lostlog", "genuine");
    const made = await runCli(["backup", "--recipient", key.recipient, "--database-id", "shop"], {
      DATABASE_URL: shop.url,
      STRONGROOM_STORE: victim.url,
    });
    expect(made.code, made.stderr).toBe(0);
    await rm(path.join(dirOf(victim.url), ".strongroom", "audit"), { recursive: true });

    const env = { STRONGROOM_STORE: victim.url };
    const target = await createDatabase(pgUrl, "dr");
    const refused = await runCli(["restore", "--identity", key.file, "--target", target.url], env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("[UncommittedBackupError]");
    const trusted = await runCli(["restore", "--identity", key.file, "--target", target.url, "--trust-store"], env);
    expect(trusted.code, trusted.stderr).toBe(0);
    expect(trusted.stderr).toContain("--trust-store: counting every manifest in the store as committed");
    expect(await sql(target.url, "select v from who")).toEqual([{ v: "genuine" }]);
  });

  it("--audit none without a digest or --trust-store is a usage error that says what to pass", async () => {
    const victim = await newStore("file");
    const key = await identityFile();
    await writeBackup(victim.store, "shop", new Date());
    const r = await runCli(["verify", "--identity", key.file, "--audit", "none", "--integrity-only"], {
      STRONGROOM_STORE: victim.url,
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("nothing says which backups of shop are committed");
  });
});

describe("a store's own log, signed", () => {
  /** A forger's row in the victim's store log: well-formed, chained, signed by a key of its own or not at all. */
  async function forgeRow(
    store: StoreUnderTest["store"],
    databaseId: string,
    entry: Pick<AuditEntry, "event" | "backupId" | "details">,
    signer?: RowSigner,
  ): Promise<void> {
    await appendAudit(new StoreAuditLog(store, `db#${databaseId}`, signer ? { signer } : {}), {
      ...entry,
      at: new Date().toISOString(),
      actor: "cli",
      databaseId,
    });
  }

  it("counts only rows signed by a trusted signer: a forged backup.ok, unsigned or signed by the forger's own key, does not commit a planted backup", async () => {
    const victim = await newStore("file");
    const key = await identityFile();
    const keyDir = await tempDir();
    const signingKey = path.join(keyDir, "signing.key");
    const made = await runCli(["keygen", "--signing", "--out", signingKey, "--json"]);
    expect(made.code, made.stderr).toBe(0);
    const { signer } = JSON.parse(made.stdout) as { signer: string };
    expect(signer).toMatch(/^srsigner1[A-Za-z0-9_-]{43}$/);
    expect((await stat(signingKey)).mode & 0o777).toBe(0o600);

    const shop = await database("signed", "genuine");
    const genuine = await runCli(
      ["backup", "--recipient", key.recipient, "--database-id", "shop", "--signing-key", signingKey],
      { DATABASE_URL: shop.url, STRONGROOM_STORE: victim.url },
    );
    expect(genuine.code, genuine.stderr).toBe(0);

    // The forger plants a backup and commits it in the log as a backup.ok would.
    const plantedAt = new Date(Date.now() - 30_000);
    const planted = await writeBackup(victim.store, "shop", plantedAt, { commit: false });
    const sha = await manifestSha256(victim.store, "shop", planted);
    await forgeRow(victim.store, "shop", { event: "backup.ok", backupId: planted, details: { manifestSha256: sha } });
    const own = parseSigningKey(generateSigningKey().secret);
    const planted2 = await writeBackup(victim.store, "shop", new Date(Date.now() - 20_000), { commit: false });
    await forgeRow(
      victim.store,
      "shop",
      {
        event: "backup.ok",
        backupId: planted2,
        details: { manifestSha256: await manifestSha256(victim.store, "shop", planted2) },
      },
      own,
    );

    const env = { STRONGROOM_STORE: victim.url };
    for (const trust of [
      ["--signer", signer],
      ["--signing-key", signingKey],
    ]) {
      const listed = await runCli(["list", "--json", ...trust], env);
      expect(listed.code).toBe(1);
      const doc = JSON.parse(listed.stdout) as {
        backups: Manifest[];
        problems: Array<{ backupId: string; message: string }>;
      };
      expect(doc.backups.map((m) => m.backupId)).toEqual([genuine.stdout.trim()]);
      expect(doc.problems.map((p) => p.backupId).sort()).toEqual([planted, planted2].sort());
      expect(doc.problems[0]?.message).toContain("not one signed by a trusted signer");
    }
    // Prune, with the signer, stops on them; audit verify names them.
    const pruned = await runCli(["prune", "--database-id", "shop", "--signer", signer], env);
    expect(pruned.code).toBe(1);
    expect(pruned.stderr).toContain("[PruneHaltedError]");
    const audited = await runCli(["audit", "verify", "--scope", "db#shop", "--signer", signer], env);
    expect(audited.code).toBe(1);
    expect(audited.stdout + audited.stderr).toContain(`backup ${planted}: no backup.ok row records`);

    // Without a signer, the store's log is all there is, and a store writer can write it:
    // the planted backups count. That is what --signer is for (docs/architecture.md §5).
    const unsigned = JSON.parse((await runCli(["list", "--json"], env)).stdout) as { backups: Manifest[] };
    expect(unsigned.backups.map((m) => m.backupId)).toContain(planted2);
  });

  it("counts a verification only when its verify.ok row is signed by a trusted signer", async () => {
    const { store, url } = await newStore("file");
    const signing = generateSigningKey();
    const signer = parseSigningKey(signing.secret);
    const backupId = await writeBackup(store, "shop", new Date(Date.now() - 3_600_000), {
      audit: new StoreAuditLog(store, "db#shop", { signer }),
    });
    const sha = await manifestSha256(store, "shop", backupId);
    await forgeRow(store, "shop", { event: "verify.ok", backupId, details: { kind: "restore", manifestSha256: sha } });
    const status = await runCli(["status", "--json", "--signer", signing.signer], { STRONGROOM_STORE: url });
    const [s] = JSON.parse(status.stdout) as Array<{ problems: string[]; newestBackup: { backupId: string } }>;
    expect(s?.newestBackup.backupId).toBe(backupId);
    expect(s?.problems).toContain("no successful verification");
    await appendAudit(new StoreAuditLog(store, "db#shop", { signer }), {
      at: new Date().toISOString(),
      event: "verify.ok",
      actor: "cli",
      databaseId: "shop",
      backupId,
      details: { kind: "restore", manifestSha256: sha },
    });
    const after = await runCli(["status", "--json", "--signer", signing.signer], { STRONGROOM_STORE: url });
    expect(after.code, after.stderr).toBe(0);
  });

  it("a bad row planted at the head of a signed log breaks the chain visibly but never stops later signed backups from counting", async () => {
    const { store, url } = await newStore("file");
    const signing = generateSigningKey();
    const signer = parseSigningKey(signing.secret);
    const log = () => new StoreAuditLog(store, "db#shop", { signer });
    const first = await writeBackup(store, "shop", new Date(Date.now() - 7_200_000), { audit: log() });
    // The writer puts a well-formed row whose hash is wrong at the next sequence.
    const head = (await readAll(log())).at(-1);
    const bad = {
      ...nextRow(head, { at: new Date().toISOString(), event: "probe.ok", actor: "x" }),
      hash: "f".repeat(64),
    };
    await store.putIfAbsent(new StoreAuditLog(store, "db#shop").keyOf(bad.seq), `${JSON.stringify(bad)}\n`);
    const second = await writeBackup(store, "shop", new Date(Date.now() - 3_600_000), { audit: log() });
    const ledger = await readLedger(store, "shop", {
      audit: new StoreAuditLog(store, "db#shop", { signers: [signing.signer] }),
      now: new Date(),
    });
    expect(ledger.backups.map((b) => b.backupId)).toEqual([first, second]);
    expect(ledger.problems).toEqual([expect.objectContaining({ kind: "chain" })]);
    const status = await runCli(["status", "--json", "--signer", signing.signer], { STRONGROOM_STORE: url });
    const [s] = JSON.parse(status.stdout) as Array<{ newestBackup: { backupId: string }; problems: string[] }>;
    expect(s?.newestBackup.backupId).toBe(second);
    expect(s?.problems.some((p) => p.includes("is broken at row"))).toBe(true);
  });

  it("refuses a malformed --signer and an unreadable --signing-key with a clear error", async () => {
    const { url } = await newStore("file");
    const bad = await runCli(["list", "--signer", "srsigner1nope"], { STRONGROOM_STORE: url });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("not a strongroom signer");
    const missing = await runCli(["list", "--signing-key", "/nonexistent/key"], { STRONGROOM_STORE: url });
    expect(missing.stderr).toContain("cannot read signing key /nonexistent/key");
  });
});
