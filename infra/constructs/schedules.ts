import { Duration, Stack, TimeZone, Validations } from "aws-cdk-lib";
import type * as lambda from "aws-cdk-lib/aws-lambda";
import * as scheduler from "aws-cdk-lib/aws-scheduler";
import * as targets from "aws-cdk-lib/aws-scheduler-targets";
import * as sqs from "aws-cdk-lib/aws-sqs";
import type * as sfn from "aws-cdk-lib/aws-stepfunctions";
import { Construct } from "constructs";
import { acknowledgeWildcard } from "./nag.ts";

export interface ScheduledDatabase {
  readonly id: string;
  readonly schedule: string;
  readonly timeZone: string;
  readonly verify: { readonly schedule: string };
  /** Set for a database whose host archives its WAL here: VerifyFlow also verifies its point-in-time recovery. */
  readonly wal?: unknown;
  /** logical: BackupFlow and VerifyFlow of its dumps; physical: base backups (BackupFlow, kind "base") only; both. @default logical */
  readonly mode?: "logical" | "physical" | "both";
}

export interface SchedulesProps {
  readonly probe: lambda.IFunction;
  /** @default "cron(30 6 * * ? *)" in UTC */
  readonly probeSchedule?: string;
  /** The deployed `status`, run hourly: ages of the newest backup and verification, as metrics. */
  readonly readiness: lambda.IFunction;
  /**
   * Whether any database sets `maxWalAgeMinutes`: then readiness also runs every five
   * minutes with `{"walAgeOnly": true}`, so its archive-age alarm is that fine.
   * @default false
   */
  readonly walAgeEveryFiveMinutes?: boolean;
}

/**
 * EventBridge Scheduler schedules (time zones and DST handled by the service; the
 * legacy EventBridge rules are UTC only): the hourly readiness function and the daily
 * destination probe here, and two per database (`databaseSchedules`, in the database's
 * group). A start that keeps failing lands in a dead-letter queue rather than vanishing.
 */
export class Schedules extends Construct {
  readonly deadLetterQueue: sqs.Queue;
  readonly probe: scheduler.Schedule;
  readonly readiness: scheduler.Schedule;
  /** Present when `walAgeEveryFiveMinutes`. */
  readonly walAge: scheduler.Schedule | undefined;

  constructor(scope: Construct, id: string, props: SchedulesProps) {
    super(scope, id);
    this.deadLetterQueue = new sqs.Queue(this, "DeadLetters", {
      enforceSSL: true,
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      retentionPeriod: Duration.days(14),
    });
    Validations.of(this.deadLetterQueue).acknowledge({
      id: "AwsSolutions-SQS3",
      reason: "this queue is itself the schedules' dead-letter queue",
    });
    const retry = scheduleRetry(this.deadLetterQueue);
    const probeTarget = new targets.LambdaInvoke(props.probe, {
      ...retry,
      input: scheduler.ScheduleTargetInput.fromObject({}),
    });
    // The target's role is made by CDK at stack level (SchedulerRoleForTarget-…), so
    // the acknowledgement names the stack, for these functions' versions only.
    for (const fn of [props.probe, props.readiness]) {
      acknowledgeWildcard(
        Stack.of(this),
        `${fn.functionArn}:*`,
        "CDK's grant to invoke a scheduled function, any version",
      );
    }
    this.readiness = new scheduler.Schedule(this, "Readiness", {
      description: "strongroom: readiness of every database (status), as metrics",
      schedule: scheduler.ScheduleExpression.expression("rate(1 hour)"),
      target: new targets.LambdaInvoke(props.readiness, {
        ...retry,
        input: scheduler.ScheduleTargetInput.fromObject({}),
      }),
    });
    // A handful of requests per database (core/pitr/wal-age.ts), not the hourly run's every header.
    this.walAge = props.walAgeEveryFiveMinutes
      ? new scheduler.Schedule(this, "WalAge", {
          description: "strongroom: the age of each WAL archive with a limit, as a metric",
          schedule: scheduler.ScheduleExpression.expression("rate(5 minutes)"),
          target: new targets.LambdaInvoke(props.readiness, {
            ...retry,
            input: scheduler.ScheduleTargetInput.fromObject({ walAgeOnly: true }),
          }),
        })
      : undefined;
    this.probe = new scheduler.Schedule(this, "Probe", {
      description: "strongroom: probe the backup destination",
      schedule: scheduler.ScheduleExpression.expression(props.probeSchedule ?? "cron(30 6 * * ? *)", TimeZone.ETC_UTC),
      target: probeTarget,
    });
  }
}

/** Scheduler's retry for a start: three attempts within two hours, then the dead-letter queue. */
export function scheduleRetry(deadLetterQueue: sqs.IQueue) {
  return { deadLetterQueue, retryAttempts: 3, maxEventAge: Duration.hours(2) };
}

/**
 * A database's schedules, in its time zone: BackupFlow and VerifyFlow with
 * `{"databaseId"}` for its logical backups (mode logical or both); BackupFlow with
 * `{"databaseId", "kind": "base"}` at the same time for its base backups (physical or
 * both); and, with walArchiving, VerifyFlow with `{"databaseId", "kind": "pitr"}` at the
 * verify time (a point-in-time recovery, verified daily).
 */
export function databaseSchedules(
  scope: Construct,
  db: ScheduledDatabase,
  o: { backupFlow: sfn.IStateMachine; verifyFlow: sfn.IStateMachine; deadLetterQueue: sqs.IQueue },
): scheduler.Schedule[] {
  const retry = scheduleRetry(o.deadLetterQueue);
  const mode = db.mode ?? "logical";
  const start = (id: string, description: string, flow: sfn.IStateMachine, expression: string, input: object) =>
    new scheduler.Schedule(scope, `${id}-${db.id}`, {
      description,
      schedule: scheduler.ScheduleExpression.expression(expression, TimeZone.of(db.timeZone)),
      target: new targets.StepFunctionsStartExecution(flow, {
        ...retry,
        input: scheduler.ScheduleTargetInput.fromObject(input),
      }),
    });
  const schedules: scheduler.Schedule[] = [];
  if (mode !== "physical") {
    schedules.push(
      start("Backup", `strongroom: back up ${db.id}`, o.backupFlow, db.schedule, { databaseId: db.id }),
      start("Verify", `strongroom: verify the newest backup of ${db.id}`, o.verifyFlow, db.verify.schedule, {
        databaseId: db.id,
      }),
    );
  }
  if (mode !== "logical") {
    schedules.push(
      start("BaseBackup", `strongroom: take a base backup of ${db.id}`, o.backupFlow, db.schedule, {
        databaseId: db.id,
        kind: "base",
      }),
    );
  }
  if (db.wal) {
    schedules.push(
      start("VerifyPitr", `strongroom: verify a point-in-time recovery of ${db.id}`, o.verifyFlow, db.verify.schedule, {
        databaseId: db.id,
        kind: "pitr",
      }),
    );
  }
  return schedules;
}
