import { setTimeout as sleep } from "node:timers/promises";
import { AuditConflictError } from "../errors.ts";
import { type AuditEntry, type AuditEvent, type AuditRow, nextRow } from "./audit-chain.ts";

/**
 * Where audit rows live. One chain per scope (`org`, or `db#<databaseId>`).
 * Every implementation must pass test/contract/audit-log.contract.ts.
 */
export interface AuditLog {
  /** The last row of the chain, or undefined when it is empty. */
  head(): Promise<AuditRow | undefined>;
  /**
   * Writes `row` only if no row holds its sequence number yet; must reject with
   * AlreadyExistsError otherwise and leave the existing row untouched. Rows are never
   * updated or deleted through this interface.
   */
  putRow(row: AuditRow): Promise<void>;
  /** Every row in sequence order, from `fromSeq` (inclusive) if given. */
  rows(fromSeq?: string): AsyncIterable<AuditRow>;
  /**
   * Whether a row may decide what counts (a backup committed, verified, deleted). A log
   * only its own writers can write trusts every row (DynamoDB under PutItem-only IAM); a
   * log in a store that others may write trusts only rows signed by a trusted signer,
   * when signers are configured. Absent: every row.
   */
  trusts?(row: AuditRow): boolean;
  /**
   * True when `trusts` checks each row's signature, so a trusted row is authentic on its
   * own, wherever the chain around it breaks.
   */
  readonly rowsSigned?: boolean;
}

export interface AppendOptions {
  /** @default 100 */
  maxAttempts?: number;
}

/**
 * Appends an entry at the head of the chain. Under contention another writer may take
 * the next sequence first; then we re-read the head and retry on the following one.
 */
export async function appendAudit(log: AuditLog, entry: AuditEntry, options: AppendOptions = {}): Promise<AuditRow> {
  const maxAttempts = options.maxAttempts ?? 100;
  for (let attempt = 1; ; attempt++) {
    const row = nextRow(await log.head(), entry);
    try {
      await log.putRow(row);
      return row;
    } catch (err) {
      if ((err as Error).name !== "AlreadyExistsError") throw err;
      if (attempt >= maxAttempts) {
        throw new AuditConflictError(`could not append to the audit log after ${attempt} attempts`, { cause: err });
      }
      // A little jitter keeps a crowd of writers from colliding in lockstep.
      await sleep(Math.random() * Math.min(50, attempt * 5));
    }
  }
}

export async function readAll(log: AuditLog, fromSeq?: string): Promise<AuditRow[]> {
  const out: AuditRow[] = [];
  for await (const row of log.rows(fromSeq)) out.push(row);
  return out;
}

/**
 * A recorder for one job's events (same actor, database and backup), or a no-op when
 * there is no log (`--audit none`, or the state machine writes the events instead).
 */
export function auditRecorder(
  log: AuditLog | undefined,
  job: Pick<AuditEntry, "actor" | "databaseId" | "backupId">,
  now: () => Date,
): (event: AuditEvent, details: Record<string, unknown>) => Promise<AuditRow | undefined> {
  return (event, details) =>
    log ? appendAudit(log, { ...job, at: now().toISOString(), event, details }) : Promise.resolve(undefined);
}

/**
 * What a `*.fail` row says about the failure: the error's stable name and, where it
 * has one, its code (a SQLSTATE, an errno). Never its message: messages carry pg_dump's
 * stderr (`DETAIL: Key (email)=(…)`, COPY lines with row data, table names) and audit
 * rows are plaintext. The full message goes to the local log, redacted.
 */
export function failureDetails(err: unknown): { error: string; code?: string } {
  const name = err instanceof Error ? err.name : "Error";
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === "string" && /^[A-Z0-9_]{1,32}$/.test(code) ? { error: name, code } : { error: name };
}

/** A job with a start row and an ok or fail row: backup, restore, verify. */
export type AuditedJobKind = "backup" | "restore" | "verify";

export interface AuditedJob<T> {
  /** undefined: no log (`--audit none`, or the state machine writes the rows). */
  log: AuditLog | undefined;
  kind: AuditedJobKind;
  job: Pick<AuditEntry, "actor" | "databaseId" | "backupId">;
  now: () => Date;
  /** Details of the `<kind>.start` row. */
  start: Record<string, unknown>;
  /** Details of the `<kind>.ok` row, from the job's result. */
  ok: (result: NoInfer<T>) => Record<string, unknown>;
  /**
   * A job that returns a negative verdict (verify: a check failed) rather than throwing:
   * the details of its `<kind>.fail` row, or undefined when the result is a success.
   */
  failed?: (result: NoInfer<T>) => Record<string, unknown> | undefined;
  /**
   * A job whose verdict may be neither (verify: the scratch server lacks what the backup
   * needs): the details of its `<kind>.inconclusive` row, or undefined.
   */
  inconclusive?: (result: NoInfer<T>) => Record<string, unknown> | undefined;
}

/**
 * Runs `work` between a `<kind>.start` row and a `<kind>.ok` row, or a `<kind>.fail`
 * row naming the error (never its message, see failureDetails) when it throws. A log
 * that cannot take the fail row does not hide the job's own error. `work` gets the
 * start row, which a backup's manifest anchors itself to.
 */
export async function auditedJob<T>(
  spec: AuditedJob<T>,
  work: (start: AuditRow | undefined) => Promise<T>,
): Promise<T> {
  const record = auditRecorder(spec.log, spec.job, spec.now);
  const start = await record(`${spec.kind}.start`, spec.start);
  try {
    const result = await work(start);
    const inconclusive = spec.inconclusive?.(result);
    const failed = inconclusive ? undefined : spec.failed?.(result);
    if (inconclusive) await record(`${spec.kind}.inconclusive` as AuditEvent, inconclusive);
    else await record(failed ? `${spec.kind}.fail` : `${spec.kind}.ok`, failed ?? spec.ok(result));
    return result;
  } catch (err) {
    await record(`${spec.kind}.fail`, failureDetails(err)).catch(() => undefined);
    throw err;
  }
}
