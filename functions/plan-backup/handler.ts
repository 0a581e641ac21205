import type { JSONSchemaType } from "ajv";
import { type FlowSettings, settingsFromEnv } from "#core/flows/flow-settings.ts";
import { type BackupKind, type BackupPlan, planBackup } from "#core/flows/plan.ts";
import { optional } from "#core/json-schema.ts";
import { lambda } from "../common/lambda.ts";

/** BackupFlow's first state: which task definition, which backup id, which retention. */
export interface PlanBackupInput {
  databaseId: string;
  /** `logical` (default): pg_dump; `base`: a physical base backup of a walArchiving database. */
  kind?: BackupKind;
}

export const schema: JSONSchemaType<PlanBackupInput> = {
  type: "object",
  additionalProperties: false,
  required: ["databaseId"],
  properties: {
    databaseId: { type: "string", minLength: 1, maxLength: 128 },
    kind: optional({ type: "string", enum: ["logical", "base"] }),
  },
};

export interface Deps {
  settings: FlowSettings;
  now: () => Date;
}

export const createHandler = (deps: Deps) =>
  lambda<PlanBackupInput, BackupPlan>(schema, (input) => planBackup(deps.settings, input, deps.now()));

/** What the deployed function is given, from its environment (npm run sim passes the template's). */
export const depsFromEnv = (env: NodeJS.ProcessEnv = process.env): Deps => ({
  settings: settingsFromEnv(env),
  now: () => new Date(),
});

export const handler = createHandler(depsFromEnv());
