import { ArnFormat, Duration, Stack, Validations } from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as actions from "aws-cdk-lib/aws-cloudwatch-actions";
import * as iam from "aws-cdk-lib/aws-iam";
import type * as lambda from "aws-cdk-lib/aws-lambda";
import * as sns from "aws-cdk-lib/aws-sns";
import * as subscriptions from "aws-cdk-lib/aws-sns-subscriptions";
import type * as sqs from "aws-cdk-lib/aws-sqs";
import type * as sfn from "aws-cdk-lib/aws-stepfunctions";
import { Construct } from "constructs";
import {
  BACKUP_RECORDED,
  BASE_RECORDED,
  databaseDimensions,
  METRICS_NAMESPACE,
  METRICS_SERVICE,
  PITR_VERIFIED_AGE_HOURS,
  SERVICE_DIMENSION,
  VERIFICATION_INCONCLUSIVE,
  VERIFIED_AGE_HOURS,
  VERIFY_STORAGE_EXCEEDED,
  WAL_ARCHIVE_AGE_MINUTES,
  WAL_GAPS,
  WAL_UNTRUSTED_OBJECTS,
} from "#core/flows/metrics.ts";

export interface AlarmsProps {
  /** @default no subscription (subscribe to the topic yourself) */
  readonly email?: string;
}

/**
 * One SNS topic for everything that needs a person: the flows publish their failures
 * to it, and the alarms below notify it.
 */
export class Alarms extends Construct {
  readonly topic: sns.Topic;
  readonly alarms: cloudwatch.Alarm[] = [];
  /** Each database's own alarms (staleness, verification age), by database id; also in `alarms`. */
  readonly databaseAlarms = new Map<string, cloudwatch.Alarm[]>();

  constructor(scope: Construct, id: string, props: AlarmsProps = {}) {
    super(scope, id);
    this.topic = new sns.Topic(this, "Topic", { displayName: "strongroom alarms", enforceSSL: true });
    Validations.of(this.topic).acknowledge({
      id: "AwsSolutions-SNS2",
      reason:
        "notifications carry flow names, ids and error names, no data or secrets; CloudWatch cannot publish to a topic under the AWS-managed key, and a customer key costs at rest",
    });
    if (props.email) this.topic.addSubscription(new subscriptions.EmailSubscription(props.email));
    // A topic's policy replaces SNS's default one, and enforceSSL writes one (a Deny
    // only): without an Allow for CloudWatch, every alarm's publish would be refused.
    // Only this account's alarms may publish.
    const stack = Stack.of(this);
    this.topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: "CloudWatchAlarmsPublish",
        principals: [new iam.ServicePrincipal("cloudwatch.amazonaws.com")],
        actions: ["sns:Publish"],
        resources: [this.topic.topicArn],
        conditions: {
          ArnLike: {
            "aws:SourceArn": stack.formatArn({
              service: "cloudwatch",
              resource: "alarm",
              resourceName: "*",
              arnFormat: ArnFormat.COLON_RESOURCE_NAME,
            }),
          },
          StringEquals: { "aws:SourceAccount": stack.account },
        },
      }),
    );
  }

  /** The alarms that belong to no one database: the flows, the probe, the schedules. */
  get deploymentAlarms(): cloudwatch.Alarm[] {
    const owned = new Set([...this.databaseAlarms.values()].flat());
    return this.alarms.filter((a) => !owned.has(a));
  }

  /** Any failed execution of the flow. */
  flowFailed(name: string, machine: sfn.IStateMachine): void {
    this.add(
      `${name}Failed`,
      machine.metricFailed({ period: Duration.minutes(5), statistic: "Sum" }),
      `a ${name} execution failed (see its execution history and the worker's logs)`,
    );
  }

  /**
   * A schedule could not start its flow or function (after Scheduler's own retries) and
   * the start landed in the dead-letter queue: a backup or verification that never began.
   */
  schedulesDeadLettered(queue: sqs.IQueue): void {
    this.add(
      "ScheduleDeadLetters",
      queue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: "Maximum" }),
      "a schedule could not start its flow or function; the start is in the schedules' dead-letter queue",
    );
  }

  /**
   * A verification was inconclusive: the verify task's scratch server lacked an
   * extension, a version or a locale a backup needs (verification-record emits
   * VerificationInconclusive without DatabaseId for this). Not a failed backup: the
   * verifier needs fixing, and until it is, that database is not being proven.
   */
  verificationInconclusive(): void {
    this.add(
      "VerificationInconclusive",
      new cloudwatch.Metric({
        namespace: METRICS_NAMESPACE,
        metricName: VERIFICATION_INCONCLUSIVE,
        dimensionsMap: { [SERVICE_DIMENSION]: METRICS_SERVICE },
        period: Duration.hours(1),
        statistic: "Sum",
      }),
      "a verification was inconclusive: the verifier lacks an extension or locale a backup needs (the VerifyFlow execution's audit row and the dashboard name the database; the worker's log names what is missing)",
    );
  }

  /**
   * A backup is too large for any verify task's storage (Fargate: 200 GiB, sized per run
   * by VerifyFlow's planner): catalog-record emits VerifyStorageExceeded without
   * DatabaseId the day of the backup, before the planner refuses to verify it.
   */
  verifyStorageExceeded(): void {
    this.add(
      "VerifyStorageExceeded",
      new cloudwatch.Metric({
        namespace: METRICS_NAMESPACE,
        metricName: VERIFY_STORAGE_EXCEEDED,
        dimensionsMap: { [SERVICE_DIMENSION]: METRICS_SERVICE },
        period: Duration.hours(1),
        statistic: "Sum",
      }),
      "a backup is too large for the verify task's storage (Fargate: 200 GiB) and cannot be verified deployed: verify it with `strongroom verify --scratch postgres://…` on a server with room (BackupFlow's catalog-record log names the database and the size)",
    );
  }

  /** The daily probe failed: the bucket is not writable, readable or deletable as expected. */
  probeFailed(probe: lambda.IFunction): void {
    this.add(
      "ProbeFailed",
      probe.metricErrors({ period: Duration.days(1), statistic: "Sum" }),
      "the destination probe failed: backups may not be able to reach the bucket",
    );
  }

  /**
   * No backup of the database recorded for 26 hours: 26 hourly periods in a row without
   * a BackupRecorded datapoint (catalog-record emits it). Missing data counts as
   * breaching, so a schedule that stopped firing alarms too. `scope`: where the alarm
   * lives (the database's group, a nested stack).
   */
  stale(databaseId: string, scope: Construct = this, kind: "logical" | "base" = "logical"): void {
    const metric = new cloudwatch.Metric({
      namespace: METRICS_NAMESPACE,
      metricName: kind === "base" ? BASE_RECORDED : BACKUP_RECORDED,
      dimensionsMap: databaseDimensions(databaseId),
      period: Duration.hours(1),
      statistic: "Sum",
    });
    const alarm = new cloudwatch.Alarm(scope, kind === "base" ? `StaleBase-${databaseId}` : `Stale-${databaseId}`, {
      metric,
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: 26,
      datapointsToAlarm: 26,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      alarmDescription: `no successful ${kind === "base" ? "base backup" : "backup"} of ${databaseId} in 26 hours`,
    });
    alarm.addAlarmAction(new actions.SnsAction(this.topic));
    this.alarms.push(alarm);
    this.databaseAlarms.set(databaseId, [...(this.databaseAlarms.get(databaseId) ?? []), alarm]);
  }

  /**
   * The newest successful verification of the database is older than `maxAgeDays`, or it
   * was never verified: the hourly readiness function emits VerifiedAgeHours only for a
   * database with a successful verification, so three hours without a datapoint (never
   * verified, or the function failing) count as breaching too.
   */
  unverified(databaseId: string, maxAgeDays: number, scope: Construct = this): void {
    const alarm = new cloudwatch.Alarm(scope, `Unverified-${databaseId}`, {
      metric: new cloudwatch.Metric({
        namespace: METRICS_NAMESPACE,
        metricName: VERIFIED_AGE_HOURS,
        dimensionsMap: databaseDimensions(databaseId),
        period: Duration.hours(1),
        statistic: "Maximum",
      }),
      threshold: maxAgeDays * 24,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 3,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      alarmDescription: `no successful verification of ${databaseId} in ${maxAgeDays} days`,
    });
    alarm.addAlarmAction(new actions.SnsAction(this.topic));
    this.alarms.push(alarm);
    this.databaseAlarms.set(databaseId, [...(this.databaseAlarms.get(databaseId) ?? []), alarm]);
  }

  /**
   * A database whose host archives its WAL here, watched by the hourly readiness function
   * over what the host signed: a gap that stops a recovery from the newest base backup
   * (WalGaps), objects under its wal/ no trusted signer signed (WalUntrustedObjects:
   * planted, or archived with another key; one at the next segment's name stops
   * archiving), and, when `maxAgeMinutes` is set, the newest archived WAL older than
   * that. No datapoint for the age (nothing archived, or readiness failing) counts as
   * breaching; a missing gap count does not (the unverified alarms already say readiness
   * stopped). The age comes every five minutes (readiness with `walAgeOnly`), so its
   * alarm fires within ten minutes of the limit.
   * And PitrUnverified: no successful `verify --pitr` within `maxVerifyAgeDays` (VerifyFlow
   * runs it daily), or none at all, as the logical Unverified alarm.
   */
  walArchive(
    databaseId: string,
    limits: { maxAgeMinutes?: number; maxVerifyAgeDays: number },
    scope: Construct = this,
  ): void {
    const maxAgeMinutes = limits.maxAgeMinutes;
    const metric = (metricName: string) =>
      new cloudwatch.Metric({
        namespace: METRICS_NAMESPACE,
        metricName,
        dimensionsMap: databaseDimensions(databaseId),
        period: Duration.hours(1),
        statistic: "Maximum",
      });
    const add = (id: string, props: cloudwatch.AlarmProps) => {
      const alarm = new cloudwatch.Alarm(scope, `${id}-${databaseId}`, props);
      alarm.addAlarmAction(new actions.SnsAction(this.topic));
      this.alarms.push(alarm);
      this.databaseAlarms.set(databaseId, [...(this.databaseAlarms.get(databaseId) ?? []), alarm]);
    };
    const atLeastOne = {
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    };
    add("WalGap", {
      metric: metric(WAL_GAPS),
      ...atLeastOne,
      alarmDescription: `${databaseId}'s archived WAL has a gap: no point-in-time recovery past it (\`strongroom wal verify\` names it)`,
    });
    add("WalUntrusted", {
      metric: metric(WAL_UNTRUSTED_OBJECTS),
      ...atLeastOne,
      alarmDescription: `objects under ${databaseId}'s wal/ that no trusted signer signed: planted, or archived with another key (\`strongroom wal verify\` lists them)`,
    });
    add("PitrUnverified", {
      metric: metric(PITR_VERIFIED_AGE_HOURS),
      threshold: limits.maxVerifyAgeDays * 24,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 3,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      alarmDescription: `no successful point-in-time recovery verification (verify --pitr) of ${databaseId} in ${limits.maxVerifyAgeDays} days`,
    });
    if (maxAgeMinutes !== undefined) {
      // Five-minute periods, as readiness's every-five-minutes run reports the age: two in a
      // row, so that one run landing late is not an alarm, and an age past the limit is one
      // within ten minutes.
      add("WalArchiveAge", {
        metric: metric(WAL_ARCHIVE_AGE_MINUTES).with({ period: Duration.minutes(5) }),
        threshold: maxAgeMinutes,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 2,
        datapointsToAlarm: 2,
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
        alarmDescription: `${databaseId}'s newest archived WAL is older than ${maxAgeMinutes} minutes, or none is archived: a loss of the server now would cost that much (check archive_command and pg_stat_archiver)`,
      });
    }
  }

  private add(id: string, metric: cloudwatch.IMetric, description: string): void {
    const alarm = new cloudwatch.Alarm(this, id, {
      metric,
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      alarmDescription: description,
    });
    alarm.addAlarmAction(new actions.SnsAction(this.topic));
    this.alarms.push(alarm);
  }
}
