import { describe, expect, inject, it } from "vitest";
import { readAll } from "#core/audit/audit-log.ts";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { runCli } from "../helpers/cli.ts";
import { backedUpByCli, identityFile, newStore } from "../helpers/fixture.ts";
import { createDatabase, sql } from "../helpers/pg.ts";

/** Usability item 6: storedBytes means one thing everywhere. */
describe("backup report", () => {
  it("reports the same storedBytes (every stored object) in the log, the audit row and the manifest", async () => {
    const db = await createDatabase(inject("pgUrl"), "report");
    await sql(db.url, "create table t as select g, md5(g::text) as v from generate_series(1, 20000) g");
    const store = await newStore("file");
    const key = await identityFile();
    const r = await runCli(["--log-format", "json", "backup", "--recipient", key.recipient, "--json"], {
      DATABASE_URL: db.url,
      STRONGROOM_STORE: store.url,
    });
    expect(r.code).toBe(0);
    const manifest = JSON.parse(r.stdout);
    const total = manifest.objects.reduce((n: number, o: { storedBytes: number }) => n + o.storedBytes, 0);
    const logged = r.stderr
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .find((l) => l.message === "backup committed");
    expect(logged.storedBytes).toBe(total);
    const ok = (await readAll(new StoreAuditLog(store.store, `db#${db.name}`))).find(
      (row) => row.event === "backup.ok",
    );
    expect(ok?.details?.storedBytes).toBe(total);
    expect(total).toBeGreaterThan(manifest.objects[0].storedBytes);
  });

  it("speaks of 1 table and 1 row, and rounds the seconds people read", async () => {
    const { store, key } = await backedUpByCli(inject("pgUrl"), "single", "create table only_one as select 1 as x");
    const target = await createDatabase(inject("pgUrl"), "single_target");
    const r = await runCli(["restore", "--identity", key.file], {
      STRONGROOM_STORE: store.url,
      STRONGROOM_TARGET_URL: target.url,
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/: 1 table, 1 row, counts verified\n$/);
    expect(r.stderr).toMatch(/restore verified .* seconds=\d+(\.\d{1,2})? /);
  });
});
