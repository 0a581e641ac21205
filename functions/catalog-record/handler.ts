import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { S3Client } from "@aws-sdk/client-s3";
import { readManifest } from "#core/backup-index.ts";
import { type CatalogItem, catalogRecord } from "#core/catalog/catalog.ts";
import { DynamoCatalogTable } from "#core/catalog/dynamo-catalog-table.ts";
import { BACKUP_RECORDED, METRICS_NAMESPACE } from "#core/flows/metrics.ts";
import { BACKUP_ID_PATTERN, DATABASE_ID_PATTERN } from "#core/keys.ts";
import { S3Store, s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import { lambda } from "../common/lambda.ts";

/** After a backup: read its manifest (no manifest, no item) and write the catalog item. */
export interface CatalogRecordInput {
  databaseId: string;
  backupId: string;
}

export const schema = {
  type: "object",
  additionalProperties: false,
  required: ["databaseId", "backupId"],
  properties: {
    databaseId: { type: "string", pattern: DATABASE_ID_PATTERN },
    backupId: { type: "string", pattern: BACKUP_ID_PATTERN },
  },
};

export interface Deps {
  s3: S3Client;
  dynamodb: DynamoDBClient;
  /** s3://bucket/prefix */
  storeUrl: string;
  tableName: string;
  /** Where the BackupRecorded metric goes (CloudWatch EMF); the staleness alarms watch it. */
  metrics?: Metrics;
}

export const createHandler = (deps: Deps) =>
  lambda<CatalogRecordInput, Pick<CatalogItem, "pk" | "sk">>(schema, async (input) => {
    const manifest = await readManifest(new S3Store(deps.storeUrl, { client: deps.s3 }), input);
    const item = catalogRecord(manifest);
    await new DynamoCatalogTable(deps.dynamodb, deps.tableName).put(item);
    if (deps.metrics) {
      deps.metrics.addDimension("DatabaseId", input.databaseId);
      deps.metrics.addMetric(BACKUP_RECORDED, MetricUnit.Count, 1);
      deps.metrics.publishStoredMetrics();
    }
    return { pk: item.pk, sk: item.sk };
  });

/** What the deployed function is given, from its environment (npm run sim passes the template's). */
export const depsFromEnv = (env: NodeJS.ProcessEnv = process.env): Deps => ({
  metrics: new Metrics({ namespace: env.POWERTOOLS_METRICS_NAMESPACE ?? METRICS_NAMESPACE, serviceName: "strongroom" }),
  s3: new S3Client(s3ClientConfigFromEnv(env)),
  dynamodb: new DynamoDBClient({}),
  storeUrl: env.STORE_URL ?? "",
  tableName: env.CATALOG_TABLE ?? "",
});

export const handler = createHandler(depsFromEnv());
