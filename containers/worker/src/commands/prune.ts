import { type Command, Option } from "commander";
import { UsageError } from "#core/errors.ts";
import type { GcPlan } from "#core/gc.ts";
import { summarizeGc } from "#core/gc.ts";
import { DEFAULT_POLICY, validatePolicy } from "#core/gfs.ts";
import type { BasePruneOutcome, PruneOutcome } from "#core/prune.ts";
import type { ObjectStore } from "#core/store/object-store.ts";
import {
  type CliContext,
  count,
  openStoreAt,
  printResult,
  type SigningFlags,
  storeAuditLogs,
  storeLogOptions,
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
      "delete backups that GFS retention no longer keeps (manifest first, then payload), then, with the same policy, base backups and the WAL below the oldest kept base (--signer: the database host's), then the database's garbage; each deletion is audited in the store's log",
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
      "\nExamples:\n  $ strongroom prune --store s3://acme-backups/pg --dry-run\n  $ strongroom prune --store file:///var/backups/pg --database-id shop --keep-daily 14 --time-zone Europe/Berlin\n  $ strongroom prune --store s3://acme-backups/pg --database-id shop --signer srsigner1… --dry-run",
    )
    .action(async (o: PruneFlags) => {
      const { pruneDatabase } = await import("#core/prune.ts");
      const policy = { daily: o.keepDaily, weekly: o.keepWeekly, monthly: o.keepMonthly, timeZone: o.timeZone };
      // A policy that cannot apply is a usage error, said before the store is read.
      validatePolicy(policy);
      const store = await openStoreAt(o.store);
      const databaseId = await pruneDatabaseId(store, o.databaseId);
      const bases = await baseSigners(store, databaseId, o);
      const outcome = await pruneDatabase({
        store,
        databaseId,
        policy,
        audit: await storeAuditLogs(store, o, ctx.log()),
        actor: "cli",
        dryRun: o.dryRun === true,
        ...(bases ? { bases } : {}),
      });
      if (outcome.plan.backupsFailing && outcome.plan.keep.length > 0) {
        ctx.log().warn("the newest backup is older than the daily window: backups are failing; keeping everything");
      }
      if (outcome.bases?.plan?.backupsFailing) {
        ctx
          .log()
          .warn(
            "the newest base backup is older than the daily window: base backups are failing; keeping every base and its WAL",
          );
      }
      printResult(ctx, o.json, pruneDocument(outcome), () => pruneText(outcome));
      // The logical series was pruned and the result printed; the halt is still a failure.
      if (outcome.bases?.halted) throw outcome.bases.halted;
    });
}

/**
 * As restore and verify choose: the one given (if the store has it), else the only one.
 * A database with base backups and no logical ones is pruned when named.
 */
async function pruneDatabaseId(store: ObjectStore, databaseId: string | undefined): Promise<string> {
  const { chooseDatabase } = await import("#core/ledger.ts");
  try {
    return await chooseDatabase(store, "latest", databaseId);
  } catch (err) {
    if (databaseId === undefined || (err as Error).name !== "BackupNotFoundError") throw err;
    const { hasBaseManifests } = await import("#core/pitr/base-prune.ts");
    if (await hasBaseManifests(store, databaseId)) return databaseId;
    throw err;
  }
}

/**
 * The signers whose base backups prune reads (--signer, and --signing-key's own, as
 * restore --pitr trusts), when the database has base backups or WAL; undefined when it
 * has neither. A base manifest with no signer to check it is refused, not guessed at:
 * counting every manifest would let a store writer plant the base that sets the WAL floor.
 */
async function baseSigners(
  store: ObjectStore,
  databaseId: string,
  o: SigningFlags,
): Promise<{ signers: ReadonlySet<string> } | undefined> {
  const { hasBaseManifests } = await import("#core/pitr/base-prune.ts");
  const { walPrefix } = await import("#core/keys.ts");
  const manifests = await hasBaseManifests(store, databaseId);
  const wal = (await store.list(walPrefix(databaseId))).objects.length > 0;
  if (!manifests && !wal) return undefined;
  const options = await storeLogOptions(o);
  const signers = new Set([...(options.signers ?? []), ...(options.signer ? [options.signer.signer] : [])]);
  if (manifests && signers.size === 0) {
    throw new UsageError(`${databaseId} has base backups, and prune counts only those a signer it trusts signed`, {
      hint: "pass --signer srsigner1… (the database host's, as for restore --pitr), or set STRONGROOM_SIGNERS; nothing was deleted",
    });
  }
  return { signers };
}

const keepOption = (flags: string, description: string, fallback: number, env: string) =>
  new Option(flags, description)
    .argParser(wholeNumber(flags.split(" ")[0] as string))
    .default(fallback)
    .env(env);

function pruneDocument({ dryRun, plan, deleted, garbage, bases }: PruneOutcome) {
  return {
    dryRun,
    backupsFailing: plan.backupsFailing,
    keep: plan.keep.map((k) => ({ backupId: k.backup.backupId, reasons: k.reasons })),
    expire: plan.expire.map((b) => b.backupId),
    deleted,
    ...(bases ? { bases: basesDocument(bases) } : {}),
    gc: summarizeGc(garbage, dryRun),
  };
}

/** The base backups and WAL part of `prune --json`: the plan, what was deleted, or the halt. */
function basesDocument(bases: BasePruneOutcome) {
  if (bases.halted) return { halted: { error: bases.halted.name, message: bases.halted.message } };
  const { plan, deleted } = bases;
  const doomed = plan.wal.delete;
  return {
    backupsFailing: plan.backupsFailing,
    keep: plan.keep.map((k) => ({ baseId: k.base.baseId, stoppedAt: k.base.stoppedAt, reasons: k.reasons })),
    expire: plan.expire.map((b) => b.baseId),
    wal: {
      keptFrom: plan.wal.keptFrom ?? null,
      ...(plan.wal.skipped ? { skipped: plan.wal.skipped } : {}),
      // Counted and bounded, not listed: an archive holds thousands of segments.
      delete: { count: doomed.length, first: doomed[0]?.name ?? null, last: doomed.at(-1)?.name ?? null },
      kept: plan.wal.kept,
      archivedSinceOldestStart: plan.wal.archivedSinceOldestStart,
      ignored: plan.wal.ignored,
    },
    ...(deleted ? { deleted } : {}),
  };
}

function pruneText({ dryRun, plan, garbage, bases }: PruneOutcome): string {
  const rows = [
    ...plan.keep.map((k) => [k.backup.backupId, "keep", k.reasons.join(", ")]),
    ...plan.expire.map((b) => [b.backupId, dryRun ? "would delete" : "deleted", "outside every retention window"]),
  ].sort((a, b) => (a[0] as string).localeCompare(b[0] as string));
  const lines = [
    rows.length ? table(["BACKUP ID", "ACTION", "WHY"], rows) : "no backups",
    `${dryRun ? "dry run: " : ""}${plan.keep.length} kept, ${plan.expire.length} ${dryRun ? "to delete" : "deleted"}`,
  ];
  if (bases) lines.push(...basesText(bases, dryRun));
  if (garbage.partials.length + garbage.orphans.length > 0) lines.push(gcLine(garbage, dryRun));
  return `${lines.join("\n")}\n`;
}

function basesText(bases: BasePruneOutcome, dryRun: boolean): string[] {
  if (bases.halted) return ["base backups and WAL: not pruned (see the error)"];
  const { plan } = bases;
  const rows = [
    ...plan.keep.map((k) => [k.base.baseId, k.base.stoppedAt, "keep", k.reasons.join(", ")]),
    ...plan.expire.map((b) => [
      b.baseId,
      b.stoppedAt,
      dryRun ? "would delete" : "deleted",
      "outside every retention window",
    ]),
  ].sort((a, b) => (a[0] as string).localeCompare(b[0] as string));
  const doomed = plan.wal.delete;
  const wal =
    plan.wal.keptFrom === undefined
      ? `WAL: no trusted base backup, so no WAL is deleted (${count(plan.wal.kept, "file")} kept)`
      : doomed.length === 0
        ? `WAL: nothing below ${plan.wal.keptFrom}, the oldest kept base's first segment; ${count(plan.wal.kept, "file")} kept`
        : `WAL: ${count(doomed.length, "file")} below ${plan.wal.keptFrom}, the oldest kept base's first segment, ${dryRun ? "to delete" : "deleted"} (${doomed[0]?.name} … ${doomed.at(-1)?.name}); ${count(plan.wal.kept, "file")} kept (a .history file always is)`;
  return [
    "",
    rows.length ? table(["BASE ID", "STOPPED AT", "ACTION", "WHY"], rows) : "no trusted base backups",
    `${dryRun ? "dry run: " : ""}${count(plan.keep.length, "base backup")} kept, ${plan.expire.length} ${dryRun ? "to delete" : "deleted"}`,
    wal,
    ...(plan.wal.archivedSinceOldestStart > 0
      ? [
          `WAL: ${count(plan.wal.archivedSinceOldestStart, "file")} below it kept, archived after the oldest kept base started (another line's, or the segment switched out as that base began)`,
        ]
      : []),
    ...(plan.wal.ignored.length > 0
      ? [`WAL: ${count(plan.wal.ignored.length, "object")} under wal/ with no WAL file name, left alone`]
      : []),
  ];
}

/** One line on what gc removed (or would remove); shared with the gc command. */
export function gcLine(plan: GcPlan, dryRun: boolean): string {
  return `${dryRun ? "gc dry run: would remove" : "gc: removed"} ${count(plan.partials.length, "partial upload")} and ${count(plan.orphans.length, "payload")} without a manifest, older than ${plan.cutoff.toISOString()}`;
}
