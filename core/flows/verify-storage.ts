import { VerifyStorageError } from "../errors.ts";

/**
 * How much storage a verify task gets: VerifyFlow's planner sizes it for each run from
 * the backup's manifest, so a database that grew is not verified on a volume sized by
 * hand for last year's. The verify task restores into a cluster on its ephemeral storage
 * (Fargate: 21 to 200 GiB, set per task through RunTask's overrides), and with -j stages
 * the decrypted archive beside it.
 */
export const FARGATE_EPHEMERAL_GIB = { min: 21, max: 200 } as const;

const GiB = 2 ** 30;
/** Room besides the data: WAL the restore writes before a checkpoint recycles it, index builds' sort files. */
const HEADROOM_BYTES = 3 * GiB;
/** A restored database comes out somewhat larger than pg_database_size had it (fresh indexes are packed, but fill factors and WAL are not). */
const GROWTH = 1.25;
/** Without a recorded size: a database is rarely over 3 times its -Z0 dump (indexes are not in a dump). */
const DATABASE_PER_DUMP_BYTE = 3;

export interface VerifyStorage {
  /** The task's ephemeral storage, in GiB (RunTask's overrides.ephemeralStorage.sizeInGiB). */
  ephemeralGiB: number;
  /** What the restore needs, in GiB, and what it was reckoned from. */
  neededGiB: number;
  basis: "databaseBytes" | "dumpBytes";
  /**
   * Whether there is room to stage the archive for a parallel restore. Without it the
   * task restores serially (`--jobs 1`), streaming: slower, but the largest database
   * Fargate's storage can verify grows by the archive's size.
   */
  staged: boolean;
}

/**
 * The storage for verifying one backup: the database as the backup recorded it, grown by
 * a margin, the staged archive, and headroom; never less than `configuredGiB` (the
 * task definition's). Where the staged archive would not fit, a serial restore without
 * it; what needs more than Fargate's 200 GiB even so is refused here, before anything
 * runs, by a typed error that VerifyFlow's failure notification carries.
 */
export function verifyStorage(
  backup: { databaseId: string; backupId: string; databaseBytes?: number; dumpBytes: number },
  configuredGiB: number,
): VerifyStorage {
  const basis = backup.databaseBytes !== undefined ? "databaseBytes" : "dumpBytes";
  const database = backup.databaseBytes ?? backup.dumpBytes * DATABASE_PER_DUMP_BYTE;
  const serialGiB = Math.ceil((database * GROWTH + HEADROOM_BYTES) / GiB);
  const stagedGiB = Math.ceil((database * GROWTH + backup.dumpBytes + HEADROOM_BYTES) / GiB);
  const staged = stagedGiB <= FARGATE_EPHEMERAL_GIB.max;
  const neededGiB = staged ? stagedGiB : serialGiB;
  if (neededGiB > FARGATE_EPHEMERAL_GIB.max) {
    throw new VerifyStorageError(
      `verifying ${backup.databaseId}/${backup.backupId} needs about ${neededGiB} GiB of scratch storage for a ${gib(database)} GiB database, restored serially; a Fargate task has at most ${FARGATE_EPHEMERAL_GIB.max} GiB`,
      {
        hint: "verify it where the storage is: `strongroom verify --scratch postgres://…` against a server with room for it, or --scratch auto on a machine with the disk",
      },
    );
  }
  return {
    ephemeralGiB: Math.max(FARGATE_EPHEMERAL_GIB.min, configuredGiB, neededGiB),
    neededGiB,
    basis,
    staged,
  };
}

const gib = (bytes: number) => (bytes / GiB).toFixed(1);
