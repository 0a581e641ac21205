/**
 * How a recovery ended, read from PostgreSQL's own log (xlogrecovery.c, xlog.c): the
 * only witness of what it replayed. A recovery has ended well when a new timeline was
 * selected and the server accepts connections; "recovery stopping …" says where it
 * stopped for a target, "last completed transaction was at log time …" the last commit
 * it replayed. Any FATAL but a client's "the database system is starting up" ends it
 * badly, and PostgreSQL's "recovery ended before configured recovery target was reached"
 * above all: never a success.
 */
export type RecoveryVerdict =
  | { state: "running" }
  | { state: "failed"; fatal: string; targetNotReached: boolean }
  | {
      state: "promoted";
      timeline: number;
      /** PostgreSQL's "recovery stopping …" line, for a target. */
      stopped?: string;
      /** The LSN of the record it stopped at, for an LSN target. */
      stoppedLsn?: string;
      /** The commit time of the transaction it stopped before or after, for a time or xid target. */
      stoppedCommitTime?: string;
      /** The last commit replayed (PostgreSQL's "last completed transaction was at log time"). */
      lastCommit?: string;
      /** The last record replayed (PostgreSQL's "redo done at"). */
      redoDone?: string;
    };

/**
 * The log line prefix strongroom starts a recovering server with (log_line_prefix): only
 * lines that begin with it, then a severity, count. Anything else (text a command the
 * cluster's configuration runs wrote into the log, a prefix its configuration set) says
 * nothing about the recovery.
 */
export const RECOVERY_LOG_PREFIX = "%m [%p] ";
const LINE = String.raw`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? [A-Za-z0-9+:-]+ \[\d+\] `;

/** The messages of `severity` lines, in order. */
function messages(log: string, severity: string): string[] {
  const re = new RegExp(`${LINE}${severity}: {2}([^\\n]*)$`, "gm");
  return [...log.matchAll(re)].map((m) => m[1] as string);
}

export function recoveryVerdict(log: string): RecoveryVerdict {
  // A client's "the database system is starting up" is no failure of the recovery.
  const fatal = [...messages(log, "FATAL"), ...messages(log, "PANIC")].find(
    (m) => !m.startsWith("the database system is"),
  );
  if (fatal !== undefined) {
    return {
      state: "failed",
      fatal: `FATAL:  ${fatal}`,
      targetNotReached: fatal.includes("recovery ended before configured recovery target was reached"),
    };
  }
  const logLines = messages(log, "LOG");
  const find = (re: RegExp) => logLines.map((m) => re.exec(m)).find((m) => m !== null) ?? undefined;
  const timeline = find(/^selected new timeline ID: (\d+)/)?.[1];
  if (timeline === undefined || !find(/^database system is ready to accept connections/)) {
    return { state: "running" };
  }
  const stopped = find(/^recovery stopping .*/)?.[0];
  const stoppedLsn = stopped ? /WAL location \(LSN\) "([0-9A-F]+\/[0-9A-F]+)"/.exec(stopped)?.[1] : undefined;
  const stoppedCommitTime = stopped ? /, time (.+)$/.exec(stopped)?.[1] : undefined;
  const lastCommit = find(/^last completed transaction was at log time (.+)$/)?.[1];
  const redoDone = find(/^redo done at ([0-9A-F]+\/[0-9A-F]+)/)?.[1];
  return {
    state: "promoted",
    timeline: Number(timeline),
    ...(stopped !== undefined ? { stopped } : {}),
    ...(stoppedLsn !== undefined ? { stoppedLsn } : {}),
    ...(stoppedCommitTime !== undefined ? { stoppedCommitTime: stoppedCommitTime.trim() } : {}),
    ...(lastCommit !== undefined ? { lastCommit: lastCommit.trim() } : {}),
    ...(redoDone !== undefined ? { redoDone } : {}),
  };
}
