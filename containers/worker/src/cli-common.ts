import * as path from "node:path";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { type Command, Option } from "commander";
import type { AuditLog } from "#core/audit/audit-log.ts";
import { DynamoAuditLog } from "#core/audit/dynamo-audit-log.ts";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { UsageError } from "#core/errors.ts";
import type { ObjectStore } from "#core/store/object-store.ts";

/** Options and helpers shared by the CLI's commands. */
export interface CliContext {
  signal: AbortSignal;
  stdout: (text: string) => void;
}

export const storeOption = () =>
  new Option("--store <url>", "file:///abs/dir or s3://bucket/prefix").env("STRONGROOM_STORE").makeOptionMandatory();
/**
 * Boolean environment values, parsed strictly: commander's own `.env()` turns a flag
 * on whenever its variable is set, so `STRONGROOM_FORCE=0` would mean --force.
 * Empty counts as unset; anything but these words is a usage error.
 */
const TRUE_WORDS = new Set(["1", "true", "yes", "on"]);
const FALSE_WORDS = new Set(["0", "false", "no", "off"]);

export function parseBool(raw: string | undefined, name: string): boolean | undefined {
  if (raw === undefined || raw.trim() === "") return undefined;
  const word = raw.trim().toLowerCase();
  if (TRUE_WORDS.has(word)) return true;
  if (FALSE_WORDS.has(word)) return false;
  throw new UsageError(`${name} must be 1, true, yes, 0, false or no, got ${JSON.stringify(raw)}`, {
    hint: `unset ${name} or give it one of those values`,
  });
}

/** Flags whose environment variable is read by applyFlagEnv, not by commander. */
const flagEnv = new WeakMap<Option, string>();

/** A boolean flag (`--force`, or a negated `--no-owner`) with a strictly parsed env var. */
export function flagOption(flags: string, description: string, envVar: string): Option {
  const option = new Option(flags, `${description} (env: ${envVar}=1|0)`);
  flagEnv.set(option, envVar);
  return option;
}

/** Fills flags not given on the command line from their env vars (a preAction hook). */
export function applyFlagEnv(command: Command, env: NodeJS.ProcessEnv = process.env): void {
  for (const option of command.options) {
    const envVar = flagEnv.get(option);
    if (envVar === undefined) continue;
    const name = option.attributeName();
    if (command.getOptionValueSource(name) === "cli") continue;
    const value = parseBool(env[envVar], envVar);
    // A negated flag (--no-owner) stores the opposite: owner=false when STRONGROOM_NO_OWNER=1.
    if (value !== undefined) command.setOptionValueWithSource(name, option.negate ? !value : value, "env");
  }
}

export const jsonOption = () => flagOption("--json", "machine-readable output on stdout", "STRONGROOM_JSON");
export const databaseIdOption = () =>
  new Option("--database-id <id>", "the database's id in the store (default: its name)").env("STRONGROOM_DATABASE_ID");
export const auditOption = () =>
  new Option("--audit <where>", "where to record audit events: store (the store's own log) or none")
    .choices(["store", "none"])
    .default("store")
    .env("STRONGROOM_AUDIT");

export function absoluteStoreUrl(url: string): string {
  if (url.trim() === "")
    throw new UsageError("--store is empty", { hint: "use file:///abs/path or s3://bucket/prefix" });
  // Accept a plain path as a convenience; the store contract itself wants file:///abs.
  if (/^[a-z0-9]+:\/\//i.test(url)) return url;
  return `file://${path.resolve(url)}`;
}

export const auditTableOption = () =>
  new Option(
    "--audit-table <name>",
    "record audit events in this DynamoDB table instead (endpoint from AWS_ENDPOINT_URL_DYNAMODB)",
  ).env("STRONGROOM_AUDIT_TABLE");

/**
 * The audit log for a database: a DynamoDB table (--audit-table), the store's own log
 * (local mode), or none.
 */
export function auditFor(
  store: ObjectStore,
  o: { audit: string; auditTable?: string },
): ((databaseId: string) => AuditLog) | undefined {
  if (o.auditTable) {
    const table = o.auditTable;
    const client = new DynamoDBClient({});
    return (databaseId) => new DynamoAuditLog(client, table, `db#${databaseId}`);
  }
  return o.audit === "store" ? (databaseId) => new StoreAuditLog(store, `db#${databaseId}`) : undefined;
}

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] as number))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}
