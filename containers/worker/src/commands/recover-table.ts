import { type Command, Option } from "commander";
import { parseTableName } from "../pg/table-name.ts";
import { type CliContext, count, openBackupJob, printResult, withProgress } from "./context.ts";
import { jsonOption, readsBackup } from "./options.ts";

interface RecoverTableFlags {
  store: string;
  backup: string;
  identity?: string;
  databaseId?: string;
  table: string[];
  target: string;
  suffix: string;
  audit: string;
  auditTable?: string;
  json?: boolean;
}

export function recoverTableCommand(parent: Command, ctx: CliContext): void {
  readsBackup(
    parent
      .command("recover-table")
      .description(
        "get tables back from a backup as <name>_recovered beside the originals, without restoring the database",
      ),
    "read",
  )
    .addOption(
      new Option(
        "--table <schema.name>",
        'a table to recover (repeatable); quote parts with capitals, spaces or dots: \'"Sales Ops"."Orders ✓"\'',
      )
        .argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value])
        .makeOptionMandatory(),
    )
    .addOption(
      new Option("--target <url>", "postgres:// URL of the database to recover into (it may be the live one)")
        .env("STRONGROOM_TARGET_URL")
        .makeOptionMandatory(),
    )
    .addOption(new Option("--suffix <text>", "appended to each recovered table's name").default("_recovered"))
    .addOption(jsonOption())
    .addHelpText(
      "after",
      `
Each table comes back beside the original as <name><suffix>, in the same schema: its
columns, defaults (except those drawing on a sequence) and check constraints, and its
rows (a partitioned table's from all its partitions), with the row count checked against
the backup. No foreign keys, triggers, indexes or inheritance: nothing that would fire or
reach the live tables. The original is never touched; an existing <name><suffix> is
refused. SQL to put rows back is printed, never run.

Examples:
  $ strongroom recover-table --store s3://acme-backups/pg --identity id.txt --table sales.orders --target postgres://localhost/shop
  $ strongroom recover-table --store file:///var/backups/pg --backup 20260421T020000Z-abc234 --identity id.txt \\
      --table '"Sales Ops"."Orders ✓"' --table public.customers --target postgres://localhost/shop --json`,
    )
    .action(async (o: RecoverTableFlags) => {
      const { parsePgUrl } = await import("../pg/conn.ts");
      const { recoverTables } = await import("../pipeline/recover-table.ts");
      const tables = o.table.map(parseTableName);
      const job = await openBackupJob(o, "recover-table", ctx);
      const result = await withProgress(ctx, "recover", (progress) =>
        recoverTables({
          ...job,
          tables,
          target: parsePgUrl(o.target, "--target"),
          suffix: o.suffix,
          ...progress,
        }),
      );
      printResult(ctx, o.json, result, () => {
        const lines = result.tables.flatMap((t) => [
          `recovered ${t.table} as ${t.recovered}: ${count(t.rows, "row")}, as in backup ${result.backupId}${t.skippedDefaults.length ? ` (defaults not recovered, they use a sequence: ${t.skippedDefaults.join(", ")})` : ""}`,
          "",
          ...t.copyBack,
          "",
        ]);
        return `${lines.join("\n")}\n`;
      });
    });
}
