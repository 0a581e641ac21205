import { S3Client } from "@aws-sdk/client-s3";
import { type FlowSettings, parseFlowSettings } from "#core/flows/flow-settings.ts";
import { planVerify, type TaskPlan } from "#core/flows/plan.ts";
import { BACKUP_ID_PATTERN, DATABASE_ID_PATTERN } from "#core/keys.ts";
import { s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import { latestIn } from "../common/deps.ts";
import { lambda } from "../common/lambda.ts";

/** VerifyFlow's first state: which backup (latest resolved), which task definition, which argv. */
export const schema = {
  type: "object",
  additionalProperties: false,
  required: ["databaseId"],
  properties: {
    databaseId: { type: "string", pattern: DATABASE_ID_PATTERN },
    backupId: { type: "string", anyOf: [{ const: "latest" }, { pattern: BACKUP_ID_PATTERN }] },
  },
};

export interface Deps {
  s3: S3Client;
  storeUrl: string;
  settings: () => FlowSettings;
}

export const createHandler = (deps: Deps) =>
  lambda<{ databaseId: string; backupId?: string }, TaskPlan>(schema, async (input) =>
    planVerify(deps.settings(), input, latestIn(deps.s3, deps.storeUrl)),
  );

/** What the deployed function is given, from its environment (npm run sim passes the template's). */
export const depsFromEnv = (env: NodeJS.ProcessEnv = process.env): Deps => ({
  s3: new S3Client(s3ClientConfigFromEnv(env)),
  storeUrl: env.STORE_URL ?? "",
  settings: () => parseFlowSettings(env.FLOW_SETTINGS),
});

export const handler = createHandler(depsFromEnv());
