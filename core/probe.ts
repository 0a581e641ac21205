import { randomBytes, randomUUID } from "node:crypto";
import { type AuditLog, appendAudit } from "./audit/audit-log.ts";
import {
  AccessDeniedError,
  AlreadyExistsError,
  BucketNotFoundError,
  ProbeFailedError,
  StoreUnavailableError,
  StrongroomError,
  WrongRegionError,
} from "./errors.ts";
import { getBytes, type ObjectStore } from "./store/object-store.ts";

/**
 * The destination probe: can this store hold backups? It lists the prefix, writes a
 * probe object, reads it back and compares, deletes it, and reports bucket
 * versioning and Object Lock. Each step reports its latency; a failure names the step
 * and the likely cause in one line. Pure: the clock and the probe bytes are parameters.
 */
export type ProbeStep = "list" | "write" | "conditional" | "read" | "compare" | "delete" | "protection";

export interface BucketProtection {
  versioning: string;
  objectLock: string;
}

/** Stores that can say how their bucket is protected (S3). */
export interface ProtectionSource {
  protection(): Promise<BucketProtection>;
}

export interface ProbeStepResult {
  step: ProbeStep;
  ok: boolean;
  latencyMs: number;
  detail?: string;
}

export interface ProbeReport {
  store: string;
  ok: boolean;
  steps: ProbeStepResult[];
  protection?: BucketProtection;
  /** One line: the failed step and the likely cause. */
  failure?: string;
  /** What to do about the failure, where the store's error says. */
  hint?: string;
}

export interface ProbeDeps {
  clock: () => number;
  probeId: string;
  payload: Uint8Array;
}

export function likelyCause(err: unknown): string {
  if (err instanceof BucketNotFoundError) return "no such bucket";
  if (err instanceof AccessDeniedError) return "access denied";
  if (err instanceof WrongRegionError) return "wrong region";
  if (err instanceof StoreUnavailableError) return "endpoint unreachable";
  return "unexpected error";
}

function hasProtection(store: ObjectStore): store is ObjectStore & ProtectionSource {
  return typeof (store as Partial<ProtectionSource>).protection === "function";
}

export async function probeStore(store: ObjectStore, deps: ProbeDeps): Promise<ProbeReport> {
  const key = `.strongroom/probe/${deps.probeId}`;
  const steps: ProbeStepResult[] = [];
  const report: ProbeReport = { store: store.url, ok: false, steps };
  let written = false;
  const run = async <T>(step: ProbeStep, work: () => Promise<T>): Promise<T> => {
    const started = deps.clock();
    try {
      const value = await work();
      steps.push({ step, ok: true, latencyMs: deps.clock() - started });
      return value;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      steps.push({ step, ok: false, latencyMs: deps.clock() - started, detail: message });
      const cause = likelyCause(err);
      report.failure = `probe failed at ${step}: ${cause} (${message})`;
      if (err instanceof StrongroomError && err.hint) report.hint = err.hint;
      throw new ProbeFailedError(report.failure, {
        cause: err,
        ...(err instanceof StrongroomError && err.hint ? { hint: err.hint } : {}),
      });
    }
  };
  try {
    await run("list", () => store.list("", { pageSize: 1 }));
    await run("write", async () => {
      await store.putIfAbsent(key, deps.payload);
      written = true;
    });
    // Commits rest on put-if-absent: a store that ignores If-None-Match would let a
    // second writer replace a committed manifest or audit row without anyone noticing.
    await run("conditional", async () => {
      const other = Buffer.from(deps.payload).map((b) => b ^ 0xff);
      try {
        await store.putIfAbsent(key, other);
      } catch (err) {
        if (err instanceof AlreadyExistsError) return;
        throw err;
      }
      throw new StrongroomError(
        "the store accepted a second put-if-absent of the same key: it ignores If-None-Match, so it cannot hold backups safely",
      );
    });
    const back = await run("read", () => getBytes(store, key));
    await run("compare", async () => {
      if (!Buffer.from(back).equals(Buffer.from(deps.payload))) {
        throw new StrongroomError(`read back ${back.length} bytes that differ from the ${deps.payload.length} written`);
      }
    });
    await run("delete", async () => {
      await store.delete(key);
      written = false;
    });
    if (hasProtection(store)) report.protection = await run("protection", () => store.protection());
    report.ok = true;
    return report;
  } catch (err) {
    if (!(err instanceof ProbeFailedError)) throw err;
    return report;
  } finally {
    // A failed probe leaves nothing behind where the delete is permitted.
    if (written) await store.delete(key).catch(() => undefined);
  }
}

/**
 * The probe as both shells run it (`strongroom probe`, the destination-probe Lambda):
 * a fresh probe id and 1 KiB of random bytes, the monotonic clock, and a `probe.ok`
 * row in the org chain when a log is given. The row is best effort: a store that
 * probes fine but whose log cannot be written still probed fine.
 */
export async function probeDestination(
  store: ObjectStore,
  options: { audit?: AuditLog; actor: string; now?: () => Date },
): Promise<ProbeReport> {
  const report = await probeStore(store, {
    clock: () => performance.now(),
    probeId: randomUUID(),
    payload: randomBytes(1024),
  });
  if (report.ok && options.audit) {
    const at = (options.now ?? (() => new Date()))().toISOString();
    await appendAudit(options.audit, {
      at,
      event: "probe.ok",
      actor: options.actor,
      details: { steps: report.steps },
    }).catch(() => undefined);
  }
  return report;
}
