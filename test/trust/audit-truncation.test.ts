import { DeleteItemCommand } from "@aws-sdk/client-dynamodb";
import { describe, expect, it } from "vitest";
import { readAll } from "#core/audit/audit-log.ts";
import { DynamoAuditLog } from "#core/audit/dynamo-audit-log.ts";
import { writeBackup, writeVerification } from "../helpers/backups.ts";
import { runCli } from "../helpers/cli.ts";
import { createTable, dynamoClient } from "../helpers/dynamo.ts";
import { newStore } from "../helpers/fixture.ts";

/**
 * A deployed chain's newest rows deleted (someone with more than the flows' PutItem-only
 * rights): a hash chain cannot see its own tail go, and the flows' manifests carry no
 * anchor row. What counts is still decided by backup.ok rows, so a backup whose row went
 * is reported, never silently believed; a verification whose row went only stops counting.
 */
describe("a deployed audit chain cut short", () => {
  it("names the backup whose backup.ok row was deleted from the end, and no longer counts its verification", async () => {
    const ddb = dynamoClient();
    const table = await createTable(ddb, "audit");
    const { store, url } = await newStore("s3");
    const audit = new DynamoAuditLog(ddb, table, "db#shop");
    const now = Date.now();
    const first = await writeBackup(store, "shop", new Date(now - 2 * 3_600_000), { audit });
    const second = await writeBackup(store, "shop", new Date(now - 3_600_000), { audit });
    await writeVerification(store, "shop", second, new Date(now - 1_800_000), true, "restore", audit);
    const env = { STRONGROOM_STORE: url };
    const before = await runCli(["audit", "verify", "--table", table, "--scope", "db#shop"], env);
    expect(before.code, before.stdout + before.stderr).toBe(0);

    // The verify.ok and the second backup.ok go: the newest two rows.
    const rows = await readAll(audit);
    for (const row of rows.slice(-2)) {
      await ddb.send(new DeleteItemCommand({ TableName: table, Key: { pk: { S: "db#shop" }, sk: { S: row.seq } } }));
    }
    const after = await runCli(["audit", "verify", "--table", table, "--scope", "db#shop"], env);
    expect(after.code).toBe(1);
    expect(after.stdout + after.stderr).toContain(`backup ${second}: no backup.ok row records its manifest's SHA-256`);

    const listed = JSON.parse((await runCli(["list", "--json", "--audit-table", table], env)).stdout) as {
      backups: Array<{ backupId: string }>;
      problems: Array<{ backupId: string }>;
    };
    expect(listed.backups.map((b) => b.backupId)).toEqual([first]);
    expect(listed.problems.map((p) => p.backupId)).toEqual([second]);
    const status = JSON.parse((await runCli(["status", "--json", "--audit-table", table], env)).stdout) as Array<{
      problems: string[];
    }>;
    expect(status[0]?.problems).toContain("no successful verification");
  });
});
