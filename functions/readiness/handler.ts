import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { S3Client } from "@aws-sdk/client-s3";
import type { JSONSchemaType } from "ajv";
import { DynamoAuditLog } from "#core/audit/dynamo-audit-log.ts";
import { clientConfigFromEnv } from "#core/aws-env.ts";
import { type DatabaseSettings, type FlowSettings, settingsFromEnv } from "#core/flows/flow-settings.ts";
import {
  DATABASE_DIMENSION,
  METRICS_NAMESPACE,
  METRICS_SERVICE,
  NEWEST_BACKUP_AGE_HOURS,
  NEWEST_BASE_AGE_HOURS,
  PITR_READY,
  PITR_VERIFIED_AGE_HOURS,
  READY,
  VERIFIED_AGE_HOURS,
  WAL_ARCHIVE_AGE_MINUTES,
  WAL_GAPS,
  WAL_UNTRUSTED_OBJECTS,
} from "#core/flows/metrics.ts";
import { optional } from "#core/json-schema.ts";
import { DEFAULT_PITR_LIMITS, type PitrStatus, pitrFacts, readPitrStatus } from "#core/pitr/pitr-status.ts";
import { newestWalAge } from "#core/pitr/wal-age.ts";
import { type DatabaseStatus, DEFAULT_LIMITS, readStatus } from "#core/status.ts";
import { S3Store, s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import { lambda, logger as log } from "../common/lambda.ts";

/**
 * The deployed `strongroom status`, run hourly by a schedule: for every configured
 * database, the age of its newest backup and of its newest successful verification, and
 * whether it is ready, as metrics. A database never verified emits no VerifiedAgeHours,
 * and its alarm treats the missing data as breaching: "not verified" is the truth.
 * A database with walArchiving is also judged by its point-in-time recovery, over what
 * its host signed (core/pitr/pitr-status.ts): the archive's age, gaps, untrusted objects,
 * the newest base backup and the last `verify --pitr`. With `{"walAgeOnly": true}` (every
 * five minutes, when a database sets `maxWalAgeMinutes`) it emits only the archive's age.
 */
export interface ReadinessInput {
  /**
   * Only the archive's age, from a handful of requests (core/pitr/wal-age.ts), for the
   * databases with `maxWalAgeMinutes`: the every-five-minutes schedule's, so that the
   * archive-age alarm is as fine as its limit, not as the hourly full run.
   */
  walAgeOnly?: boolean;
}

export const schema: JSONSchemaType<ReadinessInput> = {
  type: "object",
  additionalProperties: false,
  properties: { walAgeOnly: optional({ type: "boolean" }) },
};

/** The age the archive-age run reports when it finds no trusted file: past any `maxWalAgeMinutes` (10080). */
export const AGE_NOT_FOUND_MINUTES = 1_000_000;

/** What the archive-age run says of one database. */
export interface WalAgeReading {
  databaseId: string;
  walAgeMinutes?: number;
  newest?: string;
  requests: number;
}

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

/** One database's readiness: the logical backups', and with walArchiving its point-in-time recovery's. */
export type Readiness = Pick<DatabaseStatus, "databaseId" | "ready" | "problems"> & {
  pitr?: Pick<PitrStatus, "ready" | "problems">;
};

export const createHandler = (deps: Deps) => {
  /** One database: its readiness, and its metrics emitted. Undefined when it has nothing to judge yet. */
  async function judge(db: DatabaseSettings, store: S3Store): Promise<Readiness | undefined> {
    const maxVerifyAgeMs = db.verify.maxAgeDays * 86_400_000;
    const limits = { ...DEFAULT_LIMITS, maxVerifyAgeMs };
    const audit = (databaseId: string) => new DynamoAuditLog(deps.dynamodb, deps.auditTable, `db#${databaseId}`);
    const now = deps.now();
    // A physical-only database has no dumps to judge: its base backups and WAL are what it has.
    const [status] =
      db.mode === "physical" ? [undefined] : await readStatus(store, { databaseId: db.id, now, limits, audit });
    // What the host signed, and nothing else: a store writer's WAL or base backup is a problem, never a window.
    const pitr = db.wal
      ? await readPitrStatus({
          store,
          databaseId: db.id,
          signers: new Set(db.wal.signers),
          audit: audit(db.id),
          now,
          limits: {
            maxBaseAgeMs: DEFAULT_PITR_LIMITS.maxBaseAgeMs,
            maxVerifyAgeMs,
            ...(db.wal.maxAgeMinutes !== undefined ? { maxWalAgeMs: db.wal.maxAgeMinutes * 60_000 } : {}),
          },
          log,
        })
      : undefined;
    if (!status && !pitr) return undefined;
    const problems = [...(status?.problems ?? []), ...(pitr?.problems ?? []).map((p) => `point-in-time: ${p}`)];
    const ready = (status?.ready ?? true) && (pitr?.ready ?? true);
    const m = deps.metrics;
    if (m) {
      m.addDimension(DATABASE_DIMENSION, db.id);
      if (status?.newestBackup) m.addMetric(NEWEST_BACKUP_AGE_HOURS, MetricUnit.NoUnit, status.newestBackup.ageHours);
      if (status?.newestVerified) m.addMetric(VERIFIED_AGE_HOURS, MetricUnit.NoUnit, status.newestVerified.ageHours);
      if (db.wal) {
        const facts = pitrFacts(pitr);
        // No archived WAL, no datapoint: the archive-age alarm counts that as breaching.
        if (facts.walAgeMinutes !== undefined) {
          m.addMetric(WAL_ARCHIVE_AGE_MINUTES, MetricUnit.NoUnit, facts.walAgeMinutes);
        }
        m.addMetric(WAL_GAPS, MetricUnit.Count, facts.gaps);
        m.addMetric(WAL_UNTRUSTED_OBJECTS, MetricUnit.Count, facts.untrusted);
        if (pitr?.newestBase) m.addMetric(NEWEST_BASE_AGE_HOURS, MetricUnit.NoUnit, pitr.newestBase.ageHours);
        if (pitr?.newestVerified) {
          m.addMetric(PITR_VERIFIED_AGE_HOURS, MetricUnit.NoUnit, pitr.newestVerified.ageHours);
        }
        m.addMetric(PITR_READY, MetricUnit.NoUnit, pitr?.ready ? 1 : 0);
      }
      m.addMetric(READY, MetricUnit.NoUnit, ready ? 1 : 0);
      m.publishStoredMetrics();
    }
    return {
      databaseId: db.id,
      ready,
      problems,
      ...(pitr ? { pitr: { ready: pitr.ready, problems: pitr.problems } } : {}),
    };
  }

  /**
   * No trusted file found (or the check failed) is a datapoint too, an age past any limit:
   * CloudWatch can hold back an alarm on missing data while older datapoints remain in its
   * range, and this run's point is to alarm within minutes.
   */
  const emitAge = (databaseId: string, minutes: number) => {
    if (!deps.metrics) return;
    deps.metrics.addDimension(DATABASE_DIMENSION, databaseId);
    deps.metrics.addMetric(WAL_ARCHIVE_AGE_MINUTES, MetricUnit.NoUnit, minutes);
    deps.metrics.publishStoredMetrics();
  };

  /** The archive's age of each database with a limit on it, and nothing else. */
  async function walAges(store: S3Store): Promise<WalAgeReading[]> {
    const out: WalAgeReading[] = [];
    for (const db of await deps.settings.databases()) {
      if (db.wal?.maxAgeMinutes === undefined) continue;
      try {
        const age = await newestWalAge({
          store,
          databaseId: db.id,
          signers: new Set(db.wal.signers),
          audit: new DynamoAuditLog(deps.dynamodb, deps.auditTable, `db#${db.id}`),
          now: deps.now(),
          log,
        });
        out.push({
          databaseId: db.id,
          requests: age.requests,
          ...(age.newest ? { newest: age.newest.name } : {}),
          ...(age.ageMinutes !== undefined ? { walAgeMinutes: age.ageMinutes } : {}),
        });
        emitAge(db.id, age.ageMinutes ?? AGE_NOT_FOUND_MINUTES);
      } catch (err) {
        const e = err as Error;
        log.error("the archive's age could not be read", { databaseId: db.id, error: e.name, message: e.message });
        out.push({ databaseId: db.id, requests: 0 });
        emitAge(db.id, AGE_NOT_FOUND_MINUTES);
      }
    }
    return out;
  }

  return lambda<ReadinessInput, Readiness[] | WalAgeReading[]>(schema, async (input) => {
    const store = new S3Store(deps.storeUrl, { client: deps.s3 });
    if (input.walAgeOnly) return walAges(store);
    const out: Readiness[] = [];
    for (const db of await deps.settings.databases()) {
      try {
        const judged = await judge(db, store);
        if (judged) out.push(judged);
      } catch (err) {
        // One database's store trouble (an object it cannot read, a listing too large to
        // finish) must not leave every other database unwatched: it is not ready, and says why.
        const e = err as Error;
        log.error("readiness could not judge a database", { databaseId: db.id, error: e.name, message: e.message });
        out.push({ databaseId: db.id, ready: false, problems: [`readiness failed: ${e.name}: ${e.message}`] });
        if (!deps.metrics) continue;
        deps.metrics.addDimension(DATABASE_DIMENSION, db.id);
        if (db.wal) deps.metrics.addMetric(PITR_READY, MetricUnit.NoUnit, 0);
        deps.metrics.addMetric(READY, MetricUnit.NoUnit, 0);
        deps.metrics.publishStoredMetrics();
      }
    }
    return out;
  });
};

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
