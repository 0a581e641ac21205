import { randomBytes, randomUUID } from "node:crypto";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { type Command, Option } from "commander";
import { type AuditLog, appendAudit, readAll } from "#core/audit/audit-log.ts";
import { type ChainVerdict, scopesToVerify, verifyScope } from "#core/audit/audit-verify.ts";
import { DynamoAuditLog, dynamoAuditScopes } from "#core/audit/dynamo-audit-log.ts";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { listManifests } from "#core/backup-index.ts";
import { catalogRecord, DynamoCatalogTable } from "#core/catalog.ts";
import { AuditVerificationError, StrongroomError, UsageError } from "#core/errors.ts";
import { collectGarbage, executeGc, type GcPlan, parseDuration, planGc } from "#core/gc.ts";
import { DEFAULT_POLICY, type RetentionPolicy } from "#core/gfs.ts";
import type { Logger } from "#core/log.ts";
import { probeStore } from "#core/probe.ts";
import { executePrune, planPrune } from "#core/prune.ts";
import type { ObjectStore } from "#core/store/object-store.ts";
import { openStore } from "#core/store/open-store.ts";
import {
  absoluteStoreUrl,
  type CliContext,
  databaseIdOption,
  flagOption,
  jsonOption,
  storeOption,
  table,
} from "../cli-common.ts";

/** The control plane in local mode: the same pure modules the Lambdas wrap. */

const storeLogs = (store: ObjectStore) => (scope: string) => new StoreAuditLog(store, scope);

function gcSummary(plan: GcPlan, dryRun: boolean) {
  return {
    dryRun,
    olderThan: plan.cutoff.toISOString(),
    partials: plan.partials.length,
    orphans: plan.orphans.map((g) => ({
      databaseId: g.databaseId,
      backupId: g.backupId,
      objects: g.objects.length,
      bytes: g.objects.reduce((n, x) => n + x.bytes, 0),
    })),
  };
}

function gcLine(plan: GcPlan, dryRun: boolean): string {
  return `${dryRun ? "gc dry run: would remove" : "gc: removed"} ${plan.partials.length} partial upload(s) and ${plan.orphans.length} payload(s) without a manifest, older than ${plan.cutoff.toISOString()}`;
}

const count = (flag: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    throw new UsageError(`${flag} must be a whole number >= 0, got ${JSON.stringify(value)}`);
  return n;
};

/** Where an audit command reads: --store (the store's own log) or --table (DynamoDB), and which chain. */
function auditCommand(parent: Command, name: string, scope: Option): Command {
  return parent
    .command(name)
    .addOption(
      new Option("--store <url>", "store holding the log (local mode) and the backups").env("STRONGROOM_STORE"),
    )
    .addOption(tableOption("audit"))
    .addOption(scope);
}

const scopeOption = () =>
  new Option("--scope <scope>", "audit chain: org, or db#<databaseId>").env("STRONGROOM_AUDIT_SCOPE");
const tableOption = (what: string) =>
  new Option(
    "--table <name>",
    `DynamoDB ${what} table (endpoint from AWS_ENDPOINT_URL_DYNAMODB); default: the store's own log`,
  ).env(what === "audit" ? "STRONGROOM_AUDIT_TABLE" : "STRONGROOM_CATALOG_TABLE");

function assertScope(scope: string): void {
  if (!/^(org|db#[A-Za-z0-9._-]+)$/.test(scope)) {
    throw new UsageError(`invalid --scope ${JSON.stringify(scope)}`, { hint: "use org or db#<databaseId>" });
  }
}

/** The audit logs an audit command reads, by scope. */
function auditLogs(o: { store?: string; table?: string }): {
  store: ObjectStore | undefined;
  open: (scope: string) => AuditLog;
  scopes: () => Promise<string[]>;
} {
  const store = o.store ? openStore(absoluteStoreUrl(o.store)) : undefined;
  if (o.table) {
    const client = new DynamoDBClient({});
    const table = o.table;
    return {
      store,
      open: (scope) => new DynamoAuditLog(client, table, scope),
      scopes: () => dynamoAuditScopes(client, table),
    };
  }
  if (!store) throw new UsageError("audit needs --store (the store's own log) or --table (DynamoDB)");
  return { store, open: (scope) => new StoreAuditLog(store, scope), scopes: () => StoreAuditLog.scopes(store) };
}

export function registerControlCommands(program: Command, ctx: CliContext, logger: () => Logger): void {
  const audit = program.command("audit").description("the hash-chained audit log");

  auditCommand(audit, "verify", scopeOption())
    .description(
      "walk every chain (or one --scope), naming the first bad row; reconcile each database's chain with the backups in --store",
    )
    .addOption(jsonOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ strongroom audit verify --store file:///var/backups/pg\n  $ strongroom audit verify --store file:///var/backups/pg --scope db#shop\n  $ strongroom audit verify --table strongroom-audit --store s3://acme-backups/pg --json",
    )
    .action(async (o: { store?: string; table?: string; scope?: string; json?: boolean }) => {
      if (o.scope !== undefined) assertScope(o.scope);
      const logs = auditLogs(o);
      const scopes = o.scope ? [o.scope] : await scopesToVerify(await logs.scopes(), logs.store);
      const verdicts: ChainVerdict[] = [];
      for (const scope of scopes) verdicts.push(await verifyScope(logs.open(scope), scope, logs.store));
      const failed = verdicts.filter((v) => !v.ok);
      if (o.json) ctx.stdout(`${JSON.stringify({ ok: failed.length === 0, chains: verdicts }, null, 2)}\n`);
      else if (verdicts.length === 0) ctx.stdout("no audit chains and no backups to verify\n");
      else
        for (const v of verdicts) {
          const head = v.headSeq ? `, head ${v.headSeq} ${v.headHash}` : "";
          const loose = v.unanchored ? ` (${v.unanchored} backup(s) made without an audit log)` : "";
          ctx.stdout(`audit chain ${v.scope} ${v.ok ? "ok" : "FAILED"}: ${v.rows} rows${head}${loose}\n`);
          for (const p of v.problems) ctx.stdout(`  ${p}\n`);
        }
      if (failed.length > 0) {
        const first = failed[0] as ChainVerdict;
        throw new AuditVerificationError(
          `audit chain ${first.scope}: ${first.problems[0]}${failed.length > 1 || first.problems.length > 1 ? " (and more, listed above)" : ""}`,
          {
            hint: "rows are append-only and backups are deleted only by prune; someone with write access changed the log or the store",
          },
        );
      }
    });

  auditCommand(audit, "show", scopeOption().default("org"))
    .description("print audit rows, oldest first")
    .addOption(new Option("--since <time>", "only rows at or after this ISO time"))
    .addOption(jsonOption())
    .action(async (o: { store?: string; table?: string; scope: string; since?: string; json?: boolean }) => {
      assertScope(o.scope);
      const since = o.since ? Date.parse(o.since) : undefined;
      if (since !== undefined && Number.isNaN(since)) throw new UsageError(`--since is not a time: ${o.since}`);
      const rows = (await readAll(auditLogs(o).open(o.scope))).filter(
        (r) => since === undefined || Date.parse(r.at) >= since,
      );
      if (o.json) ctx.stdout(`${JSON.stringify(rows, null, 2)}\n`);
      else
        ctx.stdout(
          `${table(
            ["SEQ", "AT", "EVENT", "ACTOR", "DATABASE", "BACKUP", "DETAILS"],
            rows.map((r) => [
              r.seq,
              r.at,
              r.event,
              r.actor,
              r.databaseId ?? "",
              r.backupId ?? "",
              JSON.stringify(r.details ?? {}),
            ]),
          )}\n`,
        );
    });

  program
    .command("catalog")
    .description("the DynamoDB backup catalog")
    .command("rebuild")
    .description("rebuild catalog items from the manifests in a store (payloads without a manifest are skipped)")
    .addOption(storeOption())
    .addOption(tableOption("catalog").makeOptionMandatory())
    .addOption(databaseIdOption())
    .addOption(jsonOption())
    .action(async (o: { store: string; table: string; databaseId?: string; json?: boolean }) => {
      const catalog = new DynamoCatalogTable(new DynamoDBClient({}), o.table);
      const manifests = await listManifests(openStore(absoluteStoreUrl(o.store)), o.databaseId);
      for (const m of manifests) await catalog.put(catalogRecord(m));
      ctx.stdout(
        o.json ? `${JSON.stringify({ items: manifests.length })}\n` : `catalogued ${manifests.length} backups\n`,
      );
    });

  program
    .command("prune")
    .description("delete backups that GFS retention no longer keeps (manifest first, then payload)")
    .addOption(storeOption())
    .addOption(databaseIdOption().makeOptionMandatory())
    .addOption(
      new Option("--keep-daily <n>", "days kept")
        .argParser(count("--keep-daily"))
        .default(DEFAULT_POLICY.daily)
        .env("STRONGROOM_KEEP_DAILY"),
    )
    .addOption(
      new Option("--keep-weekly <n>", "ISO weeks kept")
        .argParser(count("--keep-weekly"))
        .default(DEFAULT_POLICY.weekly)
        .env("STRONGROOM_KEEP_WEEKLY"),
    )
    .addOption(
      new Option("--keep-monthly <n>", "months kept")
        .argParser(count("--keep-monthly"))
        .default(DEFAULT_POLICY.monthly)
        .env("STRONGROOM_KEEP_MONTHLY"),
    )
    .addOption(
      new Option("--time-zone <tz>", "IANA zone for day/week/month boundaries")
        .default("UTC")
        .env("STRONGROOM_TIME_ZONE"),
    )
    .addOption(flagOption("--dry-run", "print the plan, delete nothing", "STRONGROOM_DRY_RUN"))
    .addOption(jsonOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ strongroom prune --store s3://acme-backups/pg --database-id shop --dry-run\n  $ strongroom prune --store file:///var/backups/pg --database-id shop --keep-daily 14 --time-zone Europe/Berlin",
    )
    .action(
      async (o: {
        store: string;
        databaseId: string;
        keepDaily: number;
        keepWeekly: number;
        keepMonthly: number;
        timeZone: string;
        dryRun?: boolean;
        json?: boolean;
      }) => {
        const policy: RetentionPolicy = {
          daily: o.keepDaily,
          weekly: o.keepWeekly,
          monthly: o.keepMonthly,
          timeZone: o.timeZone,
        };
        const store = openStore(absoluteStoreUrl(o.store));
        let plan: Awaited<ReturnType<typeof planPrune>>;
        try {
          plan = await planPrune(store, o.databaseId, policy, new Date());
        } catch (err) {
          if (err instanceof RangeError) throw new UsageError(err.message);
          throw err;
        }
        if (plan.backupsFailing && plan.keep.length > 0) {
          logger().warn("the newest backup is older than the daily window: backups are failing; keeping everything");
        }
        const result = o.dryRun
          ? { deleted: [] }
          : await executePrune(store, plan, new StoreAuditLog(store, `db#${o.databaseId}`), "cli", () => new Date());
        // Prune also collects this database's garbage (failed backups' payloads, partial uploads).
        const garbage = await collectGarbage(store, {
          databaseId: o.databaseId,
          now: () => new Date(),
          audit: storeLogs(store),
          actor: "cli",
          dryRun: o.dryRun === true,
        });
        if (o.json) {
          ctx.stdout(
            `${JSON.stringify(
              {
                dryRun: o.dryRun === true,
                backupsFailing: plan.backupsFailing,
                keep: plan.keep.map((k) => ({ backupId: k.backup.backupId, reasons: k.reasons })),
                expire: plan.expire.map((b) => b.backupId),
                deleted: result.deleted,
                gc: gcSummary(garbage, o.dryRun === true),
              },
              null,
              2,
            )}\n`,
          );
          return;
        }
        const rows = [
          ...plan.keep.map((k) => [k.backup.backupId, "keep", k.reasons.join(", ")]),
          ...plan.expire.map((b) => [
            b.backupId,
            o.dryRun ? "would delete" : "deleted",
            "outside every retention window",
          ]),
        ].sort((a, b) => (a[0] as string).localeCompare(b[0] as string));
        ctx.stdout(`${rows.length ? table(["BACKUP ID", "ACTION", "WHY"], rows) : "no backups"}\n`);
        ctx.stdout(
          `${o.dryRun ? "dry run: " : ""}${plan.keep.length} kept, ${plan.expire.length} ${o.dryRun ? "to delete" : "deleted"}\n`,
        );
        if (garbage.partials.length + garbage.orphans.length > 0) ctx.stdout(`${gcLine(garbage, o.dryRun === true)}\n`);
      },
    );

  program
    .command("gc")
    .description(
      "remove what failed backups left behind: partial uploads and payloads without a manifest, older than the grace period; each deletion is audited",
    )
    .addOption(storeOption())
    .addOption(databaseIdOption())
    .addOption(
      new Option("--older-than <duration>", "grace period (at least 1h): younger objects may be a backup being written")
        .default("24h")
        .env("STRONGROOM_GC_OLDER_THAN"),
    )
    .addOption(flagOption("--dry-run", "print what would be removed, remove nothing", "STRONGROOM_DRY_RUN"))
    .addOption(jsonOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ strongroom gc --store s3://acme-backups/pg --dry-run\n  $ strongroom gc --store file:///var/backups/pg --older-than 48h --json",
    )
    .action(async (o: { store: string; databaseId?: string; olderThan: string; dryRun?: boolean; json?: boolean }) => {
      const store = openStore(absoluteStoreUrl(o.store));
      const plan = await planGc(store, {
        now: new Date(),
        graceMs: parseDuration(o.olderThan, "--older-than"),
        ...(o.databaseId ? { databaseId: o.databaseId } : {}),
      });
      if (!o.dryRun) await executeGc(store, plan, storeLogs(store), "cli", () => new Date());
      if (o.json) ctx.stdout(`${JSON.stringify(gcSummary(plan, o.dryRun === true), null, 2)}\n`);
      else {
        for (const orphan of plan.orphans)
          ctx.stdout(
            `${o.dryRun ? "would remove" : "removed"} ${orphan.databaseId}/backups/${orphan.backupId}/ (${orphan.objects.length} objects, no manifest)\n`,
          );
        ctx.stdout(`${gcLine(plan, o.dryRun === true)}\n`);
      }
    });

  program
    .command("probe")
    .description(
      "check a destination: list, write, read back, delete a probe object; report versioning and Object Lock",
    )
    .addOption(storeOption())
    .addOption(jsonOption())
    .addHelpText("after", "\nExamples:\n  $ strongroom probe --store s3://acme-backups/pg")
    .action(async (o: { store: string; json?: boolean }) => {
      const store = openStore(absoluteStoreUrl(o.store));
      const report = await probeStore(store, {
        clock: () => performance.now(),
        probeId: randomUUID(),
        payload: randomBytes(1024),
      });
      const org = new StoreAuditLog(store, "org");
      if (report.ok) {
        await appendAudit(org, {
          at: new Date().toISOString(),
          event: "probe.ok",
          actor: "cli",
          details: { steps: report.steps },
        }).catch(() => undefined);
      }
      if (o.json) ctx.stdout(`${JSON.stringify(report, null, 2)}\n`);
      else {
        for (const s of report.steps)
          ctx.stdout(
            `${s.ok ? "ok  " : "FAIL"} ${s.step.padEnd(10)} ${s.latencyMs.toFixed(1).padStart(8)} ms${s.detail ? `  ${s.detail}` : ""}\n`,
          );
        if (report.protection)
          ctx.stdout(`versioning: ${report.protection.versioning}; object lock: ${report.protection.objectLock}\n`);
      }
      if (!report.ok) throw new StrongroomError(report.failure ?? "probe failed");
    });
}
