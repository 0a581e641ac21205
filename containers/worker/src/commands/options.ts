import { readFile } from "node:fs/promises";
import { type Command, Option } from "commander";
import { fileProblem, InvalidIdentityError, UsageError } from "#core/errors.ts";
import { isBackupId } from "#core/keys.ts";
import { type Logger, registerSecret } from "#core/log.ts";
import { identityFileExposure } from "../identity-file.ts";

/** Options shared by the CLI's commands, and the parsers of option values. */

/** `--backup`: which backup a reading command reads. */
export const backupOption = () =>
  new Option("--backup <id>", "backup id, or latest").default("latest").env("STRONGROOM_BACKUP");

/**
 * The options of every command that reads one backup (restore, verify, recover-table,
 * export-schema): --store, --backup, --identity and --database-id, whose help says what
 * the command does with the backup; and what decides that the backup counts (the audit
 * log, whose rows in it count, a flow's digest, or --trust-store).
 */
export function readsBackup(command: Command, verb: string): Command {
  command
    .addOption(storeOption())
    .addOption(backupOption())
    .addOption(identityOption())
    .addOption(databaseIdOption(`the database whose backup to ${verb} (needed when the store holds several)`))
    .addOption(manifestSha256Option());
  return readsLedger(command);
}

/**
 * The options of every command that decides what counts (docs/trust.md): where the audit
 * log is, whose rows in a store's own log count, and --trust-store.
 */
export function readsLedger(command: Command): Command {
  return command
    .addOption(auditOption())
    .addOption(auditTableOption())
    .addOption(signingKeyOption())
    .addOption(signerOption())
    .addOption(trustStoreOption());
}

/**
 * `--manifest-sha256`: the flows' way to name a backup. The plan step resolved it in the
 * audit log; the task refuses any manifest with other bytes.
 */
export const manifestSha256Option = () =>
  new Option(
    "--manifest-sha256 <hex>",
    "use the backup only if its manifest has this SHA-256 (the flows pass the committed one)",
  ).env("STRONGROOM_MANIFEST_SHA256");

/**
 * `--trust-store`: disaster recovery after the audit log is lost. Every well-formed
 * manifest then counts, anchored or not, so anyone who could write the store decides
 * what is restored. Loud, never a default, never used by a flow.
 */
export const trustStoreOption = () =>
  flagOption(
    "--trust-store",
    "DISASTER RECOVERY ONLY: count every manifest in the store, even without its backup.ok audit row (anyone who can write the store can plant one)",
    "STRONGROOM_TRUST_STORE",
  );

export const storeOption = () =>
  new Option("--store <url>", "file:///absolute/dir or s3://bucket[/prefix]")
    .env("STRONGROOM_STORE")
    .makeOptionMandatory();
/**
 * Boolean environment values, parsed strictly: commander's own `.env()` turns a flag
 * on whenever its variable is set, so `STRONGROOM_FORCE=0` would mean --force.
 * Empty counts as unset; anything but these words is a usage error.
 */
const TRUE_WORDS = new Set(["1", "true", "yes", "on"]);
const FALSE_WORDS = new Set(["0", "false", "no", "off"]);

export function parseBool(raw: string | undefined, name: string): boolean | undefined {
  if (raw === undefined || raw.trim() === "") return undefined;
  const word = raw.trim().toLowerCase();
  if (TRUE_WORDS.has(word)) return true;
  if (FALSE_WORDS.has(word)) return false;
  throw new UsageError(`${name} must be 1, true, yes, 0, false or no, got ${JSON.stringify(raw)}`, {
    hint: `unset ${name} or give it one of those values`,
  });
}

/** Flags whose environment variable is read by settleOptions, not by commander. */
const flagEnv = new WeakMap<Option, string>();

/** A boolean flag (`--force`, or a negated `--no-owner`) with a strictly parsed env var. */
export function flagOption(flags: string, description: string, envVar: string): Option {
  const option = new Option(flags, `${description} (env: ${envVar}=1|0)`);
  flagEnv.set(option, envVar);
  return option;
}

/** Options whose values are checked after parsing (see checkedOption). */
const checkers = new WeakMap<Option, (raw: string) => unknown>();

/**
 * An option whose value is parsed and checked once the whole command line is parsed,
 * not while commander walks it: a bad `--jobs 0` before `--json` must still fail as
 * the JSON document that --json asked for.
 */
export function checkedOption(flags: string, description: string, check: (raw: string) => unknown): Option {
  const option = new Option(flags, description);
  checkers.set(option, check);
  return option;
}

/**
 * Completes the parsed options of the command about to run (a preAction hook): flags
 * not given on the command line from their env vars, then the checked values. Every
 * option is settled before the first problem is thrown, so the error printer sees them all.
 */
export function settleOptions(command: Command, env: NodeJS.ProcessEnv = process.env): void {
  let problem: unknown;
  for (const option of command.options) {
    const name = option.attributeName();
    try {
      const envVar = flagEnv.get(option);
      if (envVar !== undefined && command.getOptionValueSource(name) !== "cli") {
        const value = parseBool(env[envVar], envVar);
        // A negated flag (--no-owner) stores the opposite: owner=false when STRONGROOM_NO_OWNER=1.
        if (value !== undefined) command.setOptionValueWithSource(name, option.negate ? !value : value, "env");
      }
    } catch (err) {
      problem ??= err;
    }
  }
  for (const option of command.options) {
    const check = checkers.get(option);
    const name = option.attributeName();
    const raw: unknown = command.getOptionValue(name);
    if (check === undefined || typeof raw !== "string") continue;
    try {
      command.setOptionValueWithSource(name, check(raw), command.getOptionValueSource(name) ?? "cli");
    } catch (err) {
      problem ??= err;
    }
  }
  if (problem !== undefined) throw problem;
}

/** `--recipient`: the age public keys a backup, a base backup or a WAL file is encrypted to. */
export const recipientOption = () =>
  new Option(
    "--recipient <age1…>",
    "age public key to encrypt to; repeat for several (in the env var, comma-separated)",
  )
    .argParser(splitList)
    .env("STRONGROOM_RECIPIENTS")
    .makeOptionMandatory();

export const jsonOption = () => flagOption("--json", "machine-readable output on stdout", "STRONGROOM_JSON");
export const databaseIdOption = (description = "the database's id in the store (default: its name)") =>
  new Option("--database-id <id>", description).env("STRONGROOM_DATABASE_ID");
export const auditOption = () =>
  new Option(
    "--audit <where>",
    "the audit log that records events and decides which backups count: store (the store's own log) or none",
  )
    .choices(["store", "none"])
    .default("store")
    .env("STRONGROOM_AUDIT");

export const auditTableOption = () =>
  new Option(
    "--audit-table <name>",
    "use this DynamoDB table as the audit log instead (endpoint from AWS_ENDPOINT_URL_DYNAMODB)",
  ).env("STRONGROOM_AUDIT_TABLE");

/** `--jobs 4`: an integer >= 1. */
export function positiveInt(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1)
      throw new UsageError(`${flag} must be a positive integer, got ${JSON.stringify(value)}`);
    return n;
  };
}

/** `--backup-id`: a backup id as strongroom makes them. */
export function backupIdArg(value: string): string {
  if (!isBackupId(value)) {
    throw new UsageError(`--backup-id must look like 20260421T020000Z-abc234, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** `--keep-weekly 0`: an integer >= 0. */
export function wholeNumber(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0)
      throw new UsageError(`${flag} must be a whole number >= 0, got ${JSON.stringify(value)}`);
    return n;
  };
}

/** A repeatable flag whose env var is a comma- or space-separated list. */
export function splitList(value: string, previous: string[] = []): string[] {
  return [...previous, ...value.split(/[\s,]+/).filter((v) => v !== "")];
}

/**
 * --identity, for every command that decrypts (restore, and verify next). Where no file
 * may hold it (a Fargate task, whose root filesystem is read-only and whose disk must not
 * keep secrets), STRONGROOM_IDENTITY holds the identity itself, as ECS injects it from
 * Secrets Manager.
 */
export const identityOption = () =>
  new Option(
    "--identity <file>",
    "age identity file (AGE-SECRET-KEY-1…); or set STRONGROOM_IDENTITY to the identity itself",
  ).env("STRONGROOM_IDENTITY_FILE");

/** The identities from --identity (warning on `log` of a file others can read), else from STRONGROOM_IDENTITY. */
export async function identitiesFrom(
  file: string | undefined,
  command: string,
  env = process.env,
  log?: Pick<Logger, "warn">,
): Promise<string[]> {
  if (file !== undefined) return readIdentityFile(file, log);
  const text = env.STRONGROOM_IDENTITY;
  if (text) {
    registerSecret(text);
    return (await import("../stages/age-stream.ts")).parseIdentities(text);
  }
  throw new UsageError("required option '--identity <file>' not specified (give it, or set STRONGROOM_IDENTITY_FILE)", {
    hint: `pass the file \`strongroom keygen\` wrote, or set STRONGROOM_IDENTITY to the identity itself; strongroom ${command} --help shows the usage`,
  });
}

export async function readIdentityFile(file: string, log?: Pick<Logger, "warn">): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new InvalidIdentityError(`cannot read identity file ${file}: ${fileProblem(err)}`, {
      cause: err,
      hint: "pass the file written by `strongroom keygen` (or age-keygen) with --identity",
    });
  }
  const exposure = log && (await identityFileExposure(file));
  if (exposure) log.warn(exposure);
  return (await import("../stages/age-stream.ts")).parseIdentities(text);
}

/**
 * `--signing-key`: this host signs the audit rows it writes in a store's own log, so
 * that a store writer cannot append rows that count (core/audit/row-signature.ts). Its
 * public half is trusted too. Where no file may hold it (a task), STRONGROOM_SIGNING_KEY
 * holds the key itself.
 */
export const signingKeyOption = () =>
  new Option(
    "--signing-key <file>",
    "sign the audit rows written to the store's log with this key (strongroom keygen --signing); or set STRONGROOM_SIGNING_KEY to the key itself",
  ).env("STRONGROOM_SIGNING_KEY_FILE");

/** `--signer`: whose rows in a store's own log count (repeatable). */
export const signerOption = () =>
  new Option(
    "--signer <srsigner1…>",
    "count only audit rows signed by this signer in the store's log (repeatable; the --signing-key's own is counted too)",
  )
    .argParser(splitList)
    .env("STRONGROOM_SIGNERS");
