import { Ajv } from "ajv";
import { databaseNameProblem } from "../database-name.ts";
import { InvalidInputError, UnknownDatabaseError } from "../errors.ts";
import { BACKUP_ID_PATTERN, DATABASE_ID_PATTERN, newBackupId } from "../keys.ts";
import { type DatabaseSettings, type FlowSettings, WORKER_CONTAINER } from "./flow-settings.ts";
import { FARGATE_EPHEMERAL_GIB, verifyStorage } from "./verify-storage.ts";

/** A committed backup as a plan hands it on: its id and its manifest's SHA-256 (core/ledger.ts). */
export interface CommittedRef {
  backupId: string;
  manifestSha256: string;
  /** From its committed manifest: the plain dump's size, and the database's where recorded. */
  dumpBytes?: number;
  databaseBytes?: number;
}

/** What a flow's RunTask state needs, and what the audit and later states are told. */
export interface TaskPlan {
  databaseId: string;
  backupId: string;
  taskDefinition: string;
  container: string;
  /** The worker's argv (container override); never a secret. */
  command: string[];
}

export interface BackupPlan extends TaskPlan {
  /** `logical` (pg_dump) or `base` (a physical base backup, for point-in-time recovery): the audit rows' and the record's kind. */
  kind: BackupKind;
  retention: DatabaseSettings["retention"];
  /**
   * For a database whose host archives its WAL: the host's signers, so that retention
   * prunes its base backups and WAL too (core/pitr/base-prune.ts). Null otherwise.
   */
  bases: { signers: string[] } | null;
}

export type BackupKind = "logical" | "base";

async function configuredDatabase(settings: FlowSettings, databaseId: string): Promise<DatabaseSettings> {
  const db = await settings.database(databaseId);
  if (!db) {
    // Listing the others costs a call per ten databases; only a wrong id pays it.
    const ids = (await settings.databases()).map((d) => d.id);
    throw new UnknownDatabaseError(`no database ${JSON.stringify(databaseId)} is configured`, {
      hint: `configured: ${ids.length > 20 ? `${ids.slice(0, 20).join(", ")} and ${ids.length - 20} more` : ids.join(", ")}; add it to strongroom.config.json and deploy`,
    });
  }
  return db;
}

/**
 * BackupFlow's first step: the backup id is chosen here, before the task starts, so
 * that backup.start, the task and catalog-record all name the same backup.
 */
export async function planBackup(
  settings: FlowSettings,
  input: { databaseId: string; kind?: BackupKind },
  now: Date,
): Promise<BackupPlan> {
  const db = await configuredDatabase(settings, input.databaseId);
  const backupId = newBackupId(now);
  const bases = db.wal ? { signers: db.wal.signers } : null;
  if (input.kind === "base") {
    if (!db.wal || (db.mode ?? "logical") === "logical") {
      throw new InvalidInputError(`database ${db.id} takes no base backups: its mode is not physical or both`, {
        hint: 'set "mode": "physical" or "both" (with "walArchiving": true and "walSigners") on it in strongroom.config.json, and deploy',
      });
    }
    return {
      databaseId: db.id,
      backupId,
      kind: "base",
      taskDefinition: db.backupTaskDefinition,
      container: WORKER_CONTAINER,
      // Unsigned: the task holds no key that decides what counts; the flow's backup.ok row of kind "base" commits it.
      command: ["basebackup", "--database-id", db.id, "--base-id", backupId, "--unsigned", "--json"],
      retention: db.retention,
      bases,
    };
  }
  return {
    databaseId: db.id,
    backupId,
    kind: "logical",
    taskDefinition: db.backupTaskDefinition,
    container: WORKER_CONTAINER,
    // The flow records start/ok/fail itself (a task that never starts is recorded too).
    command: ["backup", "--database-id", db.id, "--backup-id", backupId, "--audit", "none", "--json"],
    retention: db.retention,
    bases,
  };
}

/** RestoreFlow's input, as typed in the console. */
export interface RestoreRequest {
  databaseId: string;
  backupId?: string;
  target: { database: string } | { secretArn: string; database?: string };
  clean?: boolean;
  noOwner?: boolean;
  /** The target database's name again, exactly: required for `clean` on the source's own server. */
  confirm?: string;
}

const dbName = { type: "string", minLength: 1, maxLength: 63, pattern: "^[^\\u0000]+$" };
const restoreSchema = {
  type: "object",
  additionalProperties: false,
  required: ["databaseId", "target"],
  properties: {
    databaseId: { type: "string", pattern: DATABASE_ID_PATTERN },
    backupId: { type: "string", anyOf: [{ const: "latest" }, { pattern: BACKUP_ID_PATTERN }] },
    target: {
      oneOf: [
        { type: "object", additionalProperties: false, required: ["database"], properties: { database: dbName } },
        {
          type: "object",
          additionalProperties: false,
          required: ["secretArn"],
          properties: { secretArn: { type: "string", minLength: 1 }, database: dbName },
        },
      ],
    },
    clean: { type: "boolean" },
    noOwner: { type: "boolean" },
    confirm: { type: "string" },
  },
};
const validateRestore = new Ajv({ allErrors: true }).compile<RestoreRequest>(restoreSchema);

/** Field names that suggest a credential; such input is refused with its own message. */
const SECRET_FIELD = /pass(word)?|pwd|secret(?!Arn$)|token|credential|^url$|connection/i;

/**
 * Checks a RestoreFlow input before any task runs. Execution input is shown in the
 * console and kept in the execution history, so a password there is refused outright
 * (by field name, wherever it sits), not merely ignored.
 */
export function checkRestoreRequest(input: unknown): RestoreRequest {
  const secretField = findField(input, (k) => SECRET_FIELD.test(k));
  if (secretField !== undefined) {
    throw new InvalidInputError(
      `the input has a field ${JSON.stringify(secretField)}: a restore's input must never carry a password`,
      {
        hint: 'execution input is visible in the console; put the target\'s credentials in a Secrets Manager secret, declare it in restoreTargets, and pass {"target": {"secretArn": …}}',
      },
    );
  }
  if (!validateRestore(input)) {
    const problems = (validateRestore.errors ?? []).map(
      (e) =>
        `${e.instancePath || "input"} ${e.message}${e.params && "additionalProperty" in e.params ? ` '${e.params.additionalProperty}'` : ""}`,
    );
    throw new InvalidInputError(`invalid restore input: ${[...new Set(problems)].join("; ")}`, {
      hint: 'e.g. {"databaseId": "shop", "backupId": "latest", "target": {"database": "shop_restored"}}',
    });
  }
  // The schema counts characters; PostgreSQL's limit is bytes, and the server cuts a
  // longer name short, which would restore into a database nobody named.
  const database = input.target.database;
  const problem = database === undefined ? undefined : databaseNameProblem(database);
  if (problem !== undefined) {
    throw new InvalidInputError(`target.database ${problem}`, {
      hint: "choose a shorter name (Unicode characters take 2 to 4 bytes each)",
    });
  }
  // Every database created later on the server is copied from template1 (and template0
  // is its pristine twin): a restore there would plant the backup's objects, and the code
  // in them, into each of those.
  if (database === "template0" || database === "template1") {
    throw new InvalidInputError(`target.database ${database} is a template database`, {
      hint: "restore into a new database (it is created), then rename it if need be",
    });
  }
  checkConfirmed(input);
  return input;
}

/**
 * `clean` drops the backup's objects in the target before restoring, so a clean restore
 * into the source database itself replaces production with the backup. The plan cannot
 * tell the source database from another on its server (the name is the dbname in the
 * database's secret, which the plan may not read), so every clean restore on the
 * source's own server needs `"confirm": "<the database name>"`, equal code unit for code
 * unit: no trimming, case folding or Unicode normalization. A `confirm` that is given
 * must match wherever it appears: a typo in a confirmation never passes quietly.
 */
function checkConfirmed(request: RestoreRequest): void {
  const database = request.target.database;
  const withConfirm = JSON.stringify({ ...request, confirm: database });
  if (request.confirm !== undefined && request.confirm !== database) {
    throw new InvalidInputError(
      database === undefined
        ? `"confirm" is ${JSON.stringify(request.confirm)}, but the target names no database to confirm`
        : `"confirm" is ${JSON.stringify(request.confirm)}, not the target database's name ${JSON.stringify(database)}: it must equal it exactly`,
      {
        hint:
          database === undefined
            ? 'leave "confirm" out, or name the database in target.database'
            : `the input to start: ${withConfirm}`,
      },
    );
  }
  const ownServer = !("secretArn" in request.target);
  if (request.clean === true && ownServer && request.confirm === undefined) {
    // The message names the field to add too: the console shows a Lambda's message, not its hint.
    throw new InvalidInputError(
      `a clean restore into database ${JSON.stringify(database)} on the server of ${request.databaseId} drops and replaces the backup's objects there, which may be the production database: add "confirm": ${JSON.stringify(database)} to the input to go ahead`,
      { hint: `the input to start: ${withConfirm}` },
    );
  }
}

function findField(value: unknown, test: (key: string) => boolean): string | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  for (const [k, v] of Object.entries(value)) {
    if (test(k)) return k;
    const inner = findField(v, test);
    if (inner !== undefined) return `${k}.${inner}`;
  }
  return undefined;
}

/**
 * RestoreFlow's first step: which task definition (whose secrets connect to the target
 * server) and which argv. `latest` is resolved here, so the audit rows and the task name
 * the same backup.
 */
export async function planRestore(
  settings: FlowSettings,
  input: unknown,
  resolve: (databaseId: string, backup: string) => Promise<CommittedRef>,
): Promise<TaskPlan & { target: string; manifestSha256: string }> {
  const request = checkRestoreRequest(input);
  const db = await configuredDatabase(settings, request.databaseId);
  let taskDefinition = db.restoreTaskDefinition;
  let target = `the server of ${db.id}`;
  if ("secretArn" in request.target) {
    const arn = request.target.secretArn;
    const targets = await settings.restoreTargets();
    const declared = targets.find((t) => t.secretArn === arn);
    if (!declared) {
      throw new InvalidInputError("target.secretArn is not a declared restore target", {
        hint: `declare it in restoreTargets in strongroom.config.json and deploy; declared: ${targets.map((t) => t.id).join(", ") || "none"}`,
      });
    }
    taskDefinition = declared.restoreTaskDefinition;
    target = `restore target ${declared.id}`;
  }
  const { backupId, manifestSha256 } = await resolve(db.id, request.backupId ?? "latest");
  // The connection comes from the task's secrets (PG* variables). The database is named
  // beside the URL, as one `--target-database=NAME` argument: the worker takes it as it is,
  // so no character goes through URL parsing (which turned `a=b` into `a%3Db`, and `..`
  // into no name at all: the secret's own database), and a name starting with `-` cannot
  // be read as an option. Without a name, the target secret's dbname is the database.
  // The manifest's SHA-256 pins the backup the ledger resolved: the task refuses any other.
  const database = request.target.database;
  const command = [
    "restore",
    "--database-id",
    db.id,
    "--backup",
    backupId,
    "--manifest-sha256",
    manifestSha256,
    "--target",
    "postgres://",
  ];
  if (database !== undefined) command.push(`--target-database=${database}`);
  command.push("--create");
  if (request.clean) command.push("--clean");
  if (request.noOwner) command.push("--no-owner");
  command.push("--audit", "none", "--json");
  return {
    databaseId: db.id,
    backupId,
    taskDefinition,
    container: WORKER_CONTAINER,
    command,
    manifestSha256,
    target: database === undefined ? target : `${target}, database ${database}`,
  };
}

/**
 * The worker's restore flags as RestoreFlow's input says them (planRestore turns the
 * input into these flags). `--create` has no field: the plan always passes it, so a
 * RestoreFlow creates the database its target names when it is missing.
 */
const RESTORE_FLAGS_IN_INPUT: Record<string, string> = {
  "--clean": '"clean": true in the input',
  "--no-owner": '"noOwner": true in the input',
  "--create": '"target": {"database": "<name>"} in the input (RestoreFlow creates a missing database)',
};

/**
 * A worker's hint, written for the CLI ("pass --clean"), in the terms of the flow that
 * ran it ("pass "clean": true in the input"), for the flags its input sets. `command`
 * is the worker's subcommand (the task's argv[0]); other flags and commands are left as
 * the worker wrote them.
 */
export function hintInFlowTerms(command: string, hint: string): string {
  if (command !== "restore") return hint;
  return hint.replace(/--[a-z][a-z-]*(?![\w=-])/g, (flag) => RESTORE_FLAGS_IN_INPUT[flag] ?? flag);
}

/** A base backup as a plan hands it on: signed by the database host, and its manifest's SHA-256 as read. */
export interface BaseRef {
  baseId: string;
  manifestSha256: string;
  /** The base's plain tar: about the cluster's size. */
  plainBytes: number;
}

/** What VerifyFlow verifies: a logical backup by restoring it, or a point-in-time recovery by recovering a base and its WAL. */
export type VerifyKind = "restore" | "pitr";

/** VerifyFlow's plan: the task, and the storage its run gets (VerifyFlow chooses its RunTask state by `storage`). */
export type VerifyPlan = TaskPlan & {
  /** The audit rows' and the record's `kind`. */
  kind: VerifyKind;
  manifestSha256: string;
  storage: "ephemeral" | "ebs";
  /** RunTask's overrides.ephemeralStorage.sizeInGiB. */
  ephemeralStorageGiB: number;
  /** With storage "ebs": the volume's size, RunTask's volumeConfigurations[0].managedEBSVolume.sizeInGiB. */
  volumeGiB?: number;
};

/**
 * VerifyFlow's first step, started by each database's verify schedule with
 * `{"databaseId"}` (or by hand with a `backupId`): resolves `latest` here, so the audit
 * rows and the task name the same backup. The task restores into a throwaway cluster
 * inside itself; it needs no database credentials, only the identity.
 */
export async function planVerify(
  settings: FlowSettings,
  input: { databaseId: string; backupId?: string; kind?: VerifyKind },
  resolve: (databaseId: string, backup: string) => Promise<CommittedRef>,
  resolveBase?: (databaseId: string, signers: ReadonlySet<string>, base: string) => Promise<BaseRef>,
): Promise<VerifyPlan> {
  const db = await configuredDatabase(settings, input.databaseId);
  if (input.kind === "pitr") {
    if (!resolveBase) throw new InvalidInputError("this planner cannot resolve base backups");
    return planPitrVerify(db, input.backupId ?? "latest", resolveBase);
  }
  const { backupId, manifestSha256, dumpBytes, databaseBytes } = await resolve(db.id, input.backupId ?? "latest");
  // Sized for this backup, before anything runs: one no task can hold is refused here.
  const storage = verifyStorage(
    {
      databaseId: db.id,
      backupId,
      dumpBytes: dumpBytes ?? 0,
      ...(databaseBytes !== undefined ? { databaseBytes } : {}),
    },
    db.verify.ephemeralGiB ?? FARGATE_EPHEMERAL_GIB.min,
    {
      kind: db.verify.storage ?? "auto",
      ebsAvailable: db.verifyVolumeTaskDefinition !== undefined,
      ...(db.verify.vcpus !== undefined ? { vcpus: db.verify.vcpus } : {}),
    },
  );
  const command = [
    "verify",
    "--database-id",
    db.id,
    "--backup",
    backupId,
    "--manifest-sha256",
    manifestSha256,
    "--audit",
    "none",
    "--json",
  ];
  if (db.verify.deep) command.push("--deep");
  for (const name of db.verify.skipExtensions ?? []) command.push("--skip-extension", name);
  // No room to stage the archive beside the cluster: a serial, streaming restore.
  if (!storage.staged) command.push("--jobs", "1");
  return {
    databaseId: db.id,
    backupId,
    kind: "restore",
    // The definition whose scratch is a volume configured at launch only gets one.
    taskDefinition: storage.kind === "ebs" ? (db.verifyVolumeTaskDefinition as string) : db.verifyTaskDefinition,
    container: WORKER_CONTAINER,
    command,
    manifestSha256,
    storage: storage.kind,
    ephemeralStorageGiB: storage.ephemeralGiB,
    ...(storage.kind === "ebs" ? { volumeGiB: storage.volumeGiB } : {}),
  };
}

/**
 * VerifyFlow for a point-in-time recovery (`{"databaseId", "kind": "pitr"}`, the daily
 * schedule of a database with walArchiving): the newest base backup the host signed (or
 * the one named), resolved here with the host's signers from the settings, so the audit
 * rows and the task name the same manifest. The task (`verify --pitr`) refuses a manifest
 * with other bytes, and trusts only the same signers for the WAL it replays.
 */
async function planPitrVerify(
  db: DatabaseSettings,
  base: string,
  resolveBase: (databaseId: string, signers: ReadonlySet<string>, base: string) => Promise<BaseRef>,
): Promise<VerifyPlan> {
  if (!db.wal) {
    throw new InvalidInputError(`database ${db.id} has no point-in-time recovery to verify`, {
      hint: 'set "walArchiving": true and "walSigners" on it in strongroom.config.json, and deploy',
    });
  }
  const ref = await resolveBase(db.id, new Set(db.wal.signers), base);
  // The scratch holds the unpacked base and the WAL fetched for the replay: sized as a
  // database of twice the base (a day's WAL is rarely more than the cluster).
  const storage = verifyStorage(
    { databaseId: db.id, backupId: ref.baseId, dumpBytes: 0, databaseBytes: ref.plainBytes * 2 },
    db.verify.ephemeralGiB ?? FARGATE_EPHEMERAL_GIB.min,
    {
      kind: db.verify.storage ?? "auto",
      ebsAvailable: db.verifyVolumeTaskDefinition !== undefined,
      ...(db.verify.vcpus !== undefined ? { vcpus: db.verify.vcpus } : {}),
    },
  );
  return {
    databaseId: db.id,
    backupId: ref.baseId,
    kind: "pitr",
    taskDefinition: storage.kind === "ebs" ? (db.verifyVolumeTaskDefinition as string) : db.verifyTaskDefinition,
    container: WORKER_CONTAINER,
    command: [
      "verify",
      "--pitr",
      "--database-id",
      db.id,
      "--base",
      ref.baseId,
      "--manifest-sha256",
      ref.manifestSha256,
      ...db.wal.signers.flatMap((signer) => ["--signer", signer]),
      "--audit",
      "none",
      "--json",
    ],
    manifestSha256: ref.manifestSha256,
    storage: storage.kind,
    ephemeralStorageGiB: storage.ephemeralGiB,
    ...(storage.kind === "ebs" ? { volumeGiB: storage.volumeGiB } : {}),
  };
}
