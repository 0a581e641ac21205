import { GetParameterCommand, GetParametersByPathCommand, ParameterNotFound, SSMClient } from "@aws-sdk/client-ssm";
import { Ajv, type JSONSchemaType } from "ajv";
import { clientConfigFromEnv } from "../aws-env.ts";
import { InvalidConfigError } from "../errors.ts";
import { optional } from "../json-schema.ts";
import { DATABASE_ID_PATTERN } from "../keys.ts";
import type { VerifyStorageKind } from "./verify-storage.ts";

/**
 * What the deployed flows know about the databases: which task definition runs each
 * duty for which database, each database's retention and verify settings, and the
 * other servers a restore may target. Nothing secret: secrets stay in Secrets Manager
 * and reach the tasks through their task definitions.
 *
 * Deployed, each database's settings are one SSM parameter,
 * `<SETTINGS_PATH>/databases/<id>`, written by CloudFormation from the config; each
 * restore target's is `<SETTINGS_PATH>/restore-targets/<id>`. They are not in the plan
 * functions' environment because Lambda allows 4 KB of environment in all, which about
 * eight databases' settings fill.
 */

/** The worker container's name in every task definition. */
export const WORKER_CONTAINER = "worker";

export interface DatabaseSettings {
  id: string;
  backupTaskDefinition: string;
  /** Restores into this database's own server (its restore secret). */
  restoreTaskDefinition: string;
  /** Restores into a scratch cluster inside the task and checks it (no database secret). */
  verifyTaskDefinition: string;
  /**
   * The same verify task with its scratch cluster on an EBS volume configured at launch
   * (/mnt), for what ephemeral storage cannot hold: absent in settings written before it.
   */
  verifyVolumeTaskDefinition?: string;
  retention: { daily: number; weekly: number; monthly: number; timeZone: string };
  /** skipExtensions, ephemeralGiB (the verify task definition's storage), storage: absent in settings written before them. */
  verify: {
    deep: boolean;
    maxAgeDays: number;
    skipExtensions?: string[];
    ephemeralGiB?: number;
    storage?: VerifyStorageKind;
    /** The verify task's vCPUs (task.cpu / 1024): below 4 it restores serially, staging nothing. */
    vcpus?: number;
  };
  /**
   * A database whose server archives its WAL here (docs/pitr.md): the host's public
   * signers (only WAL and base backups they signed count) and the archive-age limit
   * readiness gates on. Absent: no point-in-time recovery is watched.
   */
  wal?: { signers: string[]; maxAgeMinutes?: number };
  /** logical (absent: settings written before it), physical (base backups only), or both. */
  mode?: "logical" | "physical" | "both";
}

/** Another server a restore may target, by the secret holding its connection. */
export interface RestoreTargetSettings {
  id: string;
  secretArn: string;
  restoreTaskDefinition: string;
}

/** Where a plan reads the settings: Parameter Store deployed, memory in tests. */
export interface FlowSettings {
  /** One database's settings, or undefined when it is not configured. */
  database(id: string): Promise<DatabaseSettings | undefined>;
  /** Every configured database, in id order. */
  databases(): Promise<DatabaseSettings[]>;
  restoreTargets(): Promise<RestoreTargetSettings[]>;
}

const count = { type: "integer", minimum: 0 } as const;
const databaseSchema: JSONSchemaType<DatabaseSettings> = {
  type: "object",
  additionalProperties: false,
  required: ["id", "backupTaskDefinition", "restoreTaskDefinition", "verifyTaskDefinition", "retention", "verify"],
  properties: {
    id: { type: "string", pattern: DATABASE_ID_PATTERN },
    backupTaskDefinition: { type: "string", minLength: 1 },
    restoreTaskDefinition: { type: "string", minLength: 1 },
    verifyTaskDefinition: { type: "string", minLength: 1 },
    verifyVolumeTaskDefinition: optional({ type: "string", minLength: 1 }),
    retention: {
      type: "object",
      additionalProperties: false,
      required: ["daily", "weekly", "monthly", "timeZone"],
      properties: { daily: count, weekly: count, monthly: count, timeZone: { type: "string", minLength: 1 } },
    },
    verify: {
      type: "object",
      additionalProperties: false,
      required: ["deep", "maxAgeDays"],
      properties: {
        deep: { type: "boolean" },
        maxAgeDays: { type: "integer", minimum: 1 },
        skipExtensions: optional({ type: "array", items: { type: "string", minLength: 1 } }),
        ephemeralGiB: optional({ type: "integer", minimum: 21, maximum: 200 }),
        storage: optional({ type: "string", enum: ["auto", "ebs"] }),
        vcpus: optional({ type: "number", exclusiveMinimum: 0 }),
      },
    },
    mode: optional({ type: "string", enum: ["logical", "physical", "both"] }),
    wal: optional({
      type: "object",
      additionalProperties: false,
      required: ["signers"],
      properties: {
        signers: {
          type: "array",
          minItems: 1,
          maxItems: 16,
          items: { type: "string", pattern: "^srsigner1[A-Za-z0-9_-]{43}$" },
        },
        maxAgeMinutes: optional({ type: "integer", minimum: 1 }),
      },
    }),
  },
};
const targetSchema: JSONSchemaType<RestoreTargetSettings> = {
  type: "object",
  additionalProperties: false,
  required: ["id", "secretArn", "restoreTaskDefinition"],
  properties: {
    id: { type: "string", pattern: DATABASE_ID_PATTERN },
    secretArn: { type: "string", minLength: 1 },
    restoreTaskDefinition: { type: "string", minLength: 1 },
  },
};
const ajv = new Ajv({ allErrors: true });
const validDatabase = ajv.compile(databaseSchema);
const validTarget = ajv.compile(targetSchema);

/** Settings held in memory: the tests', and what the CDK app writes into the parameters. */
export class StaticSettings implements FlowSettings {
  private readonly dbs: DatabaseSettings[];
  private readonly targets: RestoreTargetSettings[];

  constructor(o: { databases: DatabaseSettings[]; restoreTargets?: RestoreTargetSettings[] }) {
    this.dbs = [...o.databases].sort((a, b) => compare(a.id, b.id));
    this.targets = [...(o.restoreTargets ?? [])].sort((a, b) => compare(a.id, b.id));
  }

  async database(id: string): Promise<DatabaseSettings | undefined> {
    return this.dbs.find((d) => d.id === id);
  }

  async databases(): Promise<DatabaseSettings[]> {
    return this.dbs;
  }

  async restoreTargets(): Promise<RestoreTargetSettings[]> {
    return this.targets;
  }
}

/** The parameter names under a deployment's settings path. */
export const settingsParameter = {
  database: (path: string, id: string) => `${path}/databases/${id}`,
  restoreTarget: (path: string, id: string) => `${path}/restore-targets/${id}`,
};

/**
 * Settings read from SSM Parameter Store under `path` (`/strongroom/<name>`). Every
 * value is checked against its shape: a parameter edited by hand into something else
 * is an InvalidConfigError naming it, never a plan built from half a setting.
 */
export class ParameterStoreSettings implements FlowSettings {
  private readonly ssm: SSMClient;
  private readonly path: string;

  constructor(ssm: SSMClient, path: string) {
    this.ssm = ssm;
    this.path = path;
  }

  /** Checked at use, not at construction: a handler module is imported (by tests too) before it runs. */
  private root(): string {
    if (!/^\/[A-Za-z0-9_.\-/]+$/.test(this.path) || this.path.endsWith("/")) {
      throw new InvalidConfigError(`SETTINGS_PATH ${JSON.stringify(this.path)} is not a parameter path`, {
        hint: "this handler runs only in a deployed strongroom, whose stack sets SETTINGS_PATH=/strongroom/<name>",
      });
    }
    return this.path;
  }

  async database(id: string): Promise<DatabaseSettings | undefined> {
    // An id outside the pattern cannot name a parameter (and could climb the path).
    if (!new RegExp(DATABASE_ID_PATTERN).test(id)) return undefined;
    const name = settingsParameter.database(this.root(), id);
    try {
      const got = await this.ssm.send(new GetParameterCommand({ Name: name }));
      return parse(name, got.Parameter?.Value, validDatabase);
    } catch (err) {
      if (err instanceof ParameterNotFound) return undefined;
      throw err;
    }
  }

  async databases(): Promise<DatabaseSettings[]> {
    return (await this.byPath(`${this.root()}/databases`, validDatabase)).sort((a, b) => compare(a.id, b.id));
  }

  async restoreTargets(): Promise<RestoreTargetSettings[]> {
    return (await this.byPath(`${this.root()}/restore-targets`, validTarget)).sort((a, b) => compare(a.id, b.id));
  }

  private async byPath<T>(path: string, valid: ValidateFn<T>): Promise<T[]> {
    const out: T[] = [];
    let NextToken: string | undefined;
    do {
      const page = await this.ssm.send(new GetParametersByPathCommand({ Path: path, NextToken, MaxResults: 10 }));
      for (const p of page.Parameters ?? []) out.push(parse(p.Name ?? path, p.Value, valid));
      NextToken = page.NextToken;
    } while (NextToken);
    return out;
  }
}

type ValidateFn<T> = ((value: unknown) => value is T) & {
  errors?: Array<{ instancePath: string; message?: string }> | null;
};

function parse<T>(name: string, text: string | undefined, valid: ValidateFn<T>): T {
  let value: unknown;
  try {
    value = JSON.parse(text ?? "");
  } catch {
    throw new InvalidConfigError(`parameter ${name} is not JSON`, { hint: "deploy the stack again to rewrite it" });
  }
  if (!valid(value)) {
    const why = (valid.errors ?? []).map((e) => `${e.instancePath || "value"} ${e.message ?? ""}`).join("; ");
    throw new InvalidConfigError(`parameter ${name} is not a strongroom setting: ${why}`, {
      hint: "deploy the stack again to rewrite it",
    });
  }
  return value;
}

/**
 * The deployed settings, from the function's environment. SSM allows about 40
 * GetParameter calls a second by default, and every database's schedule may fire in the
 * same minute: the client backs off adaptively rather than failing a plan.
 */
export function settingsFromEnv(env: NodeJS.ProcessEnv): FlowSettings {
  return new ParameterStoreSettings(
    new SSMClient({ retryMode: "adaptive", maxAttempts: 10, ...clientConfigFromEnv(env, "SSM") }),
    env.SETTINGS_PATH ?? "",
  );
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
