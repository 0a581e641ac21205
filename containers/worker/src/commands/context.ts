import { readFile } from "node:fs/promises";
import type { AuditLog } from "#core/audit/audit-log.ts";
import { StoreAuditLog, type StoreAuditLogOptions } from "#core/audit/store-audit-log.ts";
import { fileProblem, InvalidKeyError, UsageError } from "#core/errors.ts";
import { type LogFormat, type Logger, roundDurations } from "#core/log.ts";
import type { ObjectStore } from "#core/store/object-store.ts";
import { type OnPhase, PhaseTracker } from "../phases.ts";
import type { BackupJobOptions } from "../pipeline/backup-job.ts";
import { progressBar } from "../progress.ts";
import { identitiesFrom } from "./options.ts";

/*
 * Start-up: `strongroom --help` loads every command's file, so these files load only
 * commander and light modules; the AWS SDK, pg, age and zstd are imported by the action
 * that needs them (`await import(…)`), never at the top.
 */

/** The flags of every command that reads one backup (`readsBackup`, `auditOption`). */
export interface ReadsBackupFlags {
  store: string;
  backup: string;
  databaseId?: string;
  identity?: string;
  audit: string;
  auditTable?: string;
  manifestSha256?: string;
  trustStore?: boolean;
}

/**
 * What a command that reads one backup hands its pipeline: the store, the backup
 * resolved once and checked against what commits it (pipeline/backup-job.ts), the
 * identities, its database's audit chain, the stop signal and the logger.
 */
export async function openBackupJob(o: ReadsBackupFlags, command: string, ctx: CliContext): Promise<BackupJobOptions> {
  const log = ctx.log();
  const identities = await identitiesFrom(o.identity, command, process.env, log);
  const store = await openStoreAt(o.store);
  const audit = await auditFor(store, o, log);
  const { resolveJobBackup } = await import("../pipeline/backup-job.ts");
  const backup = await resolveJobBackup({
    store,
    backup: o.backup,
    ...(o.databaseId ? { databaseId: o.databaseId } : {}),
    ...(audit ? { audit } : {}),
    ...(o.manifestSha256 ? { manifestSha256: o.manifestSha256 } : {}),
    trustStore: o.trustStore === true,
    log,
  });
  const chain = audit?.(backup.databaseId);
  return { store, ...(chain ? { audit: chain } : {}), backup, identities, signal: ctx.signal, log };
}

/** The store a `--store` URL names (the S3 SDK is loaded only for s3://). */
export async function openStoreAt(url: string): Promise<ObjectStore> {
  const { openStore } = await import("#core/store/open-store.ts");
  return await openStore(url);
}

/** What every command gets from the program: where output goes, the logger, the stop signal. */
export interface CliContext {
  signal: AbortSignal;
  stdout: (text: string) => void;
  /** The logger the global --log-format and --log-level ask for. */
  log: () => Logger;
  /** The global --log-format. */
  logFormat: () => LogFormat;
}

/**
 * The result on stdout: the JSON document with --json (durations rounded, as in JSON
 * logs; `exact` prints it as it is, for rows whose bytes are hashed), else the human text.
 */
export function printResult(
  ctx: CliContext,
  json: boolean | undefined,
  doc: unknown,
  text: () => string,
  options: { exact?: boolean } = {},
): void {
  ctx.stdout(json ? `${JSON.stringify(options.exact ? doc : roundDurations(doc), null, 2)}\n` : text());
}

/** What a pipeline reports its progress through (BackupJobOptions' onProgress and onPhase). */
export interface ProgressCallbacks {
  onProgress: (doneBytes: number, totalBytes?: number) => void;
  onPhase: OnPhase;
}

/**
 * Long work with its phases shown: on a terminal, the progress line on stderr (cleared
 * before the result is printed); in a log that is not a terminal, and in JSON logs, as
 * `phase` and `progress` events. Text logs on a terminal get the line alone: the same
 * phases twice would crowd it.
 */
export async function withProgress<T>(
  ctx: CliContext,
  label: string,
  work: (progress: ProgressCallbacks) => Promise<T>,
): Promise<T> {
  const terminal = process.stderr.isTTY === true;
  const log = ctx.log();
  const tracker = new PhaseTracker(
    !terminal || ctx.logFormat() === "json" ? { emit: (message, fields) => log.info(message, fields) } : {},
  );
  const bar = progressBar(label, () => tracker.state(), { enabled: terminal });
  try {
    const result = await work({
      onProgress: (done, total) => tracker.bytes(done, total),
      onPhase: (phase, start) => tracker.phase(phase, start),
    });
    tracker.finish();
    return result;
  } finally {
    bar.stop();
  }
}

/** How a store's own log is signed and whose rows in it count (--signing-key, --signer). */
export interface SigningFlags {
  signingKey?: string;
  signer?: string[];
}

/**
 * The options of a store's own audit log: this host's signer (--signing-key, or
 * STRONGROOM_SIGNING_KEY holding the key itself) and the signers whose rows count.
 */
export async function storeLogOptions(o: SigningFlags, env = process.env): Promise<StoreAuditLogOptions> {
  const { parseSigner, parseSigningKey } = await import("#core/audit/row-signature.ts");
  let text: string | undefined;
  let where = "STRONGROOM_SIGNING_KEY";
  if (o.signingKey !== undefined) {
    where = o.signingKey;
    text = await readFile(o.signingKey, "utf8").catch((err: NodeJS.ErrnoException) => {
      throw new InvalidKeyError(`cannot read signing key ${o.signingKey}: ${fileProblem(err)}`, {
        cause: err,
        hint: "pass the file `strongroom keygen --signing` wrote with --signing-key",
      });
    });
  } else if (env.STRONGROOM_SIGNING_KEY) {
    text = env.STRONGROOM_SIGNING_KEY;
  }
  // redact() hides any SRSIGN-SECRET-1… text wherever it appears.
  const signer = text !== undefined ? parseSigningKey(text, where) : undefined;
  const signers = (o.signer ?? []).map(parseSigner);
  return { ...(signer ? { signer } : {}), signers };
}

/**
 * A command that decides what counts from a store's own log says so when nothing signs
 * it: every row then counts, and anyone who can write the store can append one.
 */
export function warnUnsignedLog(log: Logger, options: StoreAuditLogOptions): void {
  if (options.signer || (options.signers?.length ?? 0) > 0) return;
  log.warn(
    "the store's audit log is not signed: anyone who can write the store could make a backup count; pass --signer (or --signing-key) to count only signed rows (docs/trust.md)",
  );
}

/**
 * The audit log for a database: a DynamoDB table (--audit-table), the store's own log
 * (local mode, signed and checked as --signing-key and --signer say), or none (--audit none).
 * `decides`: the command reads what counts from it, and warns where nothing signs it.
 */
export async function auditFor(
  store: ObjectStore,
  o: { audit: string; auditTable?: string } & SigningFlags,
  decides?: Logger,
): Promise<((databaseId: string) => AuditLog) | undefined> {
  if (o.auditTable) {
    const { open } = await dynamoAuditLogs(o.auditTable);
    return (databaseId) => open(`db#${databaseId}`);
  }
  if (o.audit !== "store") return undefined;
  const open = await storeAuditLogs(store, o, decides);
  return (databaseId) => open(`db#${databaseId}`);
}

/** A store's own audit chains, by scope (local mode), signed and checked as --signing-key and --signer say. */
export async function storeAuditLogs(
  store: ObjectStore,
  o: SigningFlags,
  decides?: Logger,
): Promise<(scope: string) => AuditLog> {
  const options = await storeLogOptions(o);
  let warned = false;
  return (scope) => {
    // Said once, when the command first reads a chain: not before the store proved to exist.
    if (decides && !warned) warnUnsignedLog(decides, options);
    warned = true;
    return new StoreAuditLog(store, scope, options);
  };
}

/** The audit chains an audit command reads: --table (DynamoDB) or the --store's own log. */
export async function auditChains(
  o: { store?: string; table?: string } & SigningFlags,
  decides?: Logger,
): Promise<{
  store: ObjectStore | undefined;
  open: (scope: string) => AuditLog;
  scopes: () => Promise<string[]>;
}> {
  const store = o.store ? await openStoreAt(o.store) : undefined;
  if (o.table) return { store, ...(await dynamoAuditLogs(o.table)) };
  if (!store) throw new UsageError("audit needs --store (the store's own log) or --table (DynamoDB)");
  return { store, open: await storeAuditLogs(store, o, decides), scopes: () => StoreAuditLog.scopes(store) };
}

/**
 * The audit log in a DynamoDB table (--audit-table, or audit's --table), by scope, over
 * one client; and the scopes it holds. The SDK loads here, only when a table is named.
 */
async function dynamoAuditLogs(
  table: string,
): Promise<{ open: (scope: string) => AuditLog; scopes: () => Promise<string[]> }> {
  const { DynamoDBClient } = await import("@aws-sdk/client-dynamodb");
  const { DynamoAuditLog, dynamoAuditScopes } = await import("#core/audit/dynamo-audit-log.ts");
  const client = new DynamoDBClient({});
  return {
    open: (scope) => new DynamoAuditLog(client, table, scope),
    scopes: () => dynamoAuditScopes(client, table),
  };
}

/** Columns padded to their widest cell, two spaces apart. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] as number))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

export { count } from "#core/count.ts";
