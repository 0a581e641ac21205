import { type Command, Option } from "commander";
import { readAll } from "#core/audit/audit-log.ts";
import type { ChainVerdict } from "#core/audit/audit-verify.ts";
import { AuditVerificationError, UsageError } from "#core/errors.ts";
import { auditChains, type CliContext, printResult, type SigningFlags, table } from "./context.ts";
import { jsonOption, signerOption, signingKeyOption } from "./options.ts";

/** `audit verify` and `audit show`: they read --store (the store's own log) or --table (DynamoDB). */
export function auditCommand(parent: Command, ctx: CliContext): void {
  const audit = parent.command("audit").description("the hash-chained audit log");

  chainCommand(audit, "verify", scopeOption())
    .description(
      "walk every chain (or one --scope), naming the first bad row; reconcile each database's chain with the backups in --store",
    )
    .addOption(jsonOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ strongroom audit verify --store file:///var/backups/pg\n  $ strongroom audit verify --store file:///var/backups/pg --scope db#shop\n  $ strongroom audit verify --table strongroom-audit --store s3://acme-backups/pg --json",
    )
    .action(async (o: { store?: string; table?: string; scope?: string; json?: boolean } & SigningFlags) => {
      const { scopesToVerify, verifyScope } = await import("#core/audit/audit-verify.ts");
      if (o.scope !== undefined) assertScope(o.scope);
      const chains = await auditChains(o, ctx.log());
      const scopes = o.scope ? [o.scope] : await scopesToVerify(await chains.scopes(), chains.store);
      const verdicts: ChainVerdict[] = [];
      for (const scope of scopes) verdicts.push(await verifyScope(chains.open(scope), scope, chains.store));
      const failed = verdicts.filter((v) => !v.ok);
      printResult(ctx, o.json, { ok: failed.length === 0, chains: verdicts }, () => verdictText(verdicts));
      const first = failed[0];
      if (first) {
        throw new AuditVerificationError(
          `audit chain ${first.scope}: ${first.problems[0]}${failed.length > 1 || first.problems.length > 1 ? " (and more, listed above)" : ""}`,
          {
            hint: "rows are append-only and backups are deleted only by prune; someone with write access changed the log or the store",
          },
        );
      }
    });

  chainCommand(audit, "show", scopeOption().default("org"))
    .description("print audit rows, oldest first")
    .addOption(new Option("--since <time>", "only rows at or after this ISO time"))
    .addOption(jsonOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ strongroom audit show --store file:///var/backups/pg --scope db#shop\n  $ strongroom audit show --table strongroom-audit --since 2026-11-01T00:00:00Z --json",
    )
    .action(async (o: { store?: string; table?: string; scope: string; since?: string; json?: boolean }) => {
      assertScope(o.scope);
      const since = o.since ? Date.parse(o.since) : undefined;
      if (since !== undefined && Number.isNaN(since)) throw new UsageError(`--since is not a time: ${o.since}`);
      const rows = (await readAll((await auditChains(o)).open(o.scope))).filter(
        (r) => since === undefined || Date.parse(r.at) >= since,
      );
      printResult(
        ctx,
        o.json,
        rows,
        () =>
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
}

function chainCommand(parent: Command, name: string, scope: Option): Command {
  return parent
    .command(name)
    .addOption(
      new Option("--store <url>", "store holding the log (local mode) and the backups").env("STRONGROOM_STORE"),
    )
    .addOption(
      new Option(
        "--table <name>",
        "DynamoDB audit table (endpoint from AWS_ENDPOINT_URL_DYNAMODB); default: the store's own log",
      ).env("STRONGROOM_AUDIT_TABLE"),
    )
    .addOption(signerOption())
    .addOption(signingKeyOption())
    .addOption(scope);
}

const scopeOption = () =>
  new Option("--scope <scope>", "audit chain: org, or db#<databaseId>").env("STRONGROOM_AUDIT_SCOPE");

function assertScope(scope: string): void {
  if (!/^(org|db#[A-Za-z0-9._-]+)$/.test(scope)) {
    throw new UsageError(`invalid --scope ${JSON.stringify(scope)}`, { hint: "use org or db#<databaseId>" });
  }
}

function verdictText(verdicts: ChainVerdict[]): string {
  if (verdicts.length === 0) return "no audit chains and no backups to verify\n";
  return verdicts
    .map((v) => {
      const head = v.headSeq ? `, head ${v.headSeq} ${v.headHash}` : "";
      const loose = v.unanchored ? ` (${v.unanchored} backup(s) made without an audit log)` : "";
      const problems = v.problems.map((p) => `  ${p}\n`).join("");
      return `audit chain ${v.scope} ${v.ok ? "ok" : "FAILED"}: ${v.rows} rows${head}${loose}\n${problems}`;
    })
    .join("");
}
