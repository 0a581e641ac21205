import { MetricUnit } from "@aws-lambda-powertools/metrics";
import { readManifestRecord } from "#core/backup-index.ts";
import { type CatalogItem, catalogRecord } from "#core/catalog/catalog.ts";
import { DynamoCatalogTable } from "#core/catalog/dynamo-catalog-table.ts";
import {
  BACKUP_DURATION_SECONDS,
  BACKUP_RECORDED,
  BACKUP_STORED_BYTES,
  backupFacts,
  DATABASE_DIMENSION,
} from "#core/flows/metrics.ts";
import { S3Store } from "#core/store/s3-store.ts";
import { type BackupRef, backupRefSchema, type CatalogDeps, catalogDepsFromEnv } from "../common/deps.ts";
import { lambda } from "../common/lambda.ts";

/**
 * After a backup task: read its manifest (no manifest, no item), write the catalog item,
 * and hand the manifest's SHA-256 to the flow's backup.ok row, which is what makes the
 * backup count (core/ledger.ts). The task wrote the manifest put-if-absent moments ago.
 */
export type CatalogRecordInput = BackupRef;
export const schema = backupRefSchema;
export type Deps = CatalogDeps;

export const createHandler = (deps: Deps) =>
  lambda<CatalogRecordInput, Pick<CatalogItem, "pk" | "sk"> & { manifestSha256: string }>(schema, async (input) => {
    const { manifest, sha256 } = await readManifestRecord(new S3Store(deps.storeUrl, { client: deps.s3 }), input);
    const item = catalogRecord(manifest);
    await new DynamoCatalogTable(deps.dynamodb, deps.tableName).put(item);
    if (deps.metrics) {
      const facts = backupFacts(item);
      deps.metrics.addDimension(DATABASE_DIMENSION, input.databaseId);
      deps.metrics.addMetric(BACKUP_RECORDED, MetricUnit.Count, 1);
      deps.metrics.addMetric(BACKUP_STORED_BYTES, MetricUnit.Bytes, facts.storedBytes);
      deps.metrics.addMetric(BACKUP_DURATION_SECONDS, MetricUnit.Seconds, facts.durationSeconds);
      deps.metrics.publishStoredMetrics();
    }
    return { pk: item.pk, sk: item.sk, manifestSha256: sha256 };
  });

/** What the deployed function is given, from its environment (npm run sim passes the template's). */
export const depsFromEnv = catalogDepsFromEnv;

export const handler = createHandler(depsFromEnv());
