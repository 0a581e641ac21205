import { type Command, Option } from "commander";
import { type CliContext, openStoreAt, printResult, type SigningFlags, storeAuditLogs } from "./context.ts";
import { databaseIdOption, flagOption, jsonOption, signerOption, signingKeyOption, storeOption } from "./options.ts";
import { gcLine } from "./prune.ts";

export function gcCommand(parent: Command, ctx: CliContext): void {
  parent
    .command("gc")
    .description(
      "remove what failed backups left behind: partial uploads, payloads without a manifest and uncommitted base backups, older than the grace period; each deletion is audited",
    )
    .addOption(storeOption())
    .addOption(databaseIdOption("only this database's garbage (default: every database)"))
    .addOption(
      new Option("--older-than <duration>", "grace period (at least 1h): younger objects may be a backup being written")
        .default("24h")
        .env("STRONGROOM_GC_OLDER_THAN"),
    )
    .addOption(flagOption("--dry-run", "print what would be removed, remove nothing", "STRONGROOM_DRY_RUN"))
    .addOption(signingKeyOption())
    .addOption(signerOption())
    .addOption(jsonOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ strongroom gc --store s3://acme-backups/pg --dry-run\n  $ strongroom gc --store file:///var/backups/pg --older-than 48h --json",
    )
    .action(
      async (
        o: { store: string; databaseId?: string; olderThan: string; dryRun?: boolean; json?: boolean } & SigningFlags,
      ) => {
        const { executeGc, orphanFolder, parseDuration, planGc, summarizeGc } = await import("#core/gc.ts");
        const store = await openStoreAt(o.store);
        const dryRun = o.dryRun === true;
        const plan = await planGc(store, {
          now: new Date(),
          graceMs: parseDuration(o.olderThan, "--older-than"),
          ...(o.databaseId ? { databaseId: o.databaseId } : {}),
        });
        if (!dryRun) await executeGc(store, plan, await storeAuditLogs(store, o), "cli", () => new Date());
        printResult(ctx, o.json, summarizeGc(plan, dryRun), () =>
          [
            ...plan.orphans.map(
              (orphan) =>
                `${dryRun ? "would remove" : "removed"} ${orphanFolder(orphan)} (${orphan.objects.length} objects, ${orphan.kind === "base" ? "an uncommitted base backup" : "no manifest"})\n`,
            ),
            `${gcLine(plan, dryRun)}\n`,
          ].join(""),
        );
      },
    );
}
