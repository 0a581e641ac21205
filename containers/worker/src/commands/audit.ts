import { type Command, Option } from "commander";
import type { AuditRow } from "#core/audit/audit-chain.ts";
import { readAll } from "#core/audit/audit-log.ts";
import type { ChainVerdict } from "#core/audit/audit-verify.ts";
import { AuditVerificationError, UsageError } from "#core/errors.ts";
import { nearestName } from "#core/nearest-name.ts";
import { auditChains, type CliContext, count, printResult, type SigningFlags, table } from "./context.ts";
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

  chainCommand(audit, "show", scopeOption())
    .description("print audit rows, oldest first: every chain (org, then each database's), or one --scope")
    .addOption(new Option("--since <time>", "only rows at or after this ISO time"))
    .addOption(jsonOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ strongroom audit show --store file:///var/backups/pg\n  $ strongroom audit show --store file:///var/backups/pg --scope db#shop\n  $ strongroom audit show --table strongroom-audit --since 2026-11-01T00:00:00Z --json\n\nWith --json: the rows of the one --scope, else { chains: [{ scope, rows }] } for every chain.",
    )
    .action(async (o: { store?: string; table?: string; scope?: string; since?: string; json?: boolean }) => {
      if (o.scope !== undefined) assertScope(o.scope);
      const since = o.since ? Date.parse(o.since) : undefined;
      if (since !== undefined && Number.isNaN(since)) throw new UsageError(`--since is not a time: ${o.since}`);
      const chains = await auditChains(o);
      const shown: ShownChain[] = [];
      for (const scope of o.scope !== undefined ? [o.scope] : orgFirst(await chains.scopes())) {
        const rows = await readAll(chains.open(scope));
        // A chain with no rows does not exist: a mistyped scope is said, not shown as empty.
        if (rows.length === 0 && o.scope !== undefined) throw unknownScope(o.scope, await chains.scopes());
        shown.push({ scope, rows: rows.filter((r) => since === undefined || Date.parse(r.at) >= since) });
      }
      const doc = o.scope !== undefined ? (shown[0]?.rows ?? []) : { chains: shown };
      // Rows exactly as stored: each is hashed, so a reader can check them against its chain.
      printResult(ctx, o.json, doc, () => rowsText(shown, o.scope === undefined, o.since), { exact: true });
    });
}

interface ShownChain {
  scope: string;
  rows: AuditRow[];
}

/** The org chain first (probes, gc of partial uploads), then each database's, by id. */
const orgFirst = (scopes: string[]) =>
  [...scopes].sort((a, b) => (a === "org" ? -1 : b === "org" ? 1 : a < b ? -1 : 1));

function unknownScope(scope: string, present: string[]): UsageError {
  const nearest = nearestName(scope, present);
  return new UsageError(`no audit chain ${scope} in this log`, {
    hint:
      present.length === 0
        ? "the log holds no chains yet: backup, prune, gc and probe write them"
        : `${nearest ? `did you mean ${nearest}? ` : ""}the log holds ${orgFirst(present).join(", ")}; leave out --scope to see them all`,
  });
}

function rowsText(chains: ShownChain[], withScope: boolean, since: string | undefined): string {
  const rows = chains.flatMap((c) => c.rows.map((r) => ({ scope: c.scope, r })));
  if (rows.length === 0) return `no audit rows${since ? ` since ${since}` : ""}\n`;
  const header = ["SEQ", "AT", "EVENT", "ACTOR", "DATABASE", "BACKUP", "DETAILS"];
  return `${table(
    withScope ? ["SCOPE", ...header] : header,
    rows.map(({ scope, r }) => [
      ...(withScope ? [scope] : []),
      r.seq,
      r.at,
      r.event,
      r.actor,
      r.databaseId ?? "",
      r.backupId ?? "",
      JSON.stringify(r.details ?? {}),
    ]),
  )}\n`;
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
      const loose = v.unanchored ? ` (${count(v.unanchored, "backup")} made without an audit log)` : "";
      const problems = v.problems.map((p) => `  ${p}\n`).join("");
      return `audit chain ${v.scope} ${v.ok ? "ok" : "FAILED"}: ${v.rows} rows${head}${loose}\n${problems}`;
    })
    .join("");
}
