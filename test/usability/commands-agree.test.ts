import { chmod, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, inject, it } from "vitest";
import { appendAudit } from "#core/audit/audit-log.ts";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { startCluster } from "#worker/pg/scratch-cluster.ts";
import { writeBackup } from "../helpers/backups.ts";
import { runCli } from "../helpers/cli.ts";
import { allKeys, identityFile, newStore } from "../helpers/fixture.ts";
import { dbUrl } from "../helpers/pg.ts";
import { tempDir } from "../helpers/temp.ts";

const DAY = 86_400_000;

/** Issue 24, item 8: commands that answered the same question differently, or not at all. */
describe("commands agree", () => {
  it("prune works out the database as restore and verify do: the only one in the store, else the same error naming them", async () => {
    const { store, url } = await newStore("file");
    const key = await identityFile();
    const now = Date.now();
    for (let d = 0; d < 3; d++) await writeBackup(store, "shop", new Date(now - d * DAY - 60_000));
    const before = await allKeys(store);

    const one = await runCli(["prune", "--dry-run"], { STRONGROOM_STORE: url });
    expect(one.code).toBe(0);
    expect(one.stdout).toMatch(/\ndry run: 3 kept, 0 to delete\n$/);
    expect(await allKeys(store)).toEqual(before);

    await writeBackup(store, "blog", new Date(now - 60_000));
    const several =
      "strongroom: error: the store holds backups of several databases (blog, shop) [UsageError]\nHINT: pick one with --database-id\n";
    const prune = await runCli(["prune", "--dry-run"], { STRONGROOM_STORE: url });
    const restore = await runCli(["restore", "--target", "postgres://x@127.0.0.1:1/y", "--identity", key.file], {
      STRONGROOM_STORE: url,
    });
    for (const r of [prune, restore]) {
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(several);
    }
    expect((await allKeys(store)).filter((k) => !k.startsWith("blog/") && !k.includes("/db-blog/"))).toEqual(before);
  });

  it("audit show without --scope shows every chain, org first; a scope with no chain is refused, naming those there are", async () => {
    const { store, url } = await newStore("file");
    await writeBackup(store, "shop", new Date("2026-11-01T02:00:00Z"));
    await appendAudit(new StoreAuditLog(store, "org"), {
      at: "2026-11-02T00:00:00.000Z",
      event: "probe.ok",
      actor: "test",
      details: {},
    });
    const before = await allKeys(store);

    const all = await runCli(["audit", "show"], { STRONGROOM_STORE: url });
    expect(all.code).toBe(0);
    expect(all.stdout.split("\n").map((l) => l.split(/\s{2,}/).slice(0, 4))).toEqual([
      ["SCOPE", "SEQ", "AT", "EVENT"],
      ["org", "000000000001", "2026-11-02T00:00:00.000Z", "probe.ok"],
      ["db#shop", "000000000001", "2026-11-01T02:00:00.000Z", "backup.ok"],
      [""],
    ]);
    const json = JSON.parse((await runCli(["audit", "show", "--json"], { STRONGROOM_STORE: url })).stdout);
    expect(json.chains.map((c: { scope: string; rows: unknown[] }) => [c.scope, c.rows.length])).toEqual([
      ["org", 1],
      ["db#shop", 1],
    ]);

    const typo = await runCli(["audit", "show", "--scope", "db#shopp"], { STRONGROOM_STORE: url });
    expect(typo.code).toBe(2);
    expect(typo.stdout).toBe("");
    expect(typo.stderr).toBe(
      "strongroom: error: no audit chain db#shopp in this log [UsageError]\nHINT: did you mean db#shop? the log holds org, db#shop; leave out --scope to see them all\n",
    );
    expect(await allKeys(store)).toEqual(before);
  });

  it("says a role may not exist where the server will not say (a password), and that it does not where it does (trust)", async () => {
    const { store, url } = await newStore("file");
    const key = await identityFile();
    const backup = (databaseUrl: string) =>
      runCli(["backup", "--recipient", key.recipient, "--audit", "none"], {
        DATABASE_URL: databaseUrl,
        STRONGROOM_STORE: url,
      });

    const behindPassword = await backup(dbUrl(inject("pgUrl"), "postgres", "nobody", "Some-Pass-1"));
    expect(behindPassword.code).toBe(1);
    expect(behindPassword.stderr).toMatch(
      /^strongroom: error: authentication failed for nobody@127\.0\.0\.1:\d+\/postgres: the password is wrong, or role nobody does not exist \(the server does not say which\) \[DatabaseAuthError\]\nHINT: check the user name and the password \(in the URL, PGPASSWORD or ~\/\.pgpass\)\n$/,
    );

    // A server that trusts every connection from here names the missing role (SQLSTATE 28000).
    const dir = await tempDir("strongroom-trust-");
    await chmod(dir, 0o755); // the server may run as the postgres user
    const hba = path.join(dir, "pg_hba.conf");
    await writeFile(hba, "host all all 127.0.0.1/32 trust\n", { mode: 0o644 });
    const trusting = await startCluster(inject("pgBinDir"), "postgres", { settings: [`hba_file=${hba}`] });
    try {
      const trusted = await backup(`postgres://nobody@127.0.0.1:${trusting.port}/postgres`);
      expect(trusted.code).toBe(1);
      expect(trusted.stderr).toBe(
        `strongroom: error: role nobody does not exist on 127.0.0.1:${trusting.port} [DatabaseAuthError]\nHINT: check the user name in the URL (or PGUSER), or create the role\n`,
      );
    } finally {
      await trusting.stop();
    }
    expect(await allKeys(store)).toEqual([]);
  });

  it.for([
    ["restore", "--target", "postgres://x@127.0.0.1:1/y"],
    ["verify"],
    ["recover-table", "--table", "public.t", "--target", "postgres://x@127.0.0.1:1/y"],
    ["export-schema", "--schema", "public", "--target", "postgres://x@127.0.0.1:1/y"],
    ["prune"],
  ])(
    "%s refuses a mistyped --database-id, suggesting the id it was likely meant to be, and writes no audit row",
    async ([command, ...args]) => {
      const { store, url } = await newStore("file");
      const key = await identityFile();
      await writeBackup(store, "shop", new Date(Date.now() - 60_000));
      await writeBackup(store, "blog", new Date(Date.now() - 60_000));
      const before = await allKeys(store);

      const reads = command === "prune" ? [] : ["--identity", key.file];
      const r = await runCli([command as string, "--database-id", "shopp", ...reads, ...args], {
        STRONGROOM_STORE: url,
      });
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        "strongroom: error: no backups of database shopp in this store [BackupNotFoundError]\nHINT: did you mean shop? the store holds backups of blog, shop\n",
      );
      expect(await allKeys(store)).toEqual(before);
      expect(await StoreAuditLog.scopes(store)).toEqual(["db#blog", "db#shop"]);
    },
  );
});
