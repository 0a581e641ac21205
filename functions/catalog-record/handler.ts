import { createHash } from "node:crypto";
import { MetricUnit } from "@aws-lambda-powertools/metrics";
import type { JSONSchemaType } from "ajv";
import { readManifestRecord } from "#core/backup-index.ts";
import { type CatalogItem, catalogRecord } from "#core/catalog/catalog.ts";
import { DynamoCatalogTable } from "#core/catalog/dynamo-catalog-table.ts";
import { IntegrityError, NotFoundError, VerifyStorageError } from "#core/errors.ts";
import {
  BACKUP_DURATION_SECONDS,
  BACKUP_RECORDED,
  BACKUP_STORED_BYTES,
  BASE_RECORDED,
  backupFacts,
  DATABASE_DIMENSION,
  VERIFY_STORAGE_EXCEEDED,
} from "#core/flows/metrics.ts";
import type { BackupKind } from "#core/flows/plan.ts";
import { FARGATE_EPHEMERAL_GIB, verifyStorage } from "#core/flows/verify-storage.ts";
import { optional } from "#core/json-schema.ts";
import { type Manifest, manifestObject } from "#core/manifest.ts";
import { baseKeys, readBaseManifest } from "#core/pitr/base-manifest.ts";
import { getBytes } from "#core/store/object-store.ts";
import { S3Store } from "#core/store/s3-store.ts";
import { type BackupRef, backupRefSchema, type CatalogDeps, catalogDepsFromEnv } from "../common/deps.ts";
import { lambda, logger as log } from "../common/lambda.ts";

/**
 * After a backup task: read its manifest (no manifest, no item), write the catalog item,
 * and hand the manifest's SHA-256 to the flow's backup.ok row, which is what makes the
 * backup count (core/ledger.ts). The task wrote the manifest put-if-absent moments ago.
 */
export type CatalogRecordInput = BackupRef & {
  /** `base`: a physical base backup (no catalog item: the catalog holds logical backups). @default logical */
  kind?: BackupKind;
};
export const schema: JSONSchemaType<CatalogRecordInput> = {
  ...backupRefSchema,
  properties: { ...backupRefSchema.properties, kind: optional({ type: "string", enum: ["logical", "base"] }) },
} as JSONSchemaType<CatalogRecordInput>;
export type Deps = CatalogDeps;

export const createHandler = (deps: Deps) =>
  lambda<CatalogRecordInput, Partial<Pick<CatalogItem, "pk" | "sk">> & { manifestSha256: string }>(
    schema,
    async (input) => {
      if (input.kind === "base") return recordBase(deps, input);
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
        // Said now, the day of the backup, not first by tomorrow's verification failing.
        const tooLarge = storageProblem(manifest);
        if (tooLarge) {
          log.warn("this backup is too large for the verify task's storage", {
            databaseId: input.databaseId,
            backupId: input.backupId,
            problem: tooLarge.message,
            hint: tooLarge.hint,
          });
          deps.metrics.addMetric(VERIFY_STORAGE_EXCEEDED, MetricUnit.Count, 1);
          deps.metrics.publishStoredMetrics();
        }
      }
      return { pk: item.pk, sk: item.sk, manifestSha256: sha256 };
    },
  );

/**
 * A base backup the task just committed put-if-absent: its manifest's SHA-256, which the
 * flow's backup.ok row of kind "base" records (what makes it count: core/pitr/bases.ts),
 * read as a base manifest of exactly this id (it names its own place; unsigned, these
 * bytes are what the row commits); BaseBackupRecorded (its own staleness alarm: in mode
 * both, neither kind's runs may hide the other's failing), its size and duration.
 */
async function recordBase(deps: Deps, input: CatalogRecordInput): Promise<{ manifestSha256: string }> {
  const store = new S3Store(deps.storeUrl, { client: deps.s3 });
  const key = baseKeys(input.databaseId, input.backupId).manifest;
  const bytes = await getBytes(store, key).catch((err: unknown) => {
    if (err instanceof NotFoundError) {
      throw new NotFoundError(`base backup ${input.databaseId}/${input.backupId} has no manifest`, {
        hint: "the base backup task exited without committing one; see its log",
      });
    }
    throw err;
  });
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  const manifest = readBaseManifest(bytes.toString("utf8"), key, new Set(), sha256);
  // Its times are the task's, which ran just now: a date ahead would keep "the newest base is too old" quiet.
  const started = Date.parse(manifest.startedAt);
  const stopped = Date.parse(manifest.stoppedAt);
  if (!(started <= stopped && stopped <= Date.now() + 10 * 60_000)) {
    throw new IntegrityError(
      `base backup ${input.databaseId}/${input.backupId}'s manifest is dated ${manifest.startedAt} to ${manifest.stoppedAt}, not the run that just ended`,
      { hint: "someone with write access to the bucket put it; it is not committed" },
    );
  }
  if (deps.metrics) {
    deps.metrics.addDimension(DATABASE_DIMENSION, input.databaseId);
    deps.metrics.addMetric(BASE_RECORDED, MetricUnit.Count, 1);
    deps.metrics.addMetric(BACKUP_STORED_BYTES, MetricUnit.Bytes, manifest.object.storedBytes);
    const ms = Date.parse(manifest.stoppedAt) - Date.parse(manifest.startedAt);
    deps.metrics.addMetric(BACKUP_DURATION_SECONDS, MetricUnit.Seconds, Number.isFinite(ms) && ms > 0 ? ms / 1000 : 0);
    deps.metrics.publishStoredMetrics();
  }
  return { manifestSha256: sha256 };
}

/** Why no verify task could hold this backup's restore, or undefined when one can. */
function storageProblem(manifest: Manifest): VerifyStorageError | undefined {
  try {
    verifyStorage(
      {
        databaseId: manifest.databaseId,
        backupId: manifest.backupId,
        dumpBytes: manifestObject(manifest, "dump").plainBytes,
        ...(manifest.databaseBytes !== undefined ? { databaseBytes: manifest.databaseBytes } : {}),
      },
      FARGATE_EPHEMERAL_GIB.min,
      // Deployed with this function, every database has a verify task on an EBS volume.
      { ebsAvailable: true },
    );
    return undefined;
  } catch (err) {
    if (err instanceof VerifyStorageError) return err;
    throw err;
  }
}

/** What the deployed function is given, from its environment (npm run sim passes the template's). */
export const depsFromEnv = catalogDepsFromEnv;

export const handler = createHandler(depsFromEnv());
