import type { LogFields } from "#core/log.ts";

/**
 * What a long job is doing, in the words its progress line and its log events both use.
 * People read them and log queries match them: the names are API, keep them stable.
 */
export type PhaseName =
  /** Stored bytes read and checked before pg_restore gets any: a --jobs restore's staging, an older dump proven whole, --integrity-only. */
  | "downloading"
  /** backup: pg_dump → zstd → age → the store. */
  | "dumping"
  /** backup: the stats and roles sealed, the manifest committed. */
  | "committing"
  /** The archive streams into pg_restore (or recover-table's COPY): tables created, rows loaded. */
  | "restoring data"
  /** pg_restore's post-data, after its last input byte: indexes, constraints, triggers, materialized views. */
  | "building indexes"
  /** pg_restore --jobs builds a table's indexes as soon as its rows are in: the two at once. */
  | "restoring data and building indexes"
  | "counting rows"
  /** verify: a throwaway cluster started (or a database created), and what the backup needs looked for there. */
  | "preparing the scratch database"
  /** verify's checks after the row counts: schema, constraints, amcheck, --checks. */
  | "checks"
  /** verify --pitr: the WAL from the base to the point fetched and checked against its signatures. */
  | "checking the archived WAL"
  /** verify --pitr: the base backup unpacked into the scratch cluster's directory. */
  | "unpacking the base backup"
  /** verify --pitr: PostgreSQL replays the WAL to the point, and promotes. */
  | "recovering to the point";

export interface PhaseStart {
  /** The bytes the phase moves, when known in advance. @default the total its byte reports carry */
  totalBytes?: number;
  /** totalBytes is a guess, taken from this (`the previous backup`). @default an exact count */
  estimatedFrom?: string;
}

/** How a pipeline says a phase starts (ending the one before); a repeated name continues it. */
export type OnPhase = (phase: PhaseName, start?: PhaseStart) => void;

/** What the progress line draws: the job's state at one moment. */
export interface ProgressState {
  /** undefined before the first phase, and once the job is done. */
  phase?: PhaseName;
  done: boolean;
  /** Bytes done in this phase; undefined while it reported none. */
  doneBytes?: number;
  totalBytes?: number;
  estimatedFrom?: string;
  phaseMs: number;
  jobMs: number;
}

/**
 * Percent done, to 0.1, rounded down: 100 only when all is done. Past an estimate it
 * stays at 99.9: the estimate was low, and the phase is not over.
 */
export function percentDone(doneBytes: number | undefined, totalBytes: number | undefined): number | undefined {
  if (doneBytes === undefined || totalBytes === undefined || totalBytes <= 0) return undefined;
  return Math.min(Math.floor((doneBytes / totalBytes) * 1000) / 10, doneBytes > totalBytes ? 99.9 : 100);
}

/**
 * Seconds left at the phase's average rate so far; undefined in its first second (no
 * rate worth the name yet), without a total, or with nothing left that the total knows of.
 */
export function etaSeconds(doneBytes: number | undefined, totalBytes: number | undefined, phaseMs: number) {
  if (doneBytes === undefined || totalBytes === undefined || doneBytes <= 0 || doneBytes >= totalBytes) return;
  if (phaseMs < 1000) return;
  return (totalBytes - doneBytes) / (doneBytes / (phaseMs / 1000));
}

export interface PhaseTrackerOptions {
  /** Where events go, as log lines (message and fields). @default nowhere */
  emit?: (message: string, fields: LogFields) => void;
  /** At most one progress event this often; a phase's start counts as one. @default 30_000 */
  progressEventMs?: number;
  /** Milliseconds on a monotonic clock. @default performance.now */
  clock?: () => number;
}

interface Phase {
  name: PhaseName | undefined;
  startedMs: number;
  doneBytes?: number;
  totalBytes?: number;
  estimatedFrom?: string;
}

/**
 * A job's phases and bytes, as the progress line reads them and as log events: one when
 * a phase starts, one when it ends, at most one progress event every `progressEventMs`
 * between, and `done` at the end. A deployed task's log shows where a long restore is,
 * in a handful of lines.
 */
export class PhaseTracker {
  private readonly emit: ((message: string, fields: LogFields) => void) | undefined;
  private readonly everyMs: number;
  private readonly clock: () => number;
  private readonly startedMs: number;
  private current: Phase;
  private lastEventMs: number;
  private finished = false;

  constructor(options: PhaseTrackerOptions = {}) {
    this.emit = options.emit;
    this.everyMs = options.progressEventMs ?? 30_000;
    this.clock = options.clock ?? (() => performance.now());
    this.startedMs = this.clock();
    this.current = { name: undefined, startedMs: this.startedMs };
    this.lastEventMs = this.startedMs;
  }

  phase(name: PhaseName, start: PhaseStart = {}): void {
    if (this.finished || this.current.name === name) return;
    const now = this.clock();
    this.end(now);
    this.current = {
      name,
      startedMs: now,
      ...(start.totalBytes !== undefined ? { totalBytes: start.totalBytes } : {}),
      ...(start.estimatedFrom !== undefined ? { estimatedFrom: start.estimatedFrom } : {}),
    };
    this.lastEventMs = now;
    this.emit?.("phase", { phase: name, state: "started", ...this.totals() });
  }

  /** Bytes done so far in the current phase, and its total where the phase did not give one. */
  bytes(doneBytes: number, totalBytes?: number): void {
    if (this.finished) return;
    this.current.doneBytes = doneBytes;
    if (this.current.totalBytes === undefined && totalBytes !== undefined) this.current.totalBytes = totalBytes;
    const now = this.clock();
    if (this.emit && now - this.lastEventMs >= this.everyMs) {
      this.lastEventMs = now;
      const eta = etaSeconds(doneBytes, this.current.totalBytes, now - this.current.startedMs);
      this.emit("progress", {
        ...(this.current.name ? { phase: this.current.name } : {}),
        ...this.totals(),
        ...(eta !== undefined ? { etaSeconds: eta } : {}),
      });
    }
  }

  /** The job succeeded: its last phase ends, and `done` says so with the job's seconds. */
  finish(): void {
    if (this.finished) return;
    const now = this.clock();
    this.end(now);
    this.finished = true;
    this.current = { name: undefined, startedMs: now };
    this.emit?.("phase", { phase: "done", seconds: (now - this.startedMs) / 1000 });
  }

  state(): ProgressState {
    const now = this.clock();
    const c = this.current;
    return {
      ...(c.name ? { phase: c.name } : {}),
      done: this.finished,
      ...(c.doneBytes !== undefined ? { doneBytes: c.doneBytes } : {}),
      ...(c.totalBytes !== undefined ? { totalBytes: c.totalBytes } : {}),
      ...(c.estimatedFrom !== undefined ? { estimatedFrom: c.estimatedFrom } : {}),
      phaseMs: now - c.startedMs,
      jobMs: now - this.startedMs,
    };
  }

  private end(now: number): void {
    const c = this.current;
    if (c.name === undefined) return;
    this.emit?.("phase", { phase: c.name, state: "finished", seconds: (now - c.startedMs) / 1000, ...this.totals() });
  }

  /** Bytes done and the total, an estimate named as one (`estimatedBytes`, `estimatedFrom`). */
  private totals(): LogFields {
    const { doneBytes, totalBytes, estimatedFrom } = this.current;
    const percent = percentDone(doneBytes, totalBytes);
    if (estimatedFrom !== undefined) {
      return {
        ...(doneBytes !== undefined ? { doneBytes } : {}),
        ...(totalBytes !== undefined ? { estimatedBytes: totalBytes, estimatedFrom } : {}),
        ...(percent !== undefined ? { estimatedPercent: percent } : {}),
      };
    }
    return {
      ...(doneBytes !== undefined ? { doneBytes } : {}),
      ...(totalBytes !== undefined ? { totalBytes } : {}),
      ...(percent !== undefined ? { percent } : {}),
    };
  }
}
