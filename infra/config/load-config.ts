import { readFileSync } from "node:fs";
import { Ajv, type ErrorObject } from "ajv";
import { parseSigner } from "#core/audit/row-signature.ts";
import { fileProblem, InvalidConfigError } from "#core/errors.ts";
import { validatePolicy } from "#core/gfs.ts";
import { assertX25519Recipient } from "#core/recipients.ts";
import { ecrImageProblem } from "../constructs/ecr-image.ts";
import { type ExistingNetwork, existingNetworkProblems, networkWarnings } from "../constructs/network.ts";
import { type DatabaseTls, DEFAULT_DATABASE_TLS, databaseTlsWarning } from "../constructs/tls.ts";
import { dstProblems } from "./dst.ts";
import { shownPath } from "./report.ts";
import { CONNECTION_KEYS, configSchema } from "./schema.ts";

export interface Retention {
  daily: number;
  weekly: number;
  monthly: number;
}

export interface TaskSize {
  cpu: number;
  memoryMiB: number;
  ephemeralGiB: number;
}

export interface VerifySettings {
  schedule: string;
  deep: boolean;
  maxAgeDays: number;
  /** Extensions verify restores without (with what depends on them): one no verifier has, such as aws_s3. */
  skipExtensions: string[];
  /** The image verify tasks run instead of the worker image: an ECR image URI, built FROM it. @default the worker image */
  image?: string;
  /**
   * Where a verify run's scratch cluster goes: `auto`, the task's ephemeral storage while
   * it holds the restore (up to 200 GiB) and an EBS volume beyond; `ebs`, an EBS volume always.
   */
  storage: "auto" | "ebs";
}

interface Overridable {
  schedule?: string;
  timeZone?: string;
  retention?: Partial<Retention>;
  task?: Partial<TaskSize>;
  verify?: Partial<VerifySettings>;
}

/**
 * A database secret as AWS writes it: an RDS-managed master secret holds only
 * `username` and `password`; Secrets Manager's RDS format may add the rest.
 */
export interface RdsSecret {
  username: string;
  password: string;
  host?: string;
  port?: number;
  dbname?: string;
  engine?: string;
  dbInstanceIdentifier?: string;
}

/** The connection keys a secret may hold besides the credentials. */
export type ConnectionKey = (typeof CONNECTION_KEYS)[number];

/** How a task finds its server, as written in the config. */
interface ConnectionFields {
  tls?: DatabaseTls;
  host?: string;
  port?: number;
  dbname?: string;
  secretHas?: ConnectionKey[];
}

/**
 * Where a task connects: each of host, port and dbname is either a value (the task's
 * plain environment) or read from the secret (`fromSecret`). The user name and password
 * always come from the secret.
 */
export interface Connection {
  tls: DatabaseTls;
  host?: string;
  port?: number;
  dbname?: string;
  fromSecret: ConnectionKey[];
}

/**
 * strongroom.config.json as written (see strongroom.config.example.json). configSchema
 * (schema.ts) is typed by it: `npm run typecheck` fails when the two disagree.
 */
export interface ConfigFile {
  /** The JSON schema an editor checks the file against; ignored here. */
  $schema?: string;
  name: string;
  prefix?: string;
  /** A created bucket always has Object Lock enabled; `objectLock` is only its default retention. */
  bucket: { create: true; objectLock?: { mode: "GOVERNANCE" | "COMPLIANCE"; days: number } } | { name: string };
  recipients: string[];
  identitySecretArn: string;
  network: { create: true } | ExistingNetwork;
  alarmEmail?: string;
  kmsKeyArns?: string[];
  /** The customer-managed KMS key the verify tasks' EBS volumes are encrypted with. @default the account's EBS default */
  ebsKmsKeyArn?: string;
  objectTrail?: boolean;
  defaults?: Overridable;
  databases: Array<
    {
      id: string;
      secretArn: string;
      restoreSecretArn?: string;
      walArchiving?: boolean;
      walSigners?: string[];
      maxWalAgeMinutes?: number;
      mode?: BackupMode;
    } & ConnectionFields &
      Overridable
  >;
  restoreTargets?: Array<{ id: string; secretArn: string } & ConnectionFields>;
  sim?: { secrets?: Record<string, RdsSecret | string> };
}

/** What a database's schedule takes. */
export type BackupMode = "logical" | "physical" | "both";

/** One database with every default applied. */
export interface DatabaseConfig {
  id: string;
  /** What backups connect with; read-only rights suffice. */
  secretArn: string;
  /** What restores connect with (CREATE DATABASE); the backup secret when the config names none. */
  restoreSecretArn: string;
  /** Its server archives WAL into the store (docs/pitr.md): the stack outputs a role for the host that may only add WAL. */
  walArchiving: boolean;
  /**
   * With walArchiving: the host's signers, whose WAL and base backups the deployment's
   * readiness trusts, and the archive-age alarm's limit (none when unset).
   */
  wal?: { signers: string[]; maxAgeMinutes?: number };
  /** What its schedule takes: logical backups (pg_dump), physical base backups (with walArchiving), or both. */
  mode: BackupMode;
  connection: Connection;
  schedule: string;
  timeZone: string;
  retention: Retention;
  task: TaskSize;
  verify: VerifySettings;
}

export interface StrongroomConfig extends Omit<ConfigFile, "databases" | "defaults" | "prefix" | "restoreTargets"> {
  prefix: string;
  databases: DatabaseConfig[];
  restoreTargets: RestoreTargetConfig[];
  /**
   * What deploys but will misbehave (a schedule in a daylight-saving gap, a network that
   * cannot reach the database or AWS), one line each, naming the field.
   */
  warnings: string[];
}

export interface RestoreTargetConfig {
  id: string;
  secretArn: string;
  connection: Connection;
}

export const DEFAULTS = {
  // 04:00: no time zone's daylight-saving change skips or repeats it (tests check every
  // zone); 02:00 and 03:00 do in Europe, North America and Oceania.
  schedule: "cron(0 4 * * ? *)",
  timeZone: "UTC",
  retention: { daily: 7, weekly: 4, monthly: 12 },
  task: { cpu: 1024, memoryMiB: 2048, ephemeralGiB: 21 },
  // Proof for every database every day: the newest backup verified each morning, an hour
  // after the nightly backup, and a database whose newest success is two days old counts
  // as unverified. RDS's own extensions are on no verifier; where a database has one,
  // its config names it in skipExtensions.
  verify: {
    schedule: "cron(0 5 * * ? *)",
    deep: false,
    maxAgeDays: 2,
    skipExtensions: [] as string[],
    storage: "auto" as "auto" | "ebs",
  },
} as const;

/**
 * Reads and checks a config file. Every problem is collected and reported at once, one
 * line each, naming the field (`databases[1].timeZone: …`), so one `cdk synth` shows all
 * there is to fix. `purpose: "deploy"` refuses the `sim` section: its secret values are
 * for the local simulation only and must never reach a real account's template.
 */
export function loadConfig(file: string, purpose: "deploy" | "sim" = "deploy"): StrongroomConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = fileProblem(err);
    throw new InvalidConfigError(`cannot read ${file}: ${code}`, {
      cause: err,
      hint: "copy strongroom.config.example.json to strongroom.config.json, or pass -c config=FILE",
      problems: [`${shownPath(file)}: cannot be read (${code})`],
    });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new InvalidConfigError(`${file} is not JSON: ${(err as Error).message}`, {
      cause: err,
      problems: [`${shownPath(file)}: not JSON: ${(err as Error).message}`],
    });
  }
  return parseConfig(raw, file, purpose);
}

const ajv = new Ajv({ allErrors: true, strict: true });
const validate = ajv.compile(configSchema);

/**
 * Checks a parsed config against the schema, then everything a schema cannot say. The
 * later checks read only values the schema passed (`passed`), so a file with both kinds
 * of problem has all of them reported in one run: the schema's first, then the others.
 */
export function parseConfig(raw: unknown, file: string, purpose: "deploy" | "sim" = "deploy"): StrongroomConfig {
  const schemaErrors = validate(raw) ? [] : (validate.errors ?? []);
  const found = describeSchemaErrors(schemaErrors);
  if (!isObject(raw)) throw problems(file, found);
  const passed = passedBySchema(schemaErrors);
  const config = raw as unknown as ConfigFile;
  const check = (field: string, fn: () => void) => {
    try {
      fn();
    } catch (err) {
      found.push(`${field}: ${(err as Error).message}`);
    }
  };

  if (passed("/recipients")) {
    config.recipients.forEach((r, i) => {
      check(`recipients[${i}]`, () => assertX25519Recipient(r));
    });
    if (new Set(config.recipients).size !== config.recipients.length) found.push("recipients: a key is listed twice");
  }
  if (purpose === "deploy" && config.sim !== undefined) {
    found.push("sim: holds secret values for `npm run sim` only; remove it from a config you deploy");
  }
  const d: Overridable = isObject(config.defaults) ? config.defaults : {};
  checkOverridable("defaults", d, passed, found);
  if (passed("/network") && !("create" in config.network)) found.push(...existingNetworkProblems(config.network));

  // Warnings only matter for a config without problems, and read values as the schema passed them.
  const warnings: string[] = schemaErrors.length === 0 ? networkWarnings(config.network) : [];
  const now = new Date();
  const databases = (Array.isArray(config.databases) ? config.databases : []).flatMap((db, i): DatabaseConfig[] => {
    if (!isObject(db)) return [];
    const field = `databases[${i}]`;
    const both = (name: string) => passed(`/defaults/${name}`) && passed(`/databases/${i}/${name}`);
    checkOverridable(field, db, passed, found);
    const retention = { ...DEFAULTS.retention, ...d.retention, ...db.retention };
    const timeZone = db.timeZone ?? d.timeZone ?? DEFAULTS.timeZone;
    if (both("retention")) {
      check(`${field}.retention`, () => {
        if (retention.daily + retention.weekly + retention.monthly === 0) throw new Error("keeps nothing (0/0/0)");
        validatePolicy({ ...retention, timeZone: "UTC" });
      });
    }
    const task = { ...DEFAULTS.task, ...d.task, ...db.task };
    if (both("task")) check(`${field}.task`, () => checkFargateSize(task));
    const schedule = db.schedule ?? d.schedule ?? DEFAULTS.schedule;
    const verify = { ...DEFAULTS.verify, ...d.verify, ...db.verify };
    // EventBridge Scheduler skips a local time that does not exist and runs a repeated one once.
    // (An unknown zone is reported as a problem above, not here.)
    if (schemaErrors.length === 0 && isTimeZone(timeZone)) {
      for (const p of dstProblems(schedule, timeZone, now)) warnings.push(`${field}.schedule: ${p}`);
      for (const p of dstProblems(verify.schedule, timeZone, now)) warnings.push(`${field}.verify.schedule: ${p}`);
    }
    const connection = connectionOf(field, `/databases/${i}`, db, passed, found, warnings);
    if (db.restoreSecretArn === undefined) {
      warnings.push(
        `${field}.restoreSecretArn: not set, so restores connect with the backup secret; its role must be able to CREATE DATABASE, which a least-privilege backup role cannot`,
      );
    }
    const walArchiving = db.walArchiving === true;
    const walSigners = passed(`/databases/${i}/walSigners`) ? db.walSigners : undefined;
    if (walArchiving && walSigners === undefined && passed(`/databases/${i}/walSigners`)) {
      found.push(
        `${field}.walSigners: required with walArchiving: the database host's public signer (srsigner1…, what \`strongroom keygen --signing\` printed where the host's key was made), so that readiness counts only the WAL and base backups the host signed`,
      );
    }
    if (!walArchiving && (db.walSigners !== undefined || db.maxWalAgeMinutes !== undefined)) {
      found.push(`${field}: walSigners and maxWalAgeMinutes belong to a database with "walArchiving": true`);
    }
    const mode: BackupMode = db.mode ?? "logical";
    if (mode !== "logical" && !walArchiving) {
      found.push(
        `${field}.mode: "${mode}" takes base backups, which need "walArchiving": true (and walSigners): the server must archive its WAL here`,
      );
    }
    walSigners?.forEach((s, j) => {
      check(`${field}.walSigners[${j}]`, () => parseSigner(s));
    });
    return [
      {
        id: db.id,
        secretArn: db.secretArn,
        restoreSecretArn: db.restoreSecretArn ?? db.secretArn,
        walArchiving,
        mode,
        ...(walArchiving && walSigners
          ? {
              wal: {
                signers: walSigners,
                ...(db.maxWalAgeMinutes !== undefined ? { maxAgeMinutes: db.maxWalAgeMinutes } : {}),
              },
            }
          : {}),
        connection,
        schedule,
        timeZone,
        retention,
        task,
        verify,
      },
    ];
  });
  duplicates(idsAt("/databases", config.databases, passed), "databases", found);
  const targets = Array.isArray(config.restoreTargets) ? config.restoreTargets : [];
  const restoreTargets = targets.flatMap((t, i): RestoreTargetConfig[] =>
    isObject(t)
      ? [
          {
            id: t.id,
            secretArn: t.secretArn,
            connection: connectionOf(`restoreTargets[${i}]`, `/restoreTargets/${i}`, t, passed, found, warnings),
          },
        ]
      : [],
  );
  duplicates(idsAt("/restoreTargets", config.restoreTargets, passed), "restoreTargets", found);
  if (found.length > 0) throw problems(file, found);
  const { defaults: _defaults, ...rest } = config;
  return { ...rest, prefix: config.prefix ?? "", databases, restoreTargets, warnings };
}

/**
 * Whether the schema passed the value at a JSON pointer: nothing failed at it, inside it,
 * or in a value that holds it. A missing required property and an unknown one fail at
 * that property, not at the object around it, so they keep no sibling from being checked.
 */
function passedBySchema(errors: ErrorObject[]): (pointer: string) => boolean {
  const pointerKey = (key: string) => key.replaceAll("~", "~0").replaceAll("/", "~1");
  const failed = errors.map((e) => {
    const params = e.params as { missingProperty?: string; additionalProperty?: string };
    if (e.keyword === "required") return `${e.instancePath}/${pointerKey(params.missingProperty ?? "")}`;
    if (e.keyword === "additionalProperties") return `${e.instancePath}/${pointerKey(params.additionalProperty ?? "")}`;
    return e.instancePath;
  });
  const within = (inner: string, outer: string) => inner === outer || inner.startsWith(`${outer}/`);
  return (pointer) => !failed.some((f) => within(f, pointer) || within(pointer, f));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Each item's id where the schema passed it, else undefined (its index kept, for the field name). */
function idsAt(pointer: string, items: unknown, passed: (pointer: string) => boolean): Array<string | undefined> {
  if (!Array.isArray(items)) return [];
  return items.map((item, i) => (passed(`${pointer}/${i}/id`) ? (item as { id: string }).id : undefined));
}

const DEFAULT_PORT = 5432;

/**
 * Host, port and database name, each from exactly one place. ECS refuses to start a
 * task whose secret lacks a key the definition names, so a key is taken from the secret
 * only where the config says the secret holds it (`secretHas`); a value missing from
 * both is a config error here, at synth, not a task that never starts.
 */
function connectionOf(
  field: string,
  pointer: string,
  c: ConnectionFields,
  passed: (pointer: string) => boolean,
  found: string[],
  warnings: string[],
): Connection {
  // Checked only when the schema passed every field read here; else its problems are reported.
  const checkable = ["tls", ...CONNECTION_KEYS, "secretHas"].every((name) => passed(`${pointer}/${name}`));
  const fromSecret = checkable ? (c.secretHas ?? []) : [];
  const tls = c.tls ?? DEFAULT_DATABASE_TLS;
  const warning = checkable ? databaseTlsWarning(`${field}.tls`, tls) : undefined;
  if (warning) warnings.push(warning);
  for (const key of checkable ? CONNECTION_KEYS : []) {
    const inConfig = c[key] !== undefined;
    const inSecret = fromSecret.includes(key);
    if (inConfig && inSecret) {
      found.push(`${field}.${key}: given here and listed in secretHas; take it from one place`);
    } else if (!inConfig && !inSecret && key !== "port") {
      found.push(
        `${field}.${key}: required (an RDS-managed secret holds only username and password); or add "${key}" to secretHas if the secret holds it`,
      );
    }
  }
  return {
    tls,
    ...(c.host !== undefined ? { host: c.host } : {}),
    ...(c.port !== undefined || !fromSecret.includes("port") ? { port: c.port ?? DEFAULT_PORT } : {}),
    ...(c.dbname !== undefined ? { dbname: c.dbname } : {}),
    fromSecret,
  };
}

/** The checks of a database's settings (or the defaults) the schema passed; `field` as in `databases[1]`. */
function checkOverridable(field: string, o: Overridable, passed: (pointer: string) => boolean, found: string[]): void {
  const pointer = `/${field.replace(/\[(\d+)\]/g, "/$1")}`;
  if (o.schedule !== undefined && passed(`${pointer}/schedule`)) {
    const problem = scheduleProblem(o.schedule);
    if (problem) found.push(`${field}.schedule: ${problem}`);
  }
  if (o.verify?.schedule !== undefined && passed(`${pointer}/verify/schedule`)) {
    const problem = scheduleProblem(o.verify.schedule);
    if (problem) found.push(`${field}.verify.schedule: ${problem}`);
  }
  if (o.verify?.image !== undefined && passed(`${pointer}/verify/image`)) {
    const problem = ecrImageProblem(o.verify.image);
    if (problem) found.push(`${field}.verify.image: ${problem}`);
  }
  if (o.timeZone !== undefined && passed(`${pointer}/timeZone`) && !isTimeZone(o.timeZone)) {
    found.push(
      `${field}.timeZone: unknown time zone ${JSON.stringify(o.timeZone)} (use an IANA name, e.g. Europe/Berlin)`,
    );
  }
}

/** Each id given again, by its index; an undefined id (one the schema failed) is skipped. */
function duplicates(ids: Array<string | undefined>, field: string, found: string[]): void {
  const seen = new Set<string>();
  ids.forEach((id, i) => {
    if (id === undefined) return;
    if (seen.has(id)) found.push(`${field}[${i}].id: duplicate id ${JSON.stringify(id)}`);
    seen.add(id);
  });
}

export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/**
 * What is wrong with an EventBridge Scheduler expression, or undefined: `rate(N unit)`,
 * `cron(min hour day-of-month month day-of-week year)` with `?` in one of the two day
 * fields, or a one-time `at(yyyy-mm-ddThh:mm:ss)`.
 */
export function scheduleProblem(expression: string): string | undefined {
  const rate = /^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$/.exec(expression);
  if (rate) {
    const n = Number(rate[1]);
    if (n < 1) return "a rate must be at least 1";
    if ((n === 1) !== !rate[2]?.endsWith("s"))
      return `write rate(${n} ${n === 1 ? "unit" : "units"}): "1 day", "2 days"`;
    return undefined;
  }
  if (/^at\(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\)$/.test(expression)) return undefined;
  const cron = /^cron\((.*)\)$/.exec(expression);
  if (!cron) return `${JSON.stringify(expression)} is not rate(…), cron(…) or at(…)`;
  const fields = (cron[1] ?? "").trim().split(/\s+/);
  if (fields.length !== 6) {
    return `cron(…) takes 6 fields (minutes hours day-of-month month day-of-week year), got ${fields.length}`;
  }
  const [dom, , dow] = fields.slice(2);
  if ((dom === "?") === (dow === "?")) return "cron(…) needs ? in exactly one of day-of-month and day-of-week";
  if (!fields.every((f) => /^[0-9A-Za-z*?,/#L W-]+$/.test(f))) return "cron(…) has a character it does not allow";
  return undefined;
}

/**
 * Fargate's CPU/memory pairs (MiB), as AWS's task size table lists them: 0.25 vCPU takes
 * exactly 512, 1024 or 2048 (1536 is not one), the others a range in steps.
 */
const FARGATE_MEMORY: Record<number, { min: number; max: number; step: number } | number[]> = {
  256: [512, 1024, 2048],
  512: { min: 1024, max: 4096, step: 1024 },
  1024: { min: 2048, max: 8192, step: 1024 },
  2048: { min: 4096, max: 16384, step: 1024 },
  4096: { min: 8192, max: 30720, step: 1024 },
  8192: { min: 16384, max: 61440, step: 4096 },
  16384: { min: 32768, max: 122880, step: 8192 },
};

/** The memory sizes Fargate accepts with `cpu`, in MiB (empty for a CPU it does not offer). */
export function fargateMemoryOptions(cpu: number): number[] {
  const sizes = FARGATE_MEMORY[cpu];
  if (sizes === undefined) return [];
  if (Array.isArray(sizes)) return sizes;
  const out: number[] = [];
  for (let m = sizes.min; m <= sizes.max; m += sizes.step) out.push(m);
  return out;
}

function checkFargateSize(task: TaskSize): void {
  const options = fargateMemoryOptions(task.cpu);
  if (options.length === 0) throw new Error(`cpu ${task.cpu} is not a Fargate size`);
  if (!options.includes(task.memoryMiB)) {
    const shown =
      options.length > 4
        ? `${options[0]}–${options.at(-1)} MiB in steps of ${(options[1] as number) - (options[0] as number)}`
        : `${options.join(", ")} MiB`;
    throw new Error(`memoryMiB ${task.memoryMiB} does not go with cpu ${task.cpu} on Fargate (${shown})`);
  }
}

/** ajv's errors as `field: problem` lines; the branches of a failed oneOf collapse into one line. */
function describeSchemaErrors(errors: ErrorObject[]): string[] {
  const oneOfPaths = errors.filter((e) => e.keyword === "oneOf").map((e) => e.instancePath);
  const lines = errors
    .filter(
      (e) => e.keyword === "oneOf" || !oneOfPaths.some((p) => e.instancePath.startsWith(p) && e.instancePath !== ""),
    )
    .filter((e) => e.keyword !== "anyOf")
    .map((e) => {
      const field = fieldName(e.instancePath);
      if (e.keyword === "additionalProperties") {
        const extra = (e.params as { additionalProperty: string }).additionalProperty;
        return `${field ? `${field}.` : ""}${extra}: unknown field`;
      }
      if (e.keyword === "required") {
        const missing = (e.params as { missingProperty: string }).missingProperty;
        return `${field ? `${field}.` : ""}${missing}: required`;
      }
      if (e.keyword === "oneOf")
        return `${field}: ${ONE_OF_SHAPES[field.replace(/\[\d+\]/g, "")] ?? "has the wrong shape"}`;
      if (e.keyword === "pattern") return `${field}: ${PATTERN_HINTS[lastName(field)] ?? "has the wrong form"}`;
      return `${field || "config"}: ${e.message}`;
    });
  return [...new Set(lines)];
}

const ONE_OF_SHAPES: Record<string, string> = {
  bucket: 'must be {"create": true, "objectLock"?: {"mode", "days"}} or {"name": "existing-bucket"}',
  network:
    'must be {"vpcId": "vpc-…", "subnetIds": ["subnet-…"], "securityGroupIds"?: ["sg-…"], "assignPublicIp"?, "createEndpoints"?, "routeTableIds"?: ["rtb-…"], "endpointSubnetIds"?: ["subnet-…"]}, or {"create": true} for a trial (see docs/network.md)',
};

const PATTERN_HINTS: Record<string, string> = {
  name: "lower-case letters, digits and -, starting with a letter, at most 24 characters",
  id: "letters, digits, ., _ and -, starting with a letter or digit",
  secretArn:
    "must be the full ARN of a Secrets Manager secret, with the 6-character suffix (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf)",
  identitySecretArn:
    "must be the full ARN of a Secrets Manager secret, with the 6-character suffix (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf)",
  prefix: "path segments of letters, digits, ., _ and -, separated by /, with no leading or trailing /",
  alarmEmail: "must be an email address",
  kmsKeyArns: "must be the ARN of a KMS key (arn:aws:kms:REGION:ACCOUNT:key/UUID), not an alias",
  ebsKmsKeyArn: "must be the ARN of a KMS key (arn:aws:kms:REGION:ACCOUNT:key/UUID), not an alias",
};

function fieldName(instancePath: string): string {
  return instancePath
    .split("/")
    .slice(1)
    .map((part) => (/^\d+$/.test(part) ? `[${part}]` : `.${part}`))
    .join("")
    .replace(/^\./, "");
}

function lastName(field: string): string {
  return (
    field
      .replace(/\[\d+\]$/, "")
      .split(".")
      .pop() ?? field
  );
}

function problems(file: string, lines: string[]): InvalidConfigError {
  return new InvalidConfigError(
    `${file} has ${lines.length} problem${lines.length === 1 ? "" : "s"}:\n${lines.join("\n")}`,
    {
      hint: "see strongroom.config.example.json and the README's Deploy section",
      problems: lines.map((line) => `${shownPath(file)}: ${line}`),
    },
  );
}
