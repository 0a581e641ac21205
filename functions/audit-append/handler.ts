import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type { JSONSchemaType } from "ajv";
import { AUDIT_EVENTS, type AuditEntry } from "#core/audit/audit-chain.ts";
import { appendAudit } from "#core/audit/audit-log.ts";
import { DynamoAuditLog } from "#core/audit/dynamo-audit-log.ts";
import { clientConfigFromEnv } from "#core/aws-env.ts";
import { InvalidInputError } from "#core/errors.ts";
import { type CaughtError, describeFailure } from "#core/flows/task-failure.ts";
import { optional } from "#core/json-schema.ts";
import { BACKUP_ID_PATTERN, DATABASE_ID_PATTERN } from "#core/keys.ts";
import { lambda } from "../common/lambda.ts";

/**
 * Appends to an audit chain: backup.start and friends from the state machines. It is
 * the only writer of the audit table; other functions return rows for it to append.
 */
export interface AuditAppendInput extends Omit<AuditEntry, "at"> {
  scope?: string;
  at?: string;
  /** A flow's caught error ({Error, Cause}); summarised into details (error, exit code). */
  failure?: CaughtError;
  /**
   * One row per element, in order, each the input's row with this backupId and details
   * (retention-prune's `retain.delete` and `gc.delete` rows). Empty appends nothing.
   */
  rows?: Array<{ backupId?: string; details?: Record<string, unknown> }>;
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
    rows: optional({
      type: "array",
      maxItems: 1000,
      items: {
        type: "object",
        additionalProperties: false,
        properties: {
          backupId: optional({ type: "string", pattern: BACKUP_ID_PATTERN }),
          details: optional({ type: "object" }),
        },
      },
    }),
  },
};

/** The events whose rows another function hands over in bulk (retention-prune's). */
const BATCHED_EVENTS: readonly string[] = ["retain.delete", "gc.delete"];

export interface Deps {
  dynamodb: DynamoDBClient;
  tableName: string;
  now: () => Date;
}

export const createHandler = (deps: Deps) =>
  lambda<AuditAppendInput, { appended: number; seq?: string; hash?: string }>(
    schema,
    async ({ scope, at, failure, rows, ...entry }) => {
      // Many rows at once are retention's deletions, and nothing else: a row that commits
      // or verifies a backup names one backup, from its own flow state.
      if (rows !== undefined && !BATCHED_EVENTS.includes(entry.event)) {
        throw new InvalidInputError(`rows is for ${BATCHED_EVENTS.join(" and ")} only, not ${entry.event}`, {
          hint: "append one row per call, with its backupId and details",
        });
      }
      const log = new DynamoAuditLog(
        deps.dynamodb,
        deps.tableName,
        scope ?? (entry.databaseId ? `db#${entry.databaseId}` : "org"),
      );
      const details = failure ? { ...entry.details, ...describeFailure(failure) } : entry.details;
      const one = { ...entry, ...(details ? { details } : {}) };
      let last: { seq: string; hash: string } | undefined;
      for (const row of rows ?? [one]) {
        last = await appendAudit(log, { ...one, ...row, at: at ?? deps.now().toISOString() });
      }
      return { appended: rows?.length ?? 1, ...(last ? { seq: last.seq, hash: last.hash } : {}) };
    },
  );

/** What the deployed function is given, from its environment (npm run sim passes the template's). */
export const depsFromEnv = (env: NodeJS.ProcessEnv = process.env): Deps => ({
  dynamodb: new DynamoDBClient(clientConfigFromEnv(env, "DYNAMODB")),
  tableName: env.AUDIT_TABLE ?? "",
  now: () => new Date(),
});

export const handler = createHandler(depsFromEnv());
