import { VerifyStorageError } from "../errors.ts";

/**
 * How much storage a verify task gets: VerifyFlow's planner sizes it for each run from
 * the backup's manifest, so a database that grew is not verified on a volume sized by
 * hand for last year's. The verify task restores into a cluster on its scratch storage
 * and, with -j, stages the decrypted archive beside it. Two kinds, both set per run:
 *
 * - Fargate's ephemeral storage, 21 to 200 GiB (RunTask's overrides.ephemeralStorage):
 *   no volume to create, so the cheaper and quicker start;
 * - an EBS gp3 volume that ECS creates at launch and deletes when the task stops
 *   (RunTask's volumeConfigurations), 1 to 16,384 GiB: for what ephemeral storage cannot
 *   hold, or for every run where the config says `verify.storage: "ebs"`.
 */
export const FARGATE_EPHEMERAL_GIB = { min: 21, max: 200 } as const;
/** gp3's sizes (the EBS user guide's volume types table). */
export const EBS_GP3_GIB = { min: 1, max: 16_384 } as const;

const GiB = 2 ** 30;
/** Room besides the data: WAL the restore writes before a checkpoint recycles it, index builds' sort files. */
const HEADROOM_BYTES = 3 * GiB;
/** A restored database comes out somewhat larger than pg_database_size had it (fresh indexes are packed, but fill factors and WAL are not). */
const GROWTH = 1.25;
/** Without a recorded size: a database is rarely over 3 times its -Z0 dump (indexes are not in a dump). */
const DATABASE_PER_DUMP_BYTE = 3;

/**
 * How many pg_restore jobs verify runs on a machine of `cores`: all of them from 4 up,
 * else 1. Below 4 the staging pass costs more than parallel jobs win back (on 2 cores,
 * 827 MB of dump, -j 2 took 1.1 to 1.7 times the serial restore).
 */
export function verifyJobsFor(cores: number): number {
  return cores >= 4 ? Math.floor(cores) : 1;
}

/** Where a verify run's scratch cluster goes: `auto` is ephemeral storage while it holds the restore, else EBS. */
export type VerifyStorageKind = "auto" | "ebs";

export type VerifyStorage = {
  /** What the restore needs, in GiB, and what it was reckoned from. */
  neededGiB: number;
  basis: "databaseBytes" | "dumpBytes";
  /**
   * Whether there is room to stage the archive for a parallel restore. Without it the
   * task restores serially (`--jobs 1`), streaming: slower, but the largest database a
   * size can verify grows by the archive's size.
   */
  staged: boolean;
  /** The task's ephemeral storage, in GiB (RunTask's overrides.ephemeralStorage.sizeInGiB). */
  ephemeralGiB: number;
} & (
  | { kind: "ephemeral" }
  /** An EBS volume of `volumeGiB` holds the scratch cluster; ephemeral storage keeps the task definition's size. */
  | { kind: "ebs"; volumeGiB: number }
);

/**
 * The storage for verifying one backup: the database as the backup recorded it, grown by
 * a margin, the staged archive, and headroom; never less than `configuredGiB` (the
 * task definition's ephemeral storage). Ephemeral storage while it holds the restore
 * (serially, streaming, where the staged archive would not fit beside it), unless the
 * config asks for EBS; beyond it, an EBS volume where the deployment has one (settings
 * written before it do not). What needs more than any supported size is refused here, before
 * anything runs, by a typed error that VerifyFlow's failure notification carries.
 */
export function verifyStorage(
  backup: { databaseId: string; backupId: string; databaseBytes?: number; dumpBytes: number },
  configuredGiB: number,
  options: {
    kind?: VerifyStorageKind;
    ebsAvailable?: boolean;
    /** The task's vCPUs: below 4 verify restores serially and stages nothing. @default room to stage */
    vcpus?: number;
  } = {},
): VerifyStorage {
  const kind = options.kind ?? "auto";
  const ebsAvailable = options.ebsAvailable ?? false;
  const basis = backup.databaseBytes !== undefined ? "databaseBytes" : "dumpBytes";
  const database = backup.databaseBytes ?? backup.dumpBytes * DATABASE_PER_DUMP_BYTE;
  const serialGiB = Math.ceil((database * GROWTH + HEADROOM_BYTES) / GiB);
  // A task that restores serially never stages the archive: no room is reserved for it.
  const stages = options.vcpus === undefined || verifyJobsFor(options.vcpus) > 1;
  const stagedGiB = stages ? Math.ceil((database * GROWTH + backup.dumpBytes + HEADROOM_BYTES) / GiB) : Infinity;
  const ephemeralGiB = Math.max(FARGATE_EPHEMERAL_GIB.min, configuredGiB);
  const base = { basis, ephemeralGiB } as const;
  const useEbs = ebsAvailable && (kind === "ebs" || serialGiB > FARGATE_EPHEMERAL_GIB.max);
  if (!useEbs) {
    if (serialGiB > FARGATE_EPHEMERAL_GIB.max) {
      throw tooLarge(backup, database, serialGiB, FARGATE_EPHEMERAL_GIB.max, "a Fargate task's ephemeral storage");
    }
    const staged = stagedGiB <= FARGATE_EPHEMERAL_GIB.max;
    const neededGiB = staged ? stagedGiB : serialGiB;
    return { ...base, kind: "ephemeral", neededGiB, staged, ephemeralGiB: Math.max(ephemeralGiB, neededGiB) };
  }
  if (serialGiB > EBS_GP3_GIB.max) throw tooLarge(backup, database, serialGiB, EBS_GP3_GIB.max, "an EBS gp3 volume");
  const staged = stagedGiB <= EBS_GP3_GIB.max;
  const neededGiB = staged ? stagedGiB : serialGiB;
  return { ...base, kind: "ebs", neededGiB, staged, volumeGiB: neededGiB };
}

function tooLarge(
  backup: { databaseId: string; backupId: string },
  database: number,
  neededGiB: number,
  maxGiB: number,
  what: string,
): VerifyStorageError {
  return new VerifyStorageError(
    `verifying ${backup.databaseId}/${backup.backupId} needs about ${neededGiB} GiB of scratch storage for a ${gib(database)} GiB database, restored serially; ${what} holds at most ${maxGiB} GiB`,
    {
      hint: "verify it where the storage is: `strongroom verify --scratch postgres://…` against a server with room for it, or --scratch auto on a machine with the disk",
    },
  );
}

const gib = (bytes: number) => (bytes / GiB).toFixed(1);
