import type { AuditLog } from "#core/audit/audit-log.ts";
import { readManifestRecord } from "#core/backup-index.ts";
import { IntegrityError, UsageError } from "#core/errors.ts";
import { chooseDatabase, type Ledger, pickBackup, readLedger } from "#core/ledger.ts";
import type { Logger } from "#core/log.ts";
import type { Manifest } from "#core/manifest.ts";
import type { ObjectStore } from "#core/store/object-store.ts";
import type { OnPhase } from "../phases.ts";

/**
 * The preamble every job that reads one backup shares (restore, verify, recover-table,
 * export-schema): the backup is resolved ONCE, checked against what commits it, and the
 * resolved manifest (its bytes' SHA-256 with it) is what the job uses from then on.
 * Nothing downstream re-reads a manifest by name: a second reading could be another
 * manifest than the one checked.
 */
export interface ResolvedBackup {
  databaseId: string;
  backupId: string;
  manifest: Manifest;
  /** SHA-256 of the exact manifest bytes that were parsed and checked. */
  sha256: string;
  /** How it was found to count: its backup.ok row, a digest handed in by a flow, or trust in the store. */
  committedBy: "audit" | "digest" | "store";
}

/** What every job that reads one backup takes. */
export interface BackupJobOptions {
  store: ObjectStore;
  backup: ResolvedBackup;
  identities: string[];
  signal?: AbortSignal;
  log: Logger;
  /** Bytes done in the current phase, of its total. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** A phase starts: downloading, restoring data, building indexes, counting rows, checks (phases.ts). */
  onPhase?: OnPhase;
  env?: NodeJS.ProcessEnv;
  /** The backup's database's audit chain, where the job's own rows go; undefined: none (a flow writes them). */
  audit?: AuditLog;
  actor?: string;
  now?: () => Date;
}

export interface ResolveRequest {
  store: ObjectStore;
  /** A backup id or "latest". */
  backup: string;
  databaseId?: string;
  /** The audit chain of a database, if there is a log. */
  audit?: (databaseId: string) => AuditLog;
  /**
   * The SHA-256 of the manifest to use, from a flow's plan (which resolved it in the audit
   * log). Any other manifest is refused. Needs an explicit backup id.
   */
  manifestSha256?: string;
  /** Disaster recovery: every well-formed manifest counts. Never used by a flow. */
  trustStore?: boolean;
  log: Logger;
  now?: () => Date;
}

/** Resolves `--backup` to one committed backup, once. */
export async function resolveJobBackup(request: ResolveRequest): Promise<ResolvedBackup> {
  const { store, backup, log } = request;
  if (request.manifestSha256 !== undefined) {
    if (!/^[0-9a-f]{64}$/.test(request.manifestSha256)) {
      throw new UsageError("--manifest-sha256 must be 64 lowercase hex digits");
    }
    if (backup === "latest" || request.databaseId === undefined) {
      throw new UsageError("--manifest-sha256 needs an explicit --backup ID and --database-id", {
        hint: "a digest pins one manifest; latest is resolved where the digest comes from",
      });
    }
    const record = await readManifestRecord(store, { databaseId: request.databaseId, backupId: backup });
    if (record.sha256 !== request.manifestSha256) {
      throw new IntegrityError(
        `the manifest of backup ${backup} is not the one committed (expected sha256 ${request.manifestSha256.slice(0, 12)}…, the store holds ${record.sha256.slice(0, 12)}…)`,
        { hint: "someone with write access to the store replaced it; restore another backup and investigate" },
      );
    }
    return { databaseId: request.databaseId, backupId: backup, ...record, committedBy: "digest" };
  }
  const databaseId = await chooseDatabase(store, backup, request.databaseId);
  const auditLog = request.audit?.(databaseId);
  const ledger: Ledger = await readLedger(store, databaseId, {
    ...(auditLog ? { audit: auditLog } : {}),
    trustStore: request.trustStore === true,
    now: (request.now ?? (() => new Date()))(),
  });
  if (ledger.trustStore) {
    log.warn(
      "--trust-store: counting every manifest in the store as committed, anchored or not; anyone who can write the store could have put it there",
      { databaseId },
    );
  }
  for (const p of ledger.problems) log.warn(p.message, { databaseId, ...(p.backupId ? { backupId: p.backupId } : {}) });
  const found = pickBackup(ledger, backup);
  return {
    databaseId,
    backupId: found.backupId,
    manifest: found.manifest,
    sha256: found.sha256,
    committedBy: ledger.trustStore ? "store" : "audit",
  };
}
