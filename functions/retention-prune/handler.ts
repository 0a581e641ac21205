import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { S3Client } from "@aws-sdk/client-s3";
import type { JSONSchemaType } from "ajv";
import { DynamoAuditLog } from "#core/audit/dynamo-audit-log.ts";
import { clientConfigFromEnv } from "#core/aws-env.ts";
import type { RetentionPolicy } from "#core/gfs.ts";
import { optional } from "#core/json-schema.ts";
import { DATABASE_ID_PATTERN } from "#core/keys.ts";
import { pruneDatabase } from "#core/prune.ts";
import { S3Store, s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import { lambda } from "../common/lambda.ts";

/** GFS pruning of one database; one retain.delete audit row per deleted backup. */
export interface RetentionPruneInput {
  databaseId: string;
  policy?: Partial<RetentionPolicy>;
  dryRun?: boolean;
}

const count = optional({ type: "integer", minimum: 0, maximum: 10000 });
export const schema: JSONSchemaType<RetentionPruneInput> = {
  type: "object",
  additionalProperties: false,
  required: ["databaseId"],
  properties: {
    databaseId: { type: "string", pattern: DATABASE_ID_PATTERN },
    policy: optional({
      type: "object",
      additionalProperties: false,
      properties: {
        daily: count,
        weekly: count,
        monthly: count,
        timeZone: optional({ type: "string", minLength: 1 }),
      },
    }),
    dryRun: optional({ type: "boolean" }),
  },
};

export interface Deps {
  s3: S3Client;
  dynamodb: DynamoDBClient;
  storeUrl: string;
  auditTable: string;
  now: () => Date;
}

export const createHandler = (deps: Deps) =>
  lambda<
    RetentionPruneInput,
    { kept: string[]; deleted: string[]; backupsFailing: boolean; garbage: { partials: number; payloads: number } }
  >(schema, async (input) => {
    const outcome = await pruneDatabase({
      store: new S3Store(deps.storeUrl, { client: deps.s3 }),
      databaseId: input.databaseId,
      ...(input.policy ? { policy: input.policy } : {}),
      audit: (scope) => new DynamoAuditLog(deps.dynamodb, deps.auditTable, scope),
      actor: "retention-prune",
      dryRun: input.dryRun === true,
      now: deps.now,
    });
    return {
      kept: outcome.plan.keep.map((k) => k.backup.backupId),
      deleted: outcome.deleted.map((d) => d.backupId),
      backupsFailing: outcome.plan.backupsFailing,
      garbage: { partials: outcome.garbage.partials.length, payloads: outcome.garbage.orphans.length },
    };
  });

/** What the deployed function is given, from its environment (npm run sim passes the template's). */
export const depsFromEnv = (env: NodeJS.ProcessEnv = process.env): Deps => ({
  s3: new S3Client(s3ClientConfigFromEnv(env)),
  dynamodb: new DynamoDBClient(clientConfigFromEnv(env, "DYNAMODB")),
  storeUrl: env.STORE_URL ?? "",
  auditTable: env.AUDIT_TABLE ?? "",
  now: () => new Date(),
});

export const handler = createHandler(depsFromEnv());
