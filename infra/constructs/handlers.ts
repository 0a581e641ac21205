import * as path from "node:path";
import { Duration, RemovalPolicy, Stack } from "aws-cdk-lib";
import type * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import * as iam from "aws-cdk-lib/aws-iam";
import * as lambda from "aws-cdk-lib/aws-lambda";
import { LogLevel, NodejsFunction, OutputFormat } from "aws-cdk-lib/aws-lambda-nodejs";
import * as logs from "aws-cdk-lib/aws-logs";
import { Construct } from "constructs";
import { METRICS_NAMESPACE } from "#core/flows/metrics.ts";
import type { BackupBucket } from "./backup-bucket.ts";
import type { ControlTables } from "./control-tables.ts";
import { grantKeys } from "./kms.ts";
import { acknowledge, acknowledgeWildcard } from "./nag.ts";
import { listUnder } from "./worker.ts";

const REPO_ROOT = path.resolve(import.meta.dirname, "../..");

export interface HandlersProps {
  readonly bucket: BackupBucket;
  readonly tables: ControlTables;
  /** `/strongroom/<name>`: where the plan handlers read each database's settings (SSM). */
  readonly settingsPath: string;
  /** @default three months */
  readonly logRetention?: logs.RetentionDays;
  /** Customer-managed keys the bucket is under. @default none */
  readonly kmsKeyArns?: readonly string[];
}

/**
 * The Lambdas, each a thin shell in functions/<name>/handler.ts over a core module,
 * bundled by esbuild: Node 22, ARM64, and a role that can do its one job.
 *
 * - audit-append: put rows in the audit table, the only function that may. It reads the
 *   chain's head (Query, GetItem) to link the next row; it can never update or delete one.
 * - catalog-record: read a manifest, put a catalog item.
 * - retention-prune: read the audit log, read and delete backups under the prefix; it
 *   cannot put objects or audit rows (it returns its rows for audit-append).
 * - destination-probe: write, read and delete probe objects under `<prefix>/.strongroom/probe/`.
 * - plan-backup, plan-restore, plan-verify and readiness read the settings parameters
 *   under `/strongroom/<name>/`. plan-backup has no other access; plan-restore and plan-verify: read manifests (to
 *   resolve `latest`).
 * - verification-record: read a manifest and the verification summaries, put a catalog item.
 * - readiness (hourly): read manifests, verification summaries and archived WAL headers; emits metrics only.
 */
export class Handlers extends Construct {
  readonly auditAppend: NodejsFunction;
  readonly catalogRecord: NodejsFunction;
  readonly retentionPrune: NodejsFunction;
  readonly destinationProbe: NodejsFunction;
  readonly planBackup: NodejsFunction;
  readonly planRestore: NodejsFunction;
  readonly planVerify: NodejsFunction;
  readonly verificationRecord: NodejsFunction;
  readonly readiness: NodejsFunction;

  constructor(scope: Construct, id: string, props: HandlersProps) {
    super(scope, id);
    const { bucket, tables } = props;
    const logGroup = new logs.LogGroup(this, "Logs", {
      retention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    // Log streams are made by Lambda at run time, each function's in the one group. A log
    // group's Arn attribute already ends in `:*`, which covers its streams.
    const streams = logGroup.logGroupArn;
    const fn = (name: string, environment: Record<string, string>, timeout = Duration.seconds(60)) => {
      // Its own role with only its log group, rather than AWSLambdaBasicExecutionRole,
      // which grants logs:CreateLogGroup, CreateLogStream and PutLogEvents on every group.
      const role = new iam.Role(this, `${name}-role`, {
        assumedBy: new iam.ServicePrincipal("lambda.amazonaws.com"),
        description: `strongroom ${name}: its own grants, and writing its logs`,
      });
      role.addToPolicy(
        new iam.PolicyStatement({ actions: ["logs:CreateLogStream", "logs:PutLogEvents"], resources: [streams] }),
      );
      acknowledgeWildcard(role, streams, "Lambda names each log stream at run time, in the functions' one log group");
      const f = new NodejsFunction(this, name, {
        role,
        entry: path.join(REPO_ROOT, "functions", name, "handler.ts"),
        projectRoot: REPO_ROOT,
        depsLockFilePath: path.join(REPO_ROOT, "package-lock.json"),
        runtime: lambda.Runtime.NODEJS_22_X,
        architecture: lambda.Architecture.ARM_64,
        memorySize: 512,
        timeout,
        logGroup,
        loggingFormat: lambda.LoggingFormat.JSON,
        environment: { POWERTOOLS_SERVICE_NAME: "strongroom", ...environment },
        bundling: {
          format: OutputFormat.ESM,
          target: "node22",
          minify: true,
          sourceMap: true,
          // The SDK is bundled at the versions the tests ran, not taken from the runtime,
          // whose version moves under the function. pg and the native zstd addon are the
          // worker's, never imported by a handler.
          externalModules: [],
          banner: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
          // esbuild's size summary, nine times on every synth, hides the lines that matter;
          // its warnings and errors still print.
          logLevel: LogLevel.WARNING,
        },
      });
      acknowledge(
        f,
        "L1",
        "Node 22 is the runtime strongroom is built and tested for (the worker image is node:22 too); both move together",
      );
      return f;
    };
    const store = { STORE_URL: bucket.storeUrl };
    this.auditAppend = fn("audit-append", { AUDIT_TABLE: tables.audit.tableName });
    this.catalogRecord = fn("catalog-record", {
      ...store,
      CATALOG_TABLE: tables.catalog.tableName,
      POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
    });
    this.retentionPrune = fn(
      "retention-prune",
      { ...store, AUDIT_TABLE: tables.audit.tableName },
      Duration.minutes(10),
    );
    this.destinationProbe = fn("destination-probe", store);
    // The settings are parameters, not environment: Lambda's 4 KB of environment hold
    // about eight databases' settings.
    const settings = props.settingsPath;
    this.planBackup = fn("plan-backup", { SETTINGS_PATH: settings });
    const audit = { AUDIT_TABLE: tables.audit.tableName };
    this.planRestore = fn("plan-restore", { ...store, ...audit, SETTINGS_PATH: settings });
    this.planVerify = fn("plan-verify", { ...store, ...audit, SETTINGS_PATH: settings });
    this.verificationRecord = fn("verification-record", {
      ...store,
      CATALOG_TABLE: tables.catalog.tableName,
      POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
    });
    // Minutes, not seconds: with walArchiving it reads the signed header of every archived
    // WAL file (16 at a time; a week of a busy server's archive is thousands).
    this.readiness = fn(
      "readiness",
      { ...store, ...audit, SETTINGS_PATH: settings, POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE },
      Duration.minutes(5),
    );

    const objects = bucket.objectsArn;
    const probeObjects = bucket.bucket.arnForObjects(`${bucket.prefix ? `${bucket.prefix}/` : ""}.strongroom/probe/*`);
    appendAudit(this.auditAppend, tables.audit);
    // Reads only: its retain.delete and gc.delete rows go in through audit-append.
    allow(this.retentionPrune, ["dynamodb:Query"], [tables.audit.tableArn]);
    allow(this.catalogRecord, ["s3:GetObject"], [objects]);
    allow(this.catalogRecord, ["dynamodb:PutItem"], [tables.catalog.tableArn]);
    // Stale multipart uploads are the bucket's lifecycle rule's to abort, not prune's.
    allow(this.retentionPrune, ["s3:GetObject", "s3:DeleteObject"], [objects]);
    // Listing only under strongroom's prefix (s3:prefix), as the task roles list.
    this.retentionPrune.addToRolePolicy(listUnder(bucket, bucket.prefix));
    for (const reader of [this.planRestore, this.planVerify, this.verificationRecord, this.readiness]) {
      allow(reader, ["s3:GetObject"], [objects]);
      reader.addToRolePolicy(listUnder(bucket, bucket.prefix));
    }
    // What counts is decided by the audit log (core/ledger.ts): these read it, never write.
    for (const reader of [this.planRestore, this.planVerify, this.readiness]) {
      allow(reader, ["dynamodb:Query"], [tables.audit.tableArn]);
    }
    allow(this.verificationRecord, ["dynamodb:PutItem"], [tables.catalog.tableArn]);
    // Every function that reads strongroom's objects (the probe reads and writes its own).
    const objectReaders = [
      this.catalogRecord,
      this.retentionPrune,
      this.planRestore,
      this.planVerify,
      this.verificationRecord,
      this.readiness,
    ];
    const keys = props.kmsKeyArns ?? [];
    for (const reader of objectReaders) {
      if (reader.role) grantKeys(reader.role, keys, "s3-read");
    }
    if (this.destinationProbe.role) grantKeys(this.destinationProbe.role, keys, "s3-write");
    const parameters = Stack.of(this).formatArn({
      service: "ssm",
      resource: "parameter",
      resourceName: `${settings.replace(/^\//, "")}/*`,
    });
    for (const reader of [this.planBackup, this.planRestore, this.planVerify, this.readiness]) {
      allow(reader, ["ssm:GetParameter", "ssm:GetParametersByPath"], [parameters]);
      acknowledgeWildcard(
        reader.role ?? reader,
        parameters,
        "one settings parameter per database, under the deployment's path",
      );
    }
    allow(this.destinationProbe, ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"], [probeObjects]);
    this.destinationProbe.addToRolePolicy(listUnder(bucket, bucket.prefix));
    allow(
      this.destinationProbe,
      ["s3:GetBucketVersioning", "s3:GetBucketObjectLockConfiguration"],
      [bucket.bucket.bucketArn],
    );
    const named = "objects under strongroom's prefix are named by database and backup id at run time";
    for (const f of objectReaders) acknowledgeWildcard(f.role ?? f, objects, named);
    acknowledgeWildcard(
      this.destinationProbe.role ?? this.destinationProbe,
      probeObjects,
      "probe objects have random names, made per probe",
    );
  }
}

function allow(f: NodejsFunction, actions: string[], resources: string[]): void {
  f.addToRolePolicy(new iam.PolicyStatement({ actions, resources }));
}

/** Put-only writing of audit rows: Query and GetItem find the head; no update, no delete. */
function appendAudit(f: NodejsFunction, audit: dynamodb.TableV2): void {
  allow(f, ["dynamodb:PutItem", "dynamodb:Query", "dynamodb:GetItem"], [audit.tableArn]);
}
