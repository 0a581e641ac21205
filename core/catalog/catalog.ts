import { objectKey } from "../keys.ts";
import type { Manifest } from "../manifest.ts";
import { outcomeOf, type VerificationOutcome, type VerificationSummary } from "../verification.ts";

/**
 * The backup catalog (docs/formats.md, Catalog item): one item per committed backup, built only from
 * its manifest, so the table can always be rebuilt from the bucket.
 */
export interface CatalogItem {
  pk: string;
  sk: string;
  databaseId: string;
  backupId: string;
  database: string;
  startedAt: string;
  finishedAt: string;
  serverVersion: string;
  systemIdentifier: string | null;
  pgDumpVersion: string;
  dumpBytes: number;
  storedBytes: number;
  recipients: string[];
  manifestKey: string;
  objectKeys: string[];
  workerVersion: string;
  /** The newest verification by restore of this backup, when there is one. */
  lastVerifiedAt?: string;
  lastVerifyOk?: boolean;
  /** verified, failed or inconclusive (absent in items written before it was recorded). */
  lastVerifyOutcome?: VerificationOutcome;
  /** Verified with exclusions: the extensions its restore left out. */
  lastVerifyExcluded?: string[];
  verifyRestoreSeconds?: number;
}

/**
 * The item for a backup: its manifest, and the newest of `verifications` (its summaries in
 * the store) that verified it by restore. Both come from the bucket, so `catalog rebuild`
 * recreates the item exactly.
 */
/** What an item records of a verification: a summary the flow's verdict agrees with, or an audited one. */
export type CatalogVerification = Pick<
  VerificationSummary,
  "kind" | "ok" | "outcome" | "databaseId" | "backupId" | "at"
> & {
  rto: { restoreSeconds: number };
  /** Verified with exclusions: the extensions left out. */
  excludedExtensions?: string[];
};

export function catalogRecord(manifest: Manifest, verifications: readonly CatalogVerification[] = []): CatalogItem {
  const dump = manifest.objects.find((o) => o.role === "dump");
  const verified = verifications
    .filter((v) => v.kind === "restore" && v.backupId === manifest.backupId && v.databaseId === manifest.databaseId)
    .sort((a, b) => a.at.localeCompare(b.at))
    .at(-1);
  return {
    pk: `db#${manifest.databaseId}`,
    sk: `backup#${manifest.backupId}`,
    databaseId: manifest.databaseId,
    backupId: manifest.backupId,
    database: manifest.database,
    startedAt: manifest.startedAt,
    finishedAt: manifest.finishedAt,
    serverVersion: manifest.server.version,
    systemIdentifier: manifest.server.systemIdentifier,
    pgDumpVersion: manifest.pgDump.version,
    dumpBytes: dump?.plainBytes ?? 0,
    storedBytes: manifest.objects.reduce((n, o) => n + o.storedBytes, 0),
    recipients: manifest.recipients,
    manifestKey: objectKey(manifest.databaseId, manifest.backupId, "manifest"),
    objectKeys: manifest.objects.map((o) => o.key),
    workerVersion: manifest.worker.version,
    ...(verified
      ? {
          lastVerifiedAt: verified.at,
          lastVerifyOk: verified.ok,
          lastVerifyOutcome: outcomeOf(verified),
          ...(verified.excludedExtensions?.length ? { lastVerifyExcluded: verified.excludedExtensions } : {}),
          verifyRestoreSeconds: verified.rto.restoreSeconds,
        }
      : {}),
  };
}

/** Where catalog items go. Upserts are idempotent: an item is a pure function of a manifest. */
export interface CatalogTable {
  put(item: CatalogItem): Promise<void>;
  list(databaseId: string): Promise<CatalogItem[]>;
  /** Every database with at least one item. */
  databaseIds(): Promise<string[]>;
}
