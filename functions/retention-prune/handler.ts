import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { S3Client } from "@aws-sdk/client-s3";
import type { JSONSchemaType } from "ajv";
import { DynamoAuditLog } from "#core/audit/dynamo-audit-log.ts";
import { clientConfigFromEnv } from "#core/aws-env.ts";
import { collectGarbage, orphanRow } from "#core/gc.ts";
import { DEFAULT_POLICY, type RetentionPolicy, validatePolicy } from "#core/gfs.ts";
import { optional } from "#core/json-schema.ts";
import { DATABASE_ID_PATTERN } from "#core/keys.ts";
import { planPrune, type RetirementRow, removeRetired, retirementRows } from "#core/prune.ts";
import { S3Store, s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import { lambda } from "../common/lambda.ts";

/**
 * GFS pruning of one database, in two steps around the flow's audit-append, the only
 * writer of the audit table (this function may only read it):
 * - `plan`: what retention keeps, and the `retain.delete` row of each backup it expires.
 *   Nothing is written.
 * - `delete`: deletes every backup the audit log has retired (core/prune.ts
 *   `removeRetired`), so exactly what was audited, then the database's payloads without
 *   a manifest, returning their `gc.delete` rows. Stale multipart uploads are the
 *   bucket's lifecycle rule's to abort.
 */
export interface RetentionPruneInput {
  databaseId: string;
  step: "plan" | "delete";
  policy?: Partial<RetentionPolicy>;
}

export type RetentionPruneOutput =
  | { step: "plan"; kept: string[]; backupsFailing: boolean; retire: RetirementRow[] }
  | { step: "delete"; deleted: string[]; garbage: ReturnType<typeof orphanRow>[] };

const count = optional({ type: "integer", minimum: 0, maximum: 10000 });
export const schema: JSONSchemaType<RetentionPruneInput> = {
  type: "object",
  additionalProperties: false,
  required: ["databaseId", "step"],
  properties: {
    databaseId: { type: "string", pattern: DATABASE_ID_PATTERN },
    step: { type: "string", enum: ["plan", "delete"] },
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
  lambda<RetentionPruneInput, RetentionPruneOutput>(schema, async (input) => {
    const store = new S3Store(deps.storeUrl, { client: deps.s3 });
    const audit = new DynamoAuditLog(deps.dynamodb, deps.auditTable, `db#${input.databaseId}`);
    if (input.step === "plan") {
      const policy: RetentionPolicy = { ...DEFAULT_POLICY, ...input.policy };
      validatePolicy(policy);
      const plan = await planPrune(store, input.databaseId, policy, deps.now(), audit);
      return {
        step: "plan",
        kept: plan.keep.map((k) => k.backup.backupId),
        backupsFailing: plan.backupsFailing,
        retire: retirementRows(plan),
      };
    }
    const { deleted } = await removeRetired(store, input.databaseId, audit, deps.now());
    const garbage = await collectGarbage(store, {
      databaseId: input.databaseId,
      now: deps.now,
      audit: () => undefined,
      actor: "retention-prune",
      dryRun: false,
      partials: false,
    });
    return { step: "delete", deleted: deleted.map((d) => d.backupId), garbage: garbage.orphans.map(orphanRow) };
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
