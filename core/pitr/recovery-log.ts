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
    };

export function recoveryVerdict(log: string): RecoveryVerdict {
  // A client's "the database system is starting up" is no failure of the recovery.
  // (?=\S) first: the spaces must not backtrack past the lookahead.
  const fatal = /(?:FATAL|PANIC): +(?=\S)(?!the database system is)[^\n]*/.exec(log);
  if (fatal) {
    return {
      state: "failed",
      fatal: fatal[0].trim(),
      targetNotReached: fatal[0].includes("recovery ended before configured recovery target was reached"),
    };
  }
  const timeline = /selected new timeline ID: (\d+)/.exec(log)?.[1];
  if (timeline === undefined || !/database system is ready to accept connections/.test(log)) {
    return { state: "running" };
  }
  const stopped = /recovery stopping [^\n]*/.exec(log)?.[0];
  const stoppedLsn = stopped ? /WAL location \(LSN\) "([0-9A-F]+\/[0-9A-F]+)"/.exec(stopped)?.[1] : undefined;
  const stoppedCommitTime = stopped ? /, time ([^\n]+)$/.exec(stopped)?.[1] : undefined;
  const lastCommit = /last completed transaction was at log time ([^\n]+)/.exec(log)?.[1];
  return {
    state: "promoted",
    timeline: Number(timeline),
    ...(stopped !== undefined ? { stopped } : {}),
    ...(stoppedLsn !== undefined ? { stoppedLsn } : {}),
    ...(stoppedCommitTime !== undefined ? { stoppedCommitTime: stoppedCommitTime.trim() } : {}),
    ...(lastCommit !== undefined ? { lastCommit: lastCommit.trim() } : {}),
  };
}
