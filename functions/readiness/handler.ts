import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { S3Client } from "@aws-sdk/client-s3";
import type { JSONSchemaType } from "ajv";
import { DynamoAuditLog } from "#core/audit/dynamo-audit-log.ts";
import { clientConfigFromEnv } from "#core/aws-env.ts";
import { type FlowSettings, settingsFromEnv } from "#core/flows/flow-settings.ts";
import {
  DATABASE_DIMENSION,
  METRICS_NAMESPACE,
  METRICS_SERVICE,
  NEWEST_BACKUP_AGE_HOURS,
  READY,
  VERIFIED_AGE_HOURS,
} from "#core/flows/metrics.ts";
import { type DatabaseStatus, DEFAULT_LIMITS, readStatus } from "#core/status.ts";
import { S3Store, s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import { lambda } from "../common/lambda.ts";

/**
 * The deployed `strongroom status`, run hourly by a schedule: for every configured
 * database, the age of its newest backup and of its newest successful verification, and
 * whether it is ready, as metrics. A database never verified emits no VerifiedAgeHours,
 * and its alarm treats the missing data as breaching: "not verified" is the truth.
 */
export const schema: JSONSchemaType<Record<string, never>> = {
  type: "object",
  additionalProperties: false,
  // Empty, and a no-op: ajv's typings ask a map's schema to say which keys it requires.
  required: [],
  properties: {},
};

export interface Deps {
  s3: S3Client;
  dynamodb: DynamoDBClient;
  /** The audit log: only committed backups and audited verifications count (core/ledger.ts). */
  auditTable: string;
  storeUrl: string;
  settings: FlowSettings;
  now: () => Date;
  metrics?: Metrics;
}

export const createHandler = (deps: Deps) =>
  lambda<Record<string, never>, Array<Pick<DatabaseStatus, "databaseId" | "ready" | "problems">>>(schema, async () => {
    const store = new S3Store(deps.storeUrl, { client: deps.s3 });
    const out: Array<Pick<DatabaseStatus, "databaseId" | "ready" | "problems">> = [];
    for (const db of await deps.settings.databases()) {
      const limits = { ...DEFAULT_LIMITS, maxVerifyAgeMs: db.verify.maxAgeDays * 86_400_000 };
      const audit = (databaseId: string) => new DynamoAuditLog(deps.dynamodb, deps.auditTable, `db#${databaseId}`);
      const [status] = await readStatus(store, { databaseId: db.id, now: deps.now(), limits, audit });
      if (!status) continue;
      out.push({ databaseId: status.databaseId, ready: status.ready, problems: status.problems });
      if (!deps.metrics) continue;
      deps.metrics.addDimension(DATABASE_DIMENSION, db.id);
      if (status.newestBackup) {
        deps.metrics.addMetric(NEWEST_BACKUP_AGE_HOURS, MetricUnit.NoUnit, status.newestBackup.ageHours);
      }
      if (status.newestVerified) {
        deps.metrics.addMetric(VERIFIED_AGE_HOURS, MetricUnit.NoUnit, status.newestVerified.ageHours);
      }
      deps.metrics.addMetric(READY, MetricUnit.NoUnit, status.ready ? 1 : 0);
      deps.metrics.publishStoredMetrics();
    }
    return out;
  });

/** What the deployed function is given, from its environment (npm run sim passes the template's). */
export const depsFromEnv = (env: NodeJS.ProcessEnv = process.env): Deps => ({
  metrics: new Metrics({
    namespace: env.POWERTOOLS_METRICS_NAMESPACE ?? METRICS_NAMESPACE,
    serviceName: METRICS_SERVICE,
  }),
  s3: new S3Client(s3ClientConfigFromEnv(env)),
  dynamodb: new DynamoDBClient(clientConfigFromEnv(env, "DYNAMODB")),
  auditTable: env.AUDIT_TABLE ?? "",
  storeUrl: env.STORE_URL ?? "",
  settings: settingsFromEnv(env),
  now: () => new Date(),
});

export const handler = createHandler(depsFromEnv());
