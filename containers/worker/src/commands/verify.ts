import { readFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { type Command, Option } from "commander";
import { count } from "#core/count.ts";
import {
  EXIT_INCONCLUSIVE,
  fileProblem,
  UsageError,
  VerificationFailedError,
  VerificationInconclusiveError,
} from "#core/errors.ts";
import { verifyJobsFor } from "#core/flows/verify-storage.ts";
import { missingHint } from "../pg/requirements.ts";
import { type CliContext, openBackupJob, printResult, withProgress } from "./context.ts";
import { checkedOption, flagOption, jsonOption, positiveInt, readsBackup, splitList } from "./options.ts";

interface VerifyFlags {
  store: string;
  backup: string;
  identity?: string;
  databaseId?: string;
  checks?: string;
  scratch: string;
  scratchDir?: string;
  deep?: boolean;
  keep?: boolean;
  integrityOnly?: boolean;
  skipExtension?: string[];
  jobs?: number;
  stagingDir?: string;
  audit: string;
  auditTable?: string;
  json?: boolean;
}

export function verifyCommand(parent: Command, ctx: CliContext): void {
  readsBackup(
    parent
      .command("verify")
      .description(
        "prove a backup restores and is complete: restore it into a scratch PostgreSQL, check it, record the result",
      ),
    "verify",
  )
    .addOption(
      new Option("--checks <file>", "SQL file: each statement must return one row holding true, or no rows").env(
        "STRONGROOM_CHECKS",
      ),
    )
    .addOption(
      new Option(
        "--scratch <auto|url>",
        "auto: a throwaway cluster of the backup's server major; or a postgres:// URL of a server to create a scratch database on",
      )
        .default("auto")
        .env("STRONGROOM_SCRATCH"),
    )
    .addOption(
      new Option("--scratch-dir <dir>", "where the auto cluster's directory goes (default: the temp dir)").env(
        "STRONGROOM_SCRATCH_DIR",
      ),
    )
    .addOption(
      new Option(
        "--skip-extension <name>",
        "restore and check without this extension and everything the archive records as depending on it (one no verifier has, such as RDS's aws_s3); repeatable. The result is verified with exclusions",
      )
        .argParser(splitList)
        .env("STRONGROOM_SKIP_EXTENSIONS"),
    )
    .addOption(
      checkedOption(
        "--jobs <n>",
        `parallel pg_restore jobs; above 1 the decrypted archive is staged beside the scratch cluster (default: ${defaultVerifyJobs()} here: the cores from 4 up, else 1)`,
        positiveInt("--jobs"),
      ).env("STRONGROOM_VERIFY_JOBS"),
    )
    .addOption(
      new Option(
        "--staging-dir <dir>",
        "with --scratch URL and --jobs > 1: where the archive is staged (default: the temp dir)",
      ).env("STRONGROOM_STAGING_DIR"),
    )
    .addOption(flagOption("--deep", "also run amcheck over every index and table", "STRONGROOM_DEEP"))
    .addOption(
      flagOption("--keep", "leave the scratch database (and cluster directory) for inspection", "STRONGROOM_KEEP"),
    )
    .addOption(
      flagOption(
        "--integrity-only",
        "no restore: download, decrypt and decompress every object and check it against the manifest (cheap; never counts as verified)",
        "STRONGROOM_INTEGRITY_ONLY",
      ),
    )
    .addOption(jsonOption())
    .addHelpText(
      "after",
      `
Checks: restore (pg_restore --single-transaction --exit-on-error, with the backup's roles),
row-counts (every table as at dump time, none missing or extra), schema (the restored
schema fingerprints as dumped), constraints (none NOT VALID that was valid; foreign keys
hold), amcheck (--deep), user-sql (--checks). With --skip-extension, every check runs on what
was restored, and the result is "verified with exclusions": it counts as verified, for the
objects that do not depend on the skipped extensions. The full result is stored encrypted under
<db>/verifications/<backup>/, a summary without table names beside it; prune never
deletes the newest successfully verified backup. Exit 0 verified, 1 failed, 3 inconclusive
(the scratch server lacks an extension, version or locale the backup needs).

Examples:
  $ strongroom verify --store s3://acme-backups/pg --identity identity.txt
  $ strongroom verify --store file:///var/backups/pg --database-id shop --checks checks.sql --deep --json
  $ strongroom verify --store s3://acme-backups/pg --identity id.txt --scratch postgres://verify@scratch-host/postgres`,
    )
    .action(async (o: VerifyFlags, command: Command) => {
      const { parsePgUrl } = await import("../pg/conn.ts");
      const { verify } = await import("../pipeline/verify.ts");
      if (o.integrityOnly) {
        const clash = ["checks", "deep", "keep", "scratchDir", "skipExtension", "jobs"].filter(
          (k) => o[k as keyof VerifyFlags] !== undefined && o[k as keyof VerifyFlags] !== false,
        );
        if (command.getOptionValueSource("scratch") === "cli") clash.push("scratch");
        if (clash.length > 0) {
          throw new UsageError(`--integrity-only restores nothing, so it takes no --${clash.map(kebab).join(", --")}`, {
            hint: "run `strongroom verify` without --integrity-only to restore and check",
          });
        }
      }
      // A file that cannot be read is a usage error before anything is opened or audited.
      const checks = o.checks ? { file: o.checks, text: await readChecks(o.checks) } : undefined;
      const job = await openBackupJob(o, "verify", ctx);
      const result = await withProgress(ctx, "verify", (progress) =>
        verify({
          ...job,
          scratch: o.scratch === "auto" ? "auto" : parsePgUrl(o.scratch, "--scratch"),
          ...(checks ? { checks } : {}),
          ...(o.scratchDir ? { scratchDir: o.scratchDir } : {}),
          deep: o.deep === true,
          keep: o.keep === true,
          integrityOnly: o.integrityOnly === true,
          ...(o.skipExtension?.length ? { skipExtensions: o.skipExtension } : {}),
          jobs: o.jobs ?? defaultVerifyJobs(),
          ...(o.stagingDir ? { stagingDir: o.stagingDir } : {}),
          ...progress,
        }),
      );
      printResult(ctx, o.json, result, () => {
        const lines = result.checks.map(
          (c) =>
            `${c.skipped ? "-" : c.ok ? "✓" : result.outcome === "inconclusive" ? "?" : "✗"} ${c.name.padEnd(11)} ${c.seconds.toFixed(1).padStart(6)} s  ${c.detail}`,
        );
        const verdict =
          result.kind === "integrity"
            ? `${result.ok ? "intact" : "NOT intact"}: ${result.databaseId}/${result.backupId} (integrity only: not restored, so not verified)`
            : result.ok
              ? `verified ${result.excluded ? `with exclusions (without ${result.excluded.extensions.join(", ")}: ${count(result.excluded.objects, "archive entry", "archive entries")} left out) ` : ""}${result.databaseId}/${result.backupId}: restore ${result.rto.restoreSeconds.toFixed(1)} s, checks ${result.rto.checksSeconds.toFixed(1)} s`
              : result.outcome === "inconclusive"
                ? `${result.databaseId}/${result.backupId} INCONCLUSIVE: not verified and not failed; the scratch server lacks what the backup needs`
                : `${result.databaseId}/${result.backupId} FAILED verification`;
        return `${lines.join("\n")}\n${verdict}\n${result.kept ? `kept: ${result.kept}\n` : ""}`;
      });
      if (result.outcome === "inconclusive") {
        const missing = result.missing ?? [];
        throw new VerificationInconclusiveError(
          `verification of ${result.backupId} is inconclusive (exit ${EXIT_INCONCLUSIVE}): the scratch server lacks ${missing.map((m) => `${m.kind === "locale" ? "locale" : "extension"} ${m.name}${m.version ? ` ${m.version}` : ""}`).join(", ")}`,
          { hint: missingHint(missing, o.scratch === "auto" ? "auto" : "url") },
        );
      }
      if (!result.ok) {
        const failed = result.checks.filter((c) => !c.ok).map((c) => c.name);
        throw new VerificationFailedError(`backup ${result.backupId} failed verification: ${failed.join(", ")}`, {
          hint: `each check's detail is above${o.json ? " (in the JSON result)" : ""} and in ${result.stored.full} (encrypted); until it is explained, count on an older backup that verified`,
        });
      }
    });
}

/**
 * Staging costs a pass over the archive that a streamed restore overlaps with pg_restore.
 * Measured on 2 cores (npm run bench:verify, 827 MB of dump): -j 2 took 1.26× the serial
 * restore, so below 4 cores verify streams; from 4 it stages and runs -j <cores>.
 */
function defaultVerifyJobs(): number {
  // The same rule VerifyFlow's planner sizes the task's storage by.
  return verifyJobsFor(availableParallelism());
}

async function readChecks(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read --checks ${file}: ${fileProblem(err)}`, {
      hint: "pass a file of SQL statements, each returning one row holding true, or no rows",
    });
  }
}

const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
