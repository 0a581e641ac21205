import { MetricUnit } from "@aws-lambda-powertools/metrics";
import { readManifest } from "#core/backup-index.ts";
import { type CatalogItem, catalogRecord } from "#core/catalog/catalog.ts";
import { DynamoCatalogTable } from "#core/catalog/dynamo-catalog-table.ts";
import { NotFoundError } from "#core/errors.ts";
import { VERIFICATION_OK, VERIFY_RESTORE_SECONDS } from "#core/flows/metrics.ts";
import { S3Store } from "#core/store/s3-store.ts";
import { listVerifications } from "#core/verification.ts";
import { type BackupRef, backupRefSchema, type CatalogDeps, catalogDepsFromEnv } from "../common/deps.ts";
import { lambda } from "../common/lambda.ts";

/**
 * After a verify task: read the backup's newest verification summary (no summary, no
 * record: the task claimed success without writing one), put the catalog item with it,
 * and emit the restore time and the outcome as metrics (CloudWatch EMF).
 */
export type VerificationRecordInput = BackupRef;
export const schema = backupRefSchema;
export type Deps = CatalogDeps;

export const createHandler = (deps: Deps) =>
  lambda<VerificationRecordInput, Pick<CatalogItem, "pk" | "sk"> & { ok: boolean; at: string; restoreSeconds: number }>(
    schema,
    async (input) => {
      const store = new S3Store(deps.storeUrl, { client: deps.s3 });
      const manifest = await readManifest(store, input);
      const verifications = (await listVerifications(store, input.databaseId)).filter(
        (v) => v.backupId === input.backupId && v.kind === "restore",
      );
      const newest = verifications.at(-1);
      if (!newest) {
        throw new NotFoundError(
          `backup ${input.databaseId}/${input.backupId} has no verification result in the store`,
          {
            hint: "the verify task exited 0 without storing its result; see its log",
          },
        );
      }
      const item = catalogRecord(manifest, verifications);
      await new DynamoCatalogTable(deps.dynamodb, deps.tableName).put(item);
      if (deps.metrics) {
        deps.metrics.addDimension("DatabaseId", input.databaseId);
        deps.metrics.addMetric(VERIFICATION_OK, MetricUnit.Count, newest.ok ? 1 : 0);
        deps.metrics.addMetric(VERIFY_RESTORE_SECONDS, MetricUnit.Seconds, newest.rto.restoreSeconds);
        deps.metrics.publishStoredMetrics();
      }
      return { pk: item.pk, sk: item.sk, ok: newest.ok, at: newest.at, restoreSeconds: newest.rto.restoreSeconds };
    },
  );

/** What the deployed function is given, from its environment (npm run sim passes the template's). */
export const depsFromEnv = catalogDepsFromEnv;

export const handler = createHandler(depsFromEnv());
