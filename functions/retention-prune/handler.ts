import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { S3Client } from "@aws-sdk/client-s3";
import type { JSONSchemaType } from "ajv";
import { DynamoAuditLog } from "#core/audit/dynamo-audit-log.ts";
import { clientConfigFromEnv } from "#core/aws-env.ts";
import { PruneHaltedError } from "#core/errors.ts";
import { collectGarbage, orphanRow } from "#core/gc.ts";
import { DEFAULT_POLICY, type RetentionPolicy, validatePolicy } from "#core/gfs.ts";
import { optional } from "#core/json-schema.ts";
import { DATABASE_ID_PATTERN } from "#core/keys.ts";
import {
  type AuditedWal,
  auditedWal,
  type BasePrunePlan,
  type BasePruneResult,
  type BaseRetirementRow,
  baseRetirementRows,
  planBasePrune,
  removeRetiredBases,
} from "#core/pitr/base-prune.ts";
import { baseRowsIn } from "#core/pitr/bases.ts";
import { planPrune, type RetirementRow, removeRetired, retirementRows } from "#core/prune.ts";
import { S3Store, s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import { lambda } from "../common/lambda.ts";

/**
 * GFS pruning of one database, in two steps around the flow's audit-append, the only
 * writer of the audit table (this function may only read it):
 * - `plan`: what retention keeps, and the `retain.delete` row of each backup it expires;
 *   with `bases` (a walArchiving database: its host's signers), also of each base backup
 *   it expires and one for the WAL below the oldest kept base (core/pitr/base-prune.ts).
 *   Nothing is written.
 * - `delete`: deletes every backup and base the audit log has retired (core/prune.ts
 *   `removeRetired`, core/pitr/base-prune.ts `removeRetiredBases`), so exactly what was
 *   audited; the WAL of the plan's audited range that a fresh plan still expires; then
 *   the database's payloads without a manifest, returning their `gc.delete` rows. Stale
 *   multipart uploads are the bucket's lifecycle rule's to abort.
 *
 * A base manifest that does not count (a store writer's, another key's, one that cannot
 * be read) halts the base and WAL pruning only: the plan says so in `basesHalted`, the
 * logical pruning goes on, and the delete step, given it, fails with PruneHaltedError once
 * what the log retired is deleted (before gc, whose rows would be lost), so the flow
 * records it and alarms.
 */
export interface RetentionPruneInput {
  databaseId: string;
  step: "plan" | "delete";
  policy?: Partial<RetentionPolicy>;
  /** The host's signers, from the plan (null: the database archives no WAL). */
  bases?: { signers: string[] } | null;
  /** delete: the WAL range the plan's `retain.delete` row of kind "wal" named (null: none). */
  wal?: AuditedWal | null;
  /** delete: why the plan halted the bases and WAL (null: it did not). The step then fails, after the rest. */
  basesHalted?: string | null;
}

export type RetentionPruneOutput =
  | {
      step: "plan";
      kept: string[];
      backupsFailing: boolean;
      retire: Array<RetirementRow | BaseRetirementRow>;
      wal: AuditedWal | null;
      basesHalted: string | null;
    }
  | {
      step: "delete";
      deleted: string[];
      bases: BasePruneResult | null;
      garbage: ReturnType<typeof orphanRow>[];
    };

const WAL_NAME = "^[0-9A-F]{24}(\\.partial|\\.[0-9A-F]{8}\\.backup)?$";
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
    bases: {
      type: "object",
      nullable: true,
      additionalProperties: false,
      required: ["signers"],
      properties: { signers: { type: "array", minItems: 1, maxItems: 16, items: { type: "string", minLength: 1 } } },
    },
    basesHalted: { type: "string", nullable: true, maxLength: 4000 },
    wal: {
      type: "object",
      nullable: true,
      additionalProperties: false,
      required: ["first", "last", "keptFrom"],
      properties: {
        first: { type: "string", pattern: WAL_NAME },
        last: { type: "string", pattern: WAL_NAME },
        keptFrom: { type: "string", pattern: WAL_NAME },
      },
    },
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
    const policy: RetentionPolicy = { ...DEFAULT_POLICY, ...input.policy };
    validatePolicy(policy);
    const signers = input.bases ? new Set(input.bases.signers) : undefined;
    if (input.step === "plan") {
      const plan = await planPrune(store, input.databaseId, policy, deps.now(), audit);
      let bases: BasePrunePlan | undefined;
      let basesHalted: string | null = null;
      if (signers) {
        try {
          const rows = await baseRowsIn(audit, input.databaseId);
          bases = await planBasePrune(store, input.databaseId, signers, policy, deps.now(), rows);
        } catch (err) {
          // A manifest that does not count (or cannot be read) must not stop the logical
          // pruning, which it cannot steer; the delete step fails with it once that is done.
          if (!(err instanceof PruneHaltedError)) throw err;
          basesHalted = err.message.slice(0, 2000);
        }
      }
      return {
        step: "plan",
        kept: plan.keep.map((k) => k.backup.backupId),
        backupsFailing: plan.backupsFailing,
        retire: [...retirementRows(plan), ...(bases ? baseRetirementRows(bases) : [])],
        wal: (bases && auditedWal(bases)) ?? null,
        basesHalted,
      };
    }
    const { deleted } = await removeRetired(store, input.databaseId, audit, deps.now());
    const bases = signers
      ? await removeRetiredBases({
          store,
          databaseId: input.databaseId,
          signers,
          policy,
          audit,
          now: deps.now(),
          wal: input.wal ?? undefined,
        })
      : undefined;
    // Failing is how the flow records a halted base pruning (backup.fail, the alarm topic).
    // Before gc, whose deletions' rows only the next state would append: the garbage waits
    // until the manifest that halted it is dealt with.
    if (bases?.halted) throw bases.halted;
    // The plan's halt, even if this step's fresh plan did not meet it (a manifest gone since):
    // a run that pruned no base or WAL says so.
    if (signers && input.basesHalted) throw new PruneHaltedError(input.basesHalted);
    const garbage = await collectGarbage(store, {
      databaseId: input.databaseId,
      now: deps.now,
      audit: () => undefined,
      actor: "retention-prune",
      dryRun: false,
      partials: false,
    });
    return {
      step: "delete",
      deleted: deleted.map((d) => d.backupId),
      bases: bases ? { bases: bases.bases, wal: bases.wal } : null,
      garbage: garbage.orphans.map(orphanRow),
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
