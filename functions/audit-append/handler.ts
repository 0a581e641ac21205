import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type { JSONSchemaType } from "ajv";
import { AUDIT_EVENTS, type AuditEntry } from "#core/audit/audit-chain.ts";
import { appendAudit } from "#core/audit/audit-log.ts";
import { DynamoAuditLog } from "#core/audit/dynamo-audit-log.ts";
import { clientConfigFromEnv } from "#core/aws-env.ts";
import { type CaughtError, describeFailure } from "#core/flows/task-failure.ts";
import { optional } from "#core/json-schema.ts";
import { BACKUP_ID_PATTERN, DATABASE_ID_PATTERN } from "#core/keys.ts";
import { lambda } from "../common/lambda.ts";

/** Appends one row to an audit chain: backup.start and friends from the state machines. */
export interface AuditAppendInput extends Omit<AuditEntry, "at"> {
  scope?: string;
  at?: string;
  /** A flow's caught error ({Error, Cause}); summarised into details (error, exit code). */
  failure?: CaughtError;
}

export const schema: JSONSchemaType<AuditAppendInput> = {
  type: "object",
  additionalProperties: false,
  required: ["event", "actor"],
  properties: {
    scope: optional({ type: "string", pattern: "^(org|db#[A-Za-z0-9._-]{1,128})$" }),
    event: { type: "string", enum: [...AUDIT_EVENTS] },
    actor: { type: "string", minLength: 1, maxLength: 256 },
    databaseId: optional({ type: "string", pattern: DATABASE_ID_PATTERN }),
    backupId: optional({ type: "string", pattern: BACKUP_ID_PATTERN }),
    details: optional({ type: "object" }),
    at: optional({ type: "string", format: "date-time" }),
    failure: optional({
      type: "object",
      required: ["Error"],
      properties: { Error: { type: "string" }, Cause: optional({ type: "string" }) },
    }),
  },
};

export interface Deps {
  dynamodb: DynamoDBClient;
  tableName: string;
  now: () => Date;
}

export const createHandler = (deps: Deps) =>
  lambda<AuditAppendInput, { seq: string; hash: string }>(schema, async ({ scope, at, failure, ...entry }) => {
    const log = new DynamoAuditLog(
      deps.dynamodb,
      deps.tableName,
      scope ?? (entry.databaseId ? `db#${entry.databaseId}` : "org"),
    );
    const details = failure ? { ...entry.details, ...describeFailure(failure) } : entry.details;
    const row = await appendAudit(log, {
      ...entry,
      ...(details ? { details } : {}),
      at: at ?? deps.now().toISOString(),
    });
    return { seq: row.seq, hash: row.hash };
  });

/** What the deployed function is given, from its environment (npm run sim passes the template's). */
export const depsFromEnv = (env: NodeJS.ProcessEnv = process.env): Deps => ({
  dynamodb: new DynamoDBClient(clientConfigFromEnv(env, "DYNAMODB")),
  tableName: env.AUDIT_TABLE ?? "",
  now: () => new Date(),
});

export const handler = createHandler(depsFromEnv());
