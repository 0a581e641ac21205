import { Metrics } from "@aws-lambda-powertools/metrics";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { S3Client } from "@aws-sdk/client-s3";
import { resolveBackup } from "#core/backup-index.ts";
import { METRICS_NAMESPACE } from "#core/flows/metrics.ts";
import { BACKUP_ID_PATTERN, DATABASE_ID_PATTERN } from "#core/keys.ts";
import { S3Store, s3ClientConfigFromEnv } from "#core/store/s3-store.ts";

/** What several handlers share: the backup-ref input, the catalog keepers' dependencies, `latest` for the plans. */

/** Input naming one backup: `{databaseId, backupId}`, nothing else. */
export interface BackupRef {
  databaseId: string;
  backupId: string;
}

export const backupRefSchema = {
  type: "object",
  additionalProperties: false,
  required: ["databaseId", "backupId"],
  properties: {
    databaseId: { type: "string", pattern: DATABASE_ID_PATTERN },
    backupId: { type: "string", pattern: BACKUP_ID_PATTERN },
  },
};

export interface CatalogDeps {
  s3: S3Client;
  dynamodb: DynamoDBClient;
  /** s3://bucket/prefix */
  storeUrl: string;
  tableName: string;
  /** Where the function's metrics go (CloudWatch EMF); the alarms watch them. */
  metrics?: Metrics;
}

/** The deployed function's dependencies, from its environment (npm run sim passes the template's). */
export const catalogDepsFromEnv = (env: NodeJS.ProcessEnv = process.env): CatalogDeps => ({
  metrics: new Metrics({ namespace: env.POWERTOOLS_METRICS_NAMESPACE ?? METRICS_NAMESPACE, serviceName: "strongroom" }),
  s3: new S3Client(s3ClientConfigFromEnv(env)),
  dynamodb: new DynamoDBClient({}),
  storeUrl: env.STORE_URL ?? "",
  tableName: env.CATALOG_TABLE ?? "",
});

/** `latest` for a plan handler: the newest committed backup of a database in the deployment's store. */
export function latestIn(s3: S3Client, storeUrl: string): (databaseId: string) => Promise<string> {
  return async (databaseId) =>
    (await resolveBackup(new S3Store(storeUrl, { client: s3 }), "latest", databaseId)).manifest.backupId;
}
