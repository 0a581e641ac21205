import { Metrics } from "@aws-lambda-powertools/metrics";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { S3Client } from "@aws-sdk/client-s3";
import type { JSONSchemaType } from "ajv";
import { DynamoAuditLog } from "#core/audit/dynamo-audit-log.ts";
import { clientConfigFromEnv } from "#core/aws-env.ts";
import { NotFoundError } from "#core/errors.ts";
import { METRICS_NAMESPACE, METRICS_SERVICE } from "#core/flows/metrics.ts";
import type { BaseRef, CommittedRef } from "#core/flows/plan.ts";
import { BACKUP_ID_PATTERN, DATABASE_ID_PATTERN } from "#core/keys.ts";
import { pickBackup, readLedger } from "#core/ledger.ts";
import { committedBasesIn, readBases } from "#core/pitr/bases.ts";
import { S3Store, s3ClientConfigFromEnv } from "#core/store/s3-store.ts";

/** What several handlers share: the backup-ref input, the catalog keepers' dependencies, `latest` for the plans. */

/** Input naming one backup: `{databaseId, backupId}`, nothing else. */
export interface BackupRef {
  databaseId: string;
  backupId: string;
}

export const backupRefSchema: JSONSchemaType<BackupRef> = {
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
  metrics: new Metrics({
    namespace: env.POWERTOOLS_METRICS_NAMESPACE ?? METRICS_NAMESPACE,
    serviceName: METRICS_SERVICE,
  }),
  s3: new S3Client(s3ClientConfigFromEnv(env)),
  dynamodb: new DynamoDBClient(clientConfigFromEnv(env, "DYNAMODB")),
  storeUrl: env.STORE_URL ?? "",
  tableName: env.CATALOG_TABLE ?? "",
});

/** Where the plan handlers look backups up: the store, and the audit log that says which count. */
export interface LedgerDeps {
  s3: S3Client;
  dynamodb: DynamoDBClient;
  storeUrl: string;
  auditTable: string;
  now: () => Date;
}

export const ledgerDepsFromEnv = (env: NodeJS.ProcessEnv = process.env): LedgerDeps => ({
  s3: new S3Client(s3ClientConfigFromEnv(env)),
  dynamodb: new DynamoDBClient(clientConfigFromEnv(env, "DYNAMODB")),
  storeUrl: env.STORE_URL ?? "",
  auditTable: env.AUDIT_TABLE ?? "",
  now: () => new Date(),
});

/**
 * A plan handler's backup (an id or `latest`), resolved in the database's ledger
 * (core/ledger.ts): only a backup whose backup.ok row records its manifest's SHA-256,
 * never the newest key a listing shows. The task is then handed that SHA-256 and
 * refuses any other manifest.
 */
export function committedIn(deps: LedgerDeps): (databaseId: string, backup: string) => Promise<CommittedRef> {
  return async (databaseId, backup) => {
    const ledger = await readLedger(new S3Store(deps.storeUrl, { client: deps.s3 }), databaseId, {
      audit: new DynamoAuditLog(deps.dynamodb, deps.auditTable, `db#${databaseId}`),
      now: deps.now(),
    });
    const found = pickBackup(ledger, backup);
    const dump = found.manifest.objects.find((o) => o.role === "dump");
    return {
      backupId: found.backupId,
      manifestSha256: found.sha256,
      ...(dump ? { dumpBytes: dump.plainBytes } : {}),
      ...(found.manifest.databaseBytes !== undefined ? { databaseBytes: found.manifest.databaseBytes } : {}),
    };
  };
}

/**
 * A plan handler's base backup (an id or `latest`): only one whose manifest a trusted
 * signer (the host's, from the settings) signed, never the newest key a listing shows.
 */
export function signedBaseIn(
  deps: LedgerDeps,
): (databaseId: string, signers: ReadonlySet<string>, base: string) => Promise<BaseRef> {
  return async (databaseId, signers, base) => {
    // Signed by the host, or committed by a backup.ok row of kind "base" in the audit table.
    const audit = new DynamoAuditLog(deps.dynamodb, deps.auditTable, `db#${databaseId}`);
    const { trusted, sha256 } = await readBases(
      new S3Store(deps.storeUrl, { client: deps.s3 }),
      databaseId,
      signers,
      await committedBasesIn(audit, databaseId),
    );
    const found = base === "latest" ? trusted.at(-1) : trusted.find((b) => b.baseId === base);
    if (!found) {
      throw new NotFoundError(
        base === "latest"
          ? `database ${databaseId} has no base backup its host signed`
          : `database ${databaseId} has no base backup ${base} its host signed`,
        {
          hint: "take one on the database host (strongroom basebackup); `strongroom list --signer …` shows the signed ones",
        },
      );
    }
    return {
      baseId: found.baseId,
      manifestSha256: sha256.get(found.baseId) as string,
      plainBytes: found.object.plainBytes,
    };
  };
}
