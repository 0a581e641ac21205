import { createHash } from "node:crypto";
import { MetricUnit } from "@aws-lambda-powertools/metrics";
import type { JSONSchemaType } from "ajv";
import { readManifestRecord } from "#core/backup-index.ts";
import { type CatalogItem, catalogRecord } from "#core/catalog/catalog.ts";
import { DynamoCatalogTable } from "#core/catalog/dynamo-catalog-table.ts";
import { EXIT_INCONCLUSIVE, IntegrityError, NotFoundError } from "#core/errors.ts";
import {
  DATABASE_DIMENSION,
  VERIFICATION_INCONCLUSIVE,
  VERIFICATION_OK,
  VERIFIED_EXCLUSIONS,
  VERIFY_RESTORE_SECONDS,
} from "#core/flows/metrics.ts";
import type { VerifyKind } from "#core/flows/plan.ts";
import { type CaughtError, describeFailure } from "#core/flows/task-failure.ts";
import { optional } from "#core/json-schema.ts";
import { BACKUP_ID_PATTERN, DATABASE_ID_PATTERN } from "#core/keys.ts";
import { baseKeys } from "#core/pitr/base-manifest.ts";
import { listPitrSummaries } from "#core/pitr/pitr-verification.ts";
import { getBytes } from "#core/store/object-store.ts";
import { S3Store } from "#core/store/s3-store.ts";
import { listVerifications, outcomeOf, type VerificationOutcome } from "#core/verification.ts";
import { type BackupRef, type CatalogDeps, catalogDepsFromEnv } from "../common/deps.ts";
import { lambda } from "../common/lambda.ts";

/**
 * After a verify task: put the catalog item with the verification and emit its outcome
 * and restore time as metrics (CloudWatch EMF). The verdict is the flow's: `ok` is true
 * on the path where the task exited 0, false on its failure path. The summary in the
 * bucket only gives the timings, and only one that agrees with the verdict: a summary is
 * plaintext that anyone who can write the bucket can put there. The manifest must still be
 * the one the plan resolved in the audit log (`manifestSha256`).
 */
export interface VerificationRecordInput extends BackupRef {
  manifestSha256: string;
  ok: boolean;
  /**
   * On the failure path: the task's caught error. Its exit code decides between failed
   * and inconclusive (exit 3: the scratch lacked what the backup needs).
   */
  failure?: CaughtError;
  /** `pitr`: a base backup's `verify --pitr` (no catalog item: the catalog holds logical backups). @default restore */
  kind?: VerifyKind;
}

export const schema: JSONSchemaType<VerificationRecordInput> = {
  type: "object",
  additionalProperties: false,
  required: ["databaseId", "backupId", "manifestSha256", "ok"],
  properties: {
    databaseId: { type: "string", pattern: DATABASE_ID_PATTERN },
    backupId: { type: "string", pattern: BACKUP_ID_PATTERN },
    manifestSha256: { type: "string", pattern: "^[0-9a-f]{64}$" },
    ok: { type: "boolean" },
    failure: optional({
      type: "object",
      required: ["Error"],
      properties: { Error: { type: "string" }, Cause: optional({ type: "string" }) },
    }),
    kind: optional({ type: "string", enum: ["restore", "pitr"] }),
  },
};
export type Deps = CatalogDeps;

export const createHandler = (deps: Deps) =>
  lambda<
    VerificationRecordInput,
    Partial<Pick<CatalogItem, "pk" | "sk">> & {
      ok: boolean;
      outcome: VerificationOutcome;
      at: string;
      restoreSeconds: number;
      /** Verified with exclusions: the extensions left out (empty otherwise; the verify.ok row reads it). */
      excluded: string[];
    }
  >(schema, async (input) => {
    const store = new S3Store(deps.storeUrl, { client: deps.s3 });
    if (input.kind === "pitr") return recordPitr(deps, store, input);
    const { manifest, sha256 } = await readManifestRecord(store, input);
    if (sha256 !== input.manifestSha256) {
      throw new IntegrityError(
        `the manifest of backup ${input.databaseId}/${input.backupId} is not the one the verification was planned for`,
        { hint: "someone with write access to the bucket replaced it; see `strongroom audit verify`" },
      );
    }
    // The verdict is the flow's path and the task's exit code, never the summary's.
    const outcome = verdictOf(input);
    const newest = (await listVerifications(store, input.databaseId))
      .filter((v) => v.backupId === input.backupId && v.kind === "restore" && outcomeOf(v) === outcome)
      .at(-1);
    if (!newest) {
      throw new NotFoundError(
        `backup ${input.databaseId}/${input.backupId} has no verification result in the store that says ${outcome}`,
        { hint: "the verify task exited without storing its result; see its log" },
      );
    }
    const left = newest.excluded;
    const item = catalogRecord(manifest, [{ ...newest, ...(left ? { excludedExtensions: left.extensions } : {}) }]);
    await new DynamoCatalogTable(deps.dynamodb, deps.tableName).put(item);
    emitVerification(deps, input, outcome, newest.rto.restoreSeconds, left?.extensions.length ?? 0);
    return {
      pk: item.pk,
      sk: item.sk,
      ok: input.ok,
      outcome,
      at: newest.at,
      restoreSeconds: newest.rto.restoreSeconds,
      excluded: left?.extensions ?? [],
    };
  });

/**
 * A verification's metrics: VerificationOk and VerifyRestoreSeconds for one that verified
 * or failed (and, for a restore that verified, VerifiedExclusions); for an inconclusive
 * one VerificationInconclusive, per database and once more without DatabaseId.
 */
function emitVerification(
  deps: Deps,
  input: VerificationRecordInput,
  outcome: VerificationOutcome,
  restoreSeconds: number,
  /** A logical restore's excluded extensions; absent for a point-in-time recovery. */
  exclusions?: number,
): void {
  if (!deps.metrics) return;
  deps.metrics.addDimension(DATABASE_DIMENSION, input.databaseId);
  if (outcome === "inconclusive") {
    // Neither verified nor failed: not a VerificationOk datapoint of either value.
    deps.metrics.addMetric(VERIFICATION_INCONCLUSIVE, MetricUnit.Count, 1);
    deps.metrics.publishStoredMetrics();
    // Once more without DatabaseId: what the deployment's one alarm watches.
    deps.metrics.addMetric(VERIFICATION_INCONCLUSIVE, MetricUnit.Count, 1);
  } else {
    deps.metrics.addMetric(VERIFICATION_OK, MetricUnit.Count, input.ok ? 1 : 0);
    deps.metrics.addMetric(VERIFY_RESTORE_SECONDS, MetricUnit.Seconds, restoreSeconds);
    // The dashboard shows "verified with exclusions" as verified 1 beside this count.
    if (input.ok && exclusions !== undefined) deps.metrics.addMetric(VERIFIED_EXCLUSIONS, MetricUnit.Count, exclusions);
  }
  deps.metrics.publishStoredMetrics();
}

/** The flow's verdict, from its path and the task's exit code, never from a summary. */
function verdictOf(input: VerificationRecordInput): VerificationOutcome {
  return input.ok
    ? "verified"
    : input.failure && describeFailure(input.failure).exitCode === EXIT_INCONCLUSIVE
      ? "inconclusive"
      : "failed";
}

/**
 * A `verify --pitr` run by VerifyFlow: the base's manifest must still be the bytes the
 * plan resolved; the timings come from the newest summary beside the base that agrees
 * with the verdict and names that manifest. Metrics as for a restore: VerificationOk (or
 * VerificationInconclusive) and VerifyRestoreSeconds, here the recovery's RTO (base,
 * WAL fetched, replay).
 */
async function recordPitr(deps: Deps, store: S3Store, input: VerificationRecordInput) {
  const key = baseKeys(input.databaseId, input.backupId).manifest;
  let bytes: Buffer;
  try {
    bytes = await getBytes(store, key);
  } catch (err) {
    if (err instanceof NotFoundError) {
      throw new NotFoundError(`base backup ${input.databaseId}/${input.backupId} has no manifest`, {
        hint: "it was pruned or removed after the plan; see `strongroom wal verify`",
      });
    }
    throw err;
  }
  if (createHash("sha256").update(bytes).digest("hex") !== input.manifestSha256) {
    throw new IntegrityError(
      `the manifest of base backup ${input.databaseId}/${input.backupId} is not the one the verification was planned for`,
      { hint: "someone with write access to the bucket replaced it" },
    );
  }
  const outcome = verdictOf(input);
  const newest = (await listPitrSummaries(store, input.databaseId, input.backupId))
    .filter((v) => v.outcome === outcome && v.manifestSha256 === input.manifestSha256)
    .at(-1);
  if (!newest) {
    throw new NotFoundError(
      `base backup ${input.databaseId}/${input.backupId} has no verify --pitr result in the store that says ${outcome}`,
      { hint: "the verify task exited without storing its result; see its log" },
    );
  }
  const rtoSeconds = newest.rto.baseSeconds + newest.rto.walSeconds + newest.rto.replaySeconds;
  emitVerification(deps, input, outcome, rtoSeconds);
  return { ok: input.ok, outcome, at: newest.at, restoreSeconds: rtoSeconds, excluded: [] };
}

/** What the deployed function is given, from its environment (npm run sim passes the template's). */
export const depsFromEnv = catalogDepsFromEnv;

export const handler = createHandler(depsFromEnv());
