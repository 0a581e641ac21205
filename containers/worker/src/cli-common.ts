import * as path from "node:path";
import { Option } from "commander";
import { StoreAuditLog } from "../../../core/audit/store-audit-log.ts";
import { UsageError } from "../../../core/errors.ts";
import type { ObjectStore } from "../../../core/store/object-store.ts";

/** Options and helpers shared by the CLI's commands. */
export interface CliContext {
  signal: AbortSignal;
  stdout: (text: string) => void;
}

export const storeOption = () =>
  new Option("--store <url>", "file:///abs/dir or s3://bucket/prefix").env("STRONGROOM_STORE").makeOptionMandatory();
export const jsonOption = () => new Option("--json", "machine-readable output on stdout").env("STRONGROOM_JSON");
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

/** The audit log for a database in local mode: rows in the store itself. */
export function storeAudit(store: ObjectStore, where: string): ((databaseId: string) => StoreAuditLog) | undefined {
  return where === "store" ? (databaseId) => new StoreAuditLog(store, `db#${databaseId}`) : undefined;
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
