/**
 * Every error strongroom throws on purpose is a StrongroomError subclass with a stable
 * `name`. Step Functions Retry/Catch clauses and the CLI's exit codes match on these
 * names, so they are API: add to ERROR_NAMES, never rename.
 *
 * Messages are lowercase, say what failed and what to do (`hint`), and never carry a secret.
 */
export const ERROR_NAMES = [
  "StrongroomError",
  "UsageError",
  "NotFoundError",
  "AlreadyExistsError",
  "BucketNotFoundError",
  "AccessDeniedError",
  "StoreUnavailableError",
  "AbortedError",
  "InvalidKeyError",
  "CorruptStreamError",
  "TruncatedStreamError",
  "AgeHeaderError",
  "AgeHeaderMacError",
  "AgeNoIdentityMatchError",
  "AgePayloadAuthError",
  "InvalidRecipientError",
  "InvalidIdentityError",
  "DatabaseConnectionError",
  "DatabaseAuthError",
  "NoSuitablePgDumpError",
  "NoSuitableServerError",
  "VerificationFailedError",
  "VerificationInconclusiveError",
  "ScratchClusterError",
  "NotReadyError",
  "TableNotFoundError",
  "DumpFailedError",
  "RestoreFailedError",
  "TargetNotEmptyError",
  "MissingRolesError",
  "BackupNotFoundError",
  "IntegrityError",
  "RowCountMismatchError",
  "ManifestError",
  "StagingError",
  "AuditConflictError",
  "WrongRegionError",
  "InvalidInputError",
  "ProbeFailedError",
  "SourceMismatchError",
  "AuditVerificationError",
  "InsufficientMemoryError",
  "StoreFullError",
  "UnexpectedError",
  "InvalidPolicyError",
  "InvalidConfigError",
  "UnknownDatabaseError",
  "TaskFailedError",
  "UncommittedBackupError",
  "PruneHaltedError",
  "SandboxUnavailableError",
  "ImageConfigError",
  "VerifyStorageError",
  "WalConflictError",
  "WalFileMissingError",
] as const;

export type ErrorName = (typeof ERROR_NAMES)[number];

export interface StrongroomErrorOptions {
  cause?: unknown;
  /** What the user can do about it; printed as `HINT: …`. */
  hint?: string;
}

export class StrongroomError extends Error {
  override name: ErrorName = "StrongroomError";
  readonly hint: string | undefined;

  constructor(message: string, options: StrongroomErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.hint = options.hint;
  }
}

/** Bad flags or arguments: exit code 2. */
export class UsageError extends StrongroomError {
  override name: ErrorName = "UsageError";
}

/** A retention policy that cannot be applied (negative counts, daily 0, an unknown time zone): a usage error. */
export class InvalidPolicyError extends UsageError {
  override name: ErrorName = "InvalidPolicyError";
}

/** The object (or backup) does not exist. */
export class NotFoundError extends StrongroomError {
  override name = "NotFoundError" as const;
}

/** A put-if-absent found an object already under that key. */
export class AlreadyExistsError extends StrongroomError {
  override name = "AlreadyExistsError" as const;
}

export class BucketNotFoundError extends StrongroomError {
  override name = "BucketNotFoundError" as const;
}

export class AccessDeniedError extends StrongroomError {
  override name = "AccessDeniedError" as const;
}

/** The store could not be reached (DNS, connection refused, timeouts after retries). */
export class StoreUnavailableError extends StrongroomError {
  override name = "StoreUnavailableError" as const;
}

/** Work stopped because its AbortSignal fired (SIGTERM, a failed sibling stage). */
export class AbortedError extends StrongroomError {
  override name = "AbortedError" as const;
}

/** An object key that cannot be stored safely (empty, `..`, absolute, …). */
export class InvalidKeyError extends StrongroomError {
  override name = "InvalidKeyError" as const;
}

/** A framed stream is garbled: bad magic, sizes that disagree, undecodable frame. */
export class CorruptStreamError extends StrongroomError {
  override name = "CorruptStreamError" as const;
}

/** A framed or encrypted stream ended before its format says it may. */
export class TruncatedStreamError extends StrongroomError {
  override name = "TruncatedStreamError" as const;
}

/** The age header does not parse. */
export class AgeHeaderError extends StrongroomError {
  override name = "AgeHeaderError" as const;
}

/** A file key was unwrapped but the header MAC does not match: the header was altered. */
export class AgeHeaderMacError extends StrongroomError {
  override name = "AgeHeaderMacError" as const;
}

/** None of the given identities can unwrap any recipient stanza. */
export class AgeNoIdentityMatchError extends StrongroomError {
  override name = "AgeNoIdentityMatchError" as const;
}

/** A payload chunk failed authentication (tampered, reordered or truncated ciphertext). */
export class AgePayloadAuthError extends StrongroomError {
  override name = "AgePayloadAuthError" as const;
}

export class InvalidRecipientError extends StrongroomError {
  override name = "InvalidRecipientError" as const;
}

export class InvalidIdentityError extends StrongroomError {
  override name = "InvalidIdentityError" as const;
}

/** The database cannot be reached (DNS, refused, timeout). */
export class DatabaseConnectionError extends StrongroomError {
  override name = "DatabaseConnectionError" as const;
}

/** The database refused the credentials. */
export class DatabaseAuthError extends StrongroomError {
  override name = "DatabaseAuthError" as const;
}

/** No installed pg_dump/pg_restore can handle the server's major version. */
export class NoSuitablePgDumpError extends StrongroomError {
  override name = "NoSuitablePgDumpError" as const;
}

/** A backup restored but a check of `verify` did not hold (or it did not restore); the result names the checks. */
export class VerificationFailedError extends StrongroomError {
  override name = "VerificationFailedError" as const;
}

/**
 * `verify`: the scratch server lacks what the backup needs (an extension, a version, a
 * locale), so the backup was neither proven nor disproven. Exit code 3, never 1.
 */
export class VerificationInconclusiveError extends StrongroomError {
  override name = "VerificationInconclusiveError" as const;
}

/** Exit code of a verification that was inconclusive (0 verified, 1 failed, 2 usage). */
export const EXIT_INCONCLUSIVE = 3;

/** `status`: a database's backups or verifications are too old, or its last verification failed. */
export class NotReadyError extends StrongroomError {
  override name = "NotReadyError" as const;
}

/** recover-table: a table asked for is not in the backup (the hint lists close matches). */
export class TableNotFoundError extends StrongroomError {
  override name = "TableNotFoundError" as const;
}

/** A throwaway cluster (initdb, then the server) could not be created or started. */
export class ScratchClusterError extends StrongroomError {
  override name = "ScratchClusterError" as const;
}

/** No PostgreSQL server of the major a scratch cluster needs is installed. */
export class NoSuitableServerError extends StrongroomError {
  override name = "NoSuitableServerError" as const;
}

/** pg_dump (or pg_dumpall) failed; the message carries its redacted stderr. */
export class DumpFailedError extends StrongroomError {
  override name = "DumpFailedError" as const;
}

/** pg_restore (or applying globals) failed; the message carries its redacted stderr. */
export class RestoreFailedError extends StrongroomError {
  override name = "RestoreFailedError" as const;
}

/** The restore target already holds user objects and --clean was not given. */
export class TargetNotEmptyError extends StrongroomError {
  override name = "TargetNotEmptyError" as const;
}

/** Roles the dump needs do not exist in the target cluster and could not be created. */
export class MissingRolesError extends StrongroomError {
  override name = "MissingRolesError" as const;
}

/** No committed backup (manifest) matches the id. */
export class BackupNotFoundError extends StrongroomError {
  override name = "BackupNotFoundError" as const;
}

/** Stored bytes do not match the manifest (size or SHA-256). */
export class IntegrityError extends StrongroomError {
  override name = "IntegrityError" as const;
}

/** Restored row counts differ from those captured at dump time. */
export class RowCountMismatchError extends StrongroomError {
  override name = "RowCountMismatchError" as const;
}

/** A manifest that does not parse or is in no format this version reads (strongroom.manifest/1 or /2). */
export class ManifestError extends StrongroomError {
  override name = "ManifestError" as const;
}

/** The --jobs staging directory could not be written (full disk, permissions). */
export class StagingError extends StrongroomError {
  override name = "StagingError" as const;
}

/** The audit log's head kept moving under us for too long (extreme contention). */
export class AuditConflictError extends StrongroomError {
  override name = "AuditConflictError" as const;
}

/** The bucket lives in another region than the client asked. */
export class WrongRegionError extends StrongroomError {
  override name = "WrongRegionError" as const;
}

/** A Lambda event that does not match its schema (unknown or missing fields). */
export class InvalidInputError extends StrongroomError {
  override name = "InvalidInputError" as const;
}

/** strongroom.config.json (the deployed app's config) has problems; the message lists each. */
export class InvalidConfigError extends StrongroomError {
  override name = "InvalidConfigError" as const;
  /**
   * For an error about a config file: each problem on a line of its own that names the
   * file and the field (`strongroom.config.json: databases[1].id: …`), as printed.
   */
  readonly problems: string[] | undefined;

  constructor(message: string, options: StrongroomErrorOptions & { problems?: string[] } = {}) {
    super(message, options);
    this.problems = options.problems;
  }
}

/** A flow was started for a database id the deployed config does not declare. */
export class UnknownDatabaseError extends StrongroomError {
  override name = "UnknownDatabaseError" as const;
}

/**
 * wal-push found another file already archived under the name it was given (different
 * plaintext, or an object its signer did not sign): never overwritten, never reported as
 * archived. PostgreSQL retries the segment and keeps it until this is resolved.
 */
export class WalConflictError extends StrongroomError {
  override name = "WalConflictError" as const;
}

/**
 * wal-fetch: the store answered that no such WAL file was archived. The only failure
 * restore_command reports as "not found" (exit 1); every other one stops the recovery.
 */
export class WalFileMissingError extends StrongroomError {
  override name = "WalFileMissingError" as const;
}

/** restore_command's exit for anything but a file that is not there: PostgreSQL then aborts recovery instead of promoting. */
export const EXIT_WAL_FETCH_FATAL = 126;

/** No storage a verify task can be given holds the backup's restore (VerifyFlow's planner). */
export class VerifyStorageError extends StrongroomError {
  override name = "VerifyStorageError" as const;
}

/** A worker task of a flow ended without success (non-zero exit, or stopped before it ran). */
export class TaskFailedError extends StrongroomError {
  override name = "TaskFailedError" as const;
}

/** A destination probe step failed; the message names the step and the likely cause. */
export class ProbeFailedError extends StrongroomError {
  override name = "ProbeFailedError" as const;
}

/** errno codes a person meets reading a file they named, in words. */
const FILE_PROBLEMS: Readonly<Record<string, string>> = {
  ENOENT: "no such file",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EISDIR: "it is a directory",
  ENOTDIR: "a part of the path is not a directory",
  ELOOP: "too many levels of symbolic links",
  ENAMETOOLONG: "the name is too long",
};

/** Why a file could not be read, in words (`no such file`, not `ENOENT`), for a message naming the file. */
export function fileProblem(err: unknown): string {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === "string") return FILE_PROBLEMS[code] ?? code;
  return err instanceof Error ? err.message : String(err);
}

export function isStrongroomError(err: unknown): err is StrongroomError {
  return err instanceof StrongroomError;
}

/**
 * Any thrown value as a StrongroomError, so that every failure reaches the user (and
 * Step Functions) under a stable name: ours as they are, permission errors from the
 * filesystem as AccessDeniedError, anything else as UnexpectedError naming the original.
 */
export function asStrongroomError(err: unknown): StrongroomError {
  if (err instanceof StrongroomError) return err;
  const e = err instanceof Error ? err : new Error(String(err));
  const code = (e as { code?: unknown }).code;
  const where = (e as { path?: unknown }).path;
  if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
    return new AccessDeniedError(`permission denied${typeof where === "string" ? `: ${where}` : ""} (${code})`, {
      cause: e,
      hint: "check the path and that this user may use it",
    });
  }
  if (code === "ENOSPC" || code === "EDQUOT") {
    return new StoreFullError(`no space left${typeof where === "string" ? ` at ${where}` : ""} (${code})`, {
      cause: e,
      hint: "free space there, or point strongroom elsewhere",
    });
  }
  const detail = typeof code === "string" ? ` (${code})` : "";
  return new UnexpectedError(`${e.name}: ${e.message}${detail}`, {
    cause: e,
    hint: "this may be a bug in strongroom; rerun with --log-level debug for the stack trace, and report it",
  });
}

/** A backup would join a retention series whose newest backup came from another server or database. */
export class SourceMismatchError extends StrongroomError {
  override name = "SourceMismatchError" as const;
}

/** A failure strongroom did not anticipate (a bug, or an error from a library it does not map yet). */
export class UnexpectedError extends StrongroomError {
  override name = "UnexpectedError" as const;
}

/** The audit log is broken, or disagrees with the backups in the store. */
export class AuditVerificationError extends StrongroomError {
  override name = "AuditVerificationError" as const;
}

/** The work would need more memory than the process may use; refused before starting. */
export class InsufficientMemoryError extends StrongroomError {
  override name = "InsufficientMemoryError" as const;
}

/** The store has no room left (a full disk under a file store). */
export class StoreFullError extends StrongroomError {
  override name = "StoreFullError" as const;
}

/**
 * A backup is in the store but nothing outside the store's writers' reach commits it: no
 * `backup.ok` audit row records the SHA-256 of exactly its manifest. It is never restored,
 * verified or counted; a store writer may have planted it.
 */
export class UncommittedBackupError extends StrongroomError {
  override name = "UncommittedBackupError" as const;
}

/** Prune refused to touch a series that holds a manifest it cannot account for (planted, replaced, unreadable). */
export class PruneHaltedError extends StrongroomError {
  override name = "PruneHaltedError" as const;
}

/** npm run sim cannot run a task the way Fargate would: bubblewrap is missing, or the task asks for what the sandbox cannot model. */
export class SandboxUnavailableError extends StrongroomError {
  override name = "SandboxUnavailableError" as const;
}

/** The worker's Dockerfile, or a container's user, says something npm run sim cannot read as Docker would. */
export class ImageConfigError extends StrongroomError {
  override name = "ImageConfigError" as const;
}
