import { type Command, Option } from "commander";
import type { GcPlan } from "#core/gc.ts";
import { summarizeGc } from "#core/gc.ts";
import { DEFAULT_POLICY, validatePolicy } from "#core/gfs.ts";
import type { PruneOutcome } from "#core/prune.ts";
import {
  type CliContext,
  count,
  openStoreAt,
  printResult,
  type SigningFlags,
  storeAuditLogs,
  table,
} from "./context.ts";
import {
  databaseIdOption,
  flagOption,
  jsonOption,
  signerOption,
  signingKeyOption,
  storeOption,
  wholeNumber,
} from "./options.ts";

interface PruneFlags extends SigningFlags {
  store: string;
  databaseId?: string;
  keepDaily: number;
  keepWeekly: number;
  keepMonthly: number;
  timeZone: string;
  dryRun?: boolean;
  json?: boolean;
}

export function pruneCommand(parent: Command, ctx: CliContext): void {
  parent
    .command("prune")
    .description(
      "delete backups that GFS retention no longer keeps (manifest first, then payload), then the database's garbage; each deletion is audited in the store's log",
    )
    .addOption(storeOption())
    .addOption(
      databaseIdOption("the database whose backups to prune, as `list` shows it (needed when the store holds several)"),
    )
    .addOption(keepOption("--keep-daily <n>", "days kept", DEFAULT_POLICY.daily, "STRONGROOM_KEEP_DAILY"))
    .addOption(keepOption("--keep-weekly <n>", "ISO weeks kept", DEFAULT_POLICY.weekly, "STRONGROOM_KEEP_WEEKLY"))
    .addOption(keepOption("--keep-monthly <n>", "months kept", DEFAULT_POLICY.monthly, "STRONGROOM_KEEP_MONTHLY"))
    .addOption(
      new Option("--time-zone <tz>", "IANA zone for day/week/month boundaries")
        .default(DEFAULT_POLICY.timeZone)
        .env("STRONGROOM_TIME_ZONE"),
    )
    .addOption(flagOption("--dry-run", "print the plan, delete nothing", "STRONGROOM_DRY_RUN"))
    .addOption(signingKeyOption())
    .addOption(signerOption())
    .addOption(jsonOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ strongroom prune --store s3://acme-backups/pg --dry-run\n  $ strongroom prune --store file:///var/backups/pg --database-id shop --keep-daily 14 --time-zone Europe/Berlin",
    )
    .action(async (o: PruneFlags) => {
      const { pruneDatabase } = await import("#core/prune.ts");
      const { chooseDatabase } = await import("#core/ledger.ts");
      const policy = { daily: o.keepDaily, weekly: o.keepWeekly, monthly: o.keepMonthly, timeZone: o.timeZone };
      // A policy that cannot apply is a usage error, said before the store is read.
      validatePolicy(policy);
      const store = await openStoreAt(o.store);
      const outcome = await pruneDatabase({
        store,
        // As restore and verify choose: the one given (if the store has it), else the only one.
        databaseId: await chooseDatabase(store, "latest", o.databaseId),
        policy,
        audit: await storeAuditLogs(store, o, ctx.log()),
        actor: "cli",
        dryRun: o.dryRun === true,
      });
      if (outcome.plan.backupsFailing && outcome.plan.keep.length > 0) {
        ctx.log().warn("the newest backup is older than the daily window: backups are failing; keeping everything");
      }
      printResult(ctx, o.json, pruneDocument(outcome), () => pruneText(outcome));
    });
}

const keepOption = (flags: string, description: string, fallback: number, env: string) =>
  new Option(flags, description)
    .argParser(wholeNumber(flags.split(" ")[0] as string))
    .default(fallback)
    .env(env);

function pruneDocument({ dryRun, plan, deleted, garbage }: PruneOutcome) {
  return {
    dryRun,
    backupsFailing: plan.backupsFailing,
    keep: plan.keep.map((k) => ({ backupId: k.backup.backupId, reasons: k.reasons })),
    expire: plan.expire.map((b) => b.backupId),
    deleted,
    gc: summarizeGc(garbage, dryRun),
  };
}

function pruneText({ dryRun, plan, garbage }: PruneOutcome): string {
  const rows = [
    ...plan.keep.map((k) => [k.backup.backupId, "keep", k.reasons.join(", ")]),
    ...plan.expire.map((b) => [b.backupId, dryRun ? "would delete" : "deleted", "outside every retention window"]),
  ].sort((a, b) => (a[0] as string).localeCompare(b[0] as string));
  const lines = [
    rows.length ? table(["BACKUP ID", "ACTION", "WHY"], rows) : "no backups",
    `${dryRun ? "dry run: " : ""}${plan.keep.length} kept, ${plan.expire.length} ${dryRun ? "to delete" : "deleted"}`,
  ];
  if (garbage.partials.length + garbage.orphans.length > 0) lines.push(gcLine(garbage, dryRun));
  return `${lines.join("\n")}\n`;
}

/** One line on what gc removed (or would remove); shared with the gc command. */
export function gcLine(plan: GcPlan, dryRun: boolean): string {
  return `${dryRun ? "gc dry run: would remove" : "gc: removed"} ${count(plan.partials.length, "partial upload")} and ${count(plan.orphans.length, "payload")} without a manifest, older than ${plan.cutoff.toISOString()}`;
}
