import type { JSONSchemaType } from "ajv";
import { type FlowSettings, settingsFromEnv } from "#core/flows/flow-settings.ts";
import { planVerify, type VerifyKind, type VerifyPlan } from "#core/flows/plan.ts";
import { optional } from "#core/json-schema.ts";
import { BACKUP_ID_PATTERN, DATABASE_ID_PATTERN } from "#core/keys.ts";
import { committedIn, type LedgerDeps, ledgerDepsFromEnv, signedBaseIn } from "../common/deps.ts";
import { lambda } from "../common/lambda.ts";

/** VerifyFlow's first state: which backup (latest resolved), which task definition, which argv, and the storage its run gets. */
export interface PlanVerifyInput {
  databaseId: string;
  /** A backup id, or `latest`: the newest committed backup (with kind pitr: the newest base backup its host signed). */
  backupId?: string;
  /** `restore` (default): restore a logical backup; `pitr`: recover a base backup and its WAL to a point (walArchiving). */
  kind?: VerifyKind;
}

export const schema: JSONSchemaType<PlanVerifyInput> = {
  type: "object",
  additionalProperties: false,
  required: ["databaseId"],
  properties: {
    databaseId: { type: "string", pattern: DATABASE_ID_PATTERN },
    backupId: optional({ type: "string", anyOf: [{ const: "latest" }, { pattern: BACKUP_ID_PATTERN }] }),
    kind: optional({ type: "string", enum: ["restore", "pitr"] }),
  },
};

export interface Deps extends LedgerDeps {
  settings: FlowSettings;
}

export const createHandler = (deps: Deps) =>
  lambda<PlanVerifyInput, VerifyPlan>(schema, async (input) =>
    planVerify(deps.settings, input, committedIn(deps), signedBaseIn(deps)),
  );

/** What the deployed function is given, from its environment (npm run sim passes the template's). */
export const depsFromEnv = (env: NodeJS.ProcessEnv = process.env): Deps => ({
  ...ledgerDepsFromEnv(env),
  settings: settingsFromEnv(env),
});

export const handler = createHandler(depsFromEnv());
