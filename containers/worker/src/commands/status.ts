import { type Command, Option } from "commander";
import { NotReadyError, UsageError } from "#core/errors.ts";
import type { DatabaseStatus } from "#core/status.ts";
import { auditFor, type CliContext, openStoreAt, printResult, table } from "./context.ts";
import { databaseIdOption, jsonOption, readsLedger } from "./options.ts";

interface StatusFlags {
  store?: string;
  table?: string;
  databaseId?: string;
  maxVerifyAge: string;
  maxBackupAge: string;
  audit: string;
  auditTable?: string;
  trustStore?: boolean;
  json?: boolean;
}

const MARKS: Record<DatabaseStatus["days"][number]["mark"], string> = {
  verified: "V",
  "verify-failed": "F",
  "verify-inconclusive": "?",
  backup: "b",
  none: ".",
};

export function statusCommand(parent: Command, ctx: CliContext): void {
  readsLedger(
    parent
      .command("status")
      .description(
        "per database: the newest backup, the newest verified one, the last verification; exit 1 when not ready",
      )
      .addOption(new Option("--store <url>", "file:///absolute/dir or s3://bucket[/prefix]").env("STRONGROOM_STORE"))
      .addOption(
        new Option("--table <name>", "read the deployed catalog table instead of the store (DynamoDB)").env(
          "STRONGROOM_CATALOG_TABLE",
        ),
      )
      .addOption(databaseIdOption("only this database (default: every database in the store)"))
      .addOption(
        new Option("--max-verify-age <duration>", "not ready when the newest successful verification is older")
          .default("8d")
          .env("STRONGROOM_MAX_VERIFY_AGE"),
      )
      .addOption(
        new Option("--max-backup-age <duration>", "not ready when the newest backup is older")
          .default("26h")
          .env("STRONGROOM_MAX_BACKUP_AGE"),
      ),
  )
    .addOption(jsonOption())
    .addHelpText(
      "after",
      `
Only committed backups (a backup.ok audit row records the manifest's SHA-256) and
verifications the audit log records for exactly those manifests count; any other
manifest in the store is a problem, and the database is not ready.
Ready means: a backup within --max-backup-age, a successful verification within
--max-verify-age, and the last verification neither failed nor inconclusive (the
verifier lacked an extension or a locale the backup needs: not verified, not failed).
The 14-day record has one mark per day (UTC, oldest first): V verified, F verification
failed, ? inconclusive only, b backup only, . nothing.

Examples:
  $ strongroom status --store s3://acme-backups/pg
  $ strongroom status --store file:///var/backups/pg --database-id shop --max-verify-age 2d --json
  $ strongroom status --table strongroom-TablesCatalog… (deployed: the catalog VerifyFlow and BackupFlow keep)`,
    )
    .action(async (o: StatusFlags) => {
      const { DynamoDBClient } = await import("@aws-sdk/client-dynamodb");
      const { DynamoCatalogTable } = await import("#core/catalog/dynamo-catalog-table.ts");
      const { parseDuration } = await import("#core/gc.ts");
      const { DEFAULT_LIMITS, readStatus, readStatusFromCatalog } = await import("#core/status.ts");
      const limits = {
        maxVerifyAgeMs: o.maxVerifyAge
          ? parseDuration(o.maxVerifyAge, "--max-verify-age")
          : DEFAULT_LIMITS.maxVerifyAgeMs,
        maxBackupAgeMs: o.maxBackupAge
          ? parseDuration(o.maxBackupAge, "--max-backup-age")
          : DEFAULT_LIMITS.maxBackupAgeMs,
      };
      const scope = { ...(o.databaseId ? { databaseId: o.databaseId } : {}), now: new Date(), limits };
      if (!o.store === !o.table) {
        throw new UsageError("status reads one of --store or --table", {
          hint: "--store URL (local or S3), or --table NAME (the deployed catalog; its AuditTable's sibling in the stack outputs)",
        });
      }
      const statuses = o.table
        ? await readStatusFromCatalog(new DynamoCatalogTable(new DynamoDBClient({}), o.table), scope)
        : await (async () => {
            const store = await openStoreAt(o.store as string);
            const audit = await auditFor(store, o, ctx.log());
            return readStatus(store, { ...scope, ...(audit ? { audit } : {}), trustStore: o.trustStore === true });
          })();
      printResult(ctx, o.json, statuses, () => (statuses.length ? `${statusTable(statuses)}\n` : "no backups\n"));
      const notReady = statuses.filter((s) => !s.ready);
      if (statuses.length === 0 || notReady.length > 0) {
        const why = notReady.map((s) => `${s.databaseId}: ${s.problems.join("; ")}`);
        throw new NotReadyError(statuses.length === 0 ? "no backups in the store" : `not ready: ${why.join(" | ")}`, {
          hint: "run a backup, then `strongroom verify`; or schedule both (the deployed BackupFlow and VerifyFlow)",
        });
      }
    });
}

function since(hours: number | undefined): string {
  if (hours === undefined) return "-";
  if (hours >= 48) return `${Math.floor(hours / 24)}d ago`;
  // Under an hour, minutes: "(0h ago)" says nothing.
  return hours >= 1 ? `${Math.floor(hours)}h ago` : `${Math.max(1, Math.round(hours * 60))}m ago`;
}

function statusTable(statuses: DatabaseStatus[]): string {
  return table(
    ["DATABASE", "READY", "NEWEST BACKUP", "NEWEST VERIFIED", "LAST VERIFICATION", "14 DAYS"],
    statuses.map((s) => [
      s.databaseId,
      s.ready ? "yes" : "NO",
      s.newestBackup ? `${s.newestBackup.backupId} (${since(s.newestBackup.ageHours)})` : "none",
      s.newestVerified ? `${s.newestVerified.backupId} (${since(s.newestVerified.ageHours)})` : "never",
      s.lastVerification
        ? s.lastVerification.outcome === "inconclusive"
          ? "INCONCLUSIVE"
          : `${s.lastVerification.ok ? (s.lastVerification.excluded ? `verified with exclusions (without ${s.lastVerification.excluded.join(", ")})` : "ok") : `FAILED: ${s.lastVerification.failedChecks.join(", ")}`}, restore ${s.lastVerification.restoreSeconds.toFixed(1)} s`
        : "-",
      s.days.map((d) => MARKS[d.mark]).join(""),
    ]),
  );
}
