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
  maxWalAge?: string;
  maxBaseAge: string;
  signingKey?: string;
  signer?: string[];
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
      )
      .addOption(
        new Option(
          "--max-wal-age <duration>",
          "point-in-time recovery: not ready when the newest archived WAL is older (default: not gated)",
        ).env("STRONGROOM_MAX_WAL_AGE"),
      )
      .addOption(
        new Option(
          "--max-base-age <duration>",
          "point-in-time recovery: not ready when the newest base backup is older",
        )
          .default("8d")
          .env("STRONGROOM_MAX_BASE_AGE"),
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
A database with base backups (point-in-time recovery; needs --signer) is also judged by
them: a signed base within --max-base-age whose WAL is all archived with no gap after it,
the newest archived WAL within --max-wal-age when given, and a successful verify --pitr
within --max-verify-age that the audit log records. A database with base backups only
is judged by them alone.
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
      const store = o.store ? await openStoreAt(o.store) : undefined;
      const found = store
        ? await (async () => {
            const audit = await auditFor(store, o, ctx.log());
            return readStatus(store, { ...scope, ...(audit ? { audit } : {}), trustStore: o.trustStore === true });
          })()
        : await readStatusFromCatalog(new DynamoCatalogTable(new DynamoDBClient({}), o.table as string), scope);
      const statuses = store ? await withPitr(found, store, o, scope.now, limits.maxVerifyAgeMs, ctx) : found;
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

type WithPitr = DatabaseStatus & { pitr?: import("#core/pitr/pitr-status.ts").PitrStatus };

/**
 * Each database's point-in-time recovery beside its logical backups, where it has base
 * backups and a signer says whose count; one with base backups only is judged by them alone.
 */
async function withPitr(
  statuses: DatabaseStatus[],
  store: Awaited<ReturnType<typeof openStoreAt>>,
  o: StatusFlags,
  now: Date,
  maxVerifyAgeMs: number,
  ctx: CliContext,
): Promise<WithPitr[]> {
  const { storeLogOptions } = await import("./context.ts");
  const options = await storeLogOptions(o);
  const signers = new Set([...(options.signers ?? []), ...(options.signer ? [options.signer.signer] : [])]);
  const { databaseIdsWithBases } = await import("#core/pitr/bases.ts");
  const physical = o.databaseId ? [o.databaseId] : await databaseIdsWithBases(store);
  if (physical.length === 0) return statuses;
  if (signers.size === 0) {
    ctx
      .log()
      .warn("base backups are in the store, and no --signer says whose count: point-in-time recovery not shown", {
        databases: physical,
      });
    return statuses;
  }
  const { parseDuration } = await import("#core/gc.ts");
  const { readPitrStatus } = await import("#core/pitr/pitr-status.ts");
  const audit = await auditFor(store, o);
  const out: WithPitr[] = [...statuses];
  for (const databaseId of physical) {
    const pitr = await readPitrStatus({
      store,
      databaseId,
      signers,
      ...(audit ? { audit: audit(databaseId) } : {}),
      now,
      limits: {
        ...(o.maxWalAge ? { maxWalAgeMs: parseDuration(o.maxWalAge, "--max-wal-age") } : {}),
        maxBaseAgeMs: parseDuration(o.maxBaseAge, "--max-base-age"),
        maxVerifyAgeMs,
      },
      log: ctx.log(),
    });
    if (!pitr) continue;
    const at = out.findIndex((s) => s.databaseId === databaseId);
    const logical = out[at];
    if (logical?.newestBackup) {
      const problems = [...logical.problems, ...pitr.problems.map((p) => `point-in-time recovery: ${p}`)];
      out[at] = { ...logical, pitr, problems, ready: problems.length === 0 };
    } else {
      // Base backups only: the logical "no backup" says nothing about it.
      const problems = pitr.problems.map((p) => `point-in-time recovery: ${p}`);
      const entry: WithPitr = { databaseId, ready: pitr.ready, problems, days: [], pitr };
      if (at >= 0) out[at] = entry;
      else out.push(entry);
    }
  }
  return out.sort((a, b) => (a.databaseId < b.databaseId ? -1 : 1));
}

function since(hours: number | undefined): string {
  if (hours === undefined) return "-";
  if (hours >= 48) return `${Math.floor(hours / 24)}d ago`;
  // Under an hour, minutes: "(0h ago)" says nothing.
  return hours >= 1 ? `${Math.floor(hours)}h ago` : `${Math.max(1, Math.round(hours * 60))}m ago`;
}

function statusTable(statuses: WithPitr[]): string {
  const pitr = statuses.some((s) => s.pitr);
  const main = table(
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
  if (!pitr) return main;
  const physical = table(
    ["DATABASE", "NEWEST BASE", "RECOVERABLE", "NEWEST WAL", "LAST VERIFY --PITR"],
    statuses
      .filter((s) => s.pitr)
      .map((s) => {
        const p = s.pitr as NonNullable<WithPitr["pitr"]>;
        return [
          s.databaseId,
          p.newestBase ? `${p.newestBase.baseId} (${since(p.newestBase.ageHours)})` : "none",
          p.window ? `${p.window.from} to ${p.window.through}${p.window.gap ? ` (gap at ${p.window.gap})` : ""}` : "-",
          p.newestWal ? `${p.newestWal.name} (${since(p.newestWal.ageSeconds / 3600)})` : "none",
          p.lastVerification
            ? `${p.lastVerification.outcome === "verified" ? "ok" : p.lastVerification.outcome.toUpperCase()} ${p.lastVerification.baseId}${p.lastVerification.point ? ` to a ${p.lastVerification.point}` : ""}`
            : "never",
        ];
      }),
  );
  return `${main}\n\npoint-in-time recovery:\n${physical}`;
}
