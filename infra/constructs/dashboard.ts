import { Aws, Duration } from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import { Construct } from "constructs";
import {
  BACKUP_DURATION_SECONDS,
  BACKUP_RECORDED,
  BACKUP_STORED_BYTES,
  databaseDimensions,
  METRICS_NAMESPACE,
  NEWEST_BACKUP_AGE_HOURS,
  NEWEST_BASE_AGE_HOURS,
  PITR_READY,
  VERIFICATION_OK,
  VERIFIED_EXCLUSIONS,
  VERIFY_RESTORE_SECONDS,
  WAL_ARCHIVE_AGE_MINUTES,
} from "#core/flows/metrics.ts";

/**
 * CloudWatch's limits that bound a dashboard (sources in docs/architecture.md, "Dashboard"):
 * - widgets: "between 0 and 500 widget objects" (Dashboard Body Structure);
 * - metrics: "up to 500 metrics per dashboard widget, up to 2500 metrics per dashboard,
 *   across all widgets", counting the metrics that math reads (CloudWatch service quotas);
 * - an alarm status widget takes 1–100 alarm ARNs (Dashboard Body Structure).
 * None can be raised.
 */
export const DASHBOARD_LIMITS = {
  widgetsPerDashboard: 500,
  metricsPerDashboard: 2500,
  metricsPerWidget: 500,
  alarmsPerAlarmWidget: 100,
} as const;

/** The time every widget shows when the dashboard opens: the 14-day record. */
export const RECORD_DAYS = 14;

export interface DashboardProps {
  /** The deployment's name (the config's `name`), which every dashboard's name starts with. */
  readonly deploymentName: string;
  /** The databases, one row each, in this order. */
  readonly databaseIds: readonly string[];
  /**
   * Those among them whose hosts archive their WAL: their rows show the point-in-time
   * facts too (the archive's age, the newest base's, and whether PITR is ready).
   * @default none
   */
  readonly pitrDatabaseIds?: readonly string[];
  /**
   * Alarms to show while they fire: the deployment's own on every dashboard, and each
   * database's on the dashboard that has its row.
   * @default no alarm widget
   */
  readonly alarms?: {
    readonly deployment: readonly cloudwatch.IAlarm[];
    readonly byDatabase: ReadonlyMap<string, readonly cloudwatch.IAlarm[]>;
  };
  /**
   * At most this many databases on one dashboard; more are split evenly over several.
   * @default as many as CloudWatch's limits allow (`Dashboard.capacity`)
   */
  readonly databasesPerDashboard?: number;
}

/**
 * The page a team opens in the morning: for each database one row, with its newest
 * backup (hours ago, size, duration), its last verification (outcome and restore
 * seconds), and its last 14 days (backups per day, red on a day without one, and each
 * day's verification outcome). Above the rows, the alarms that are firing: the
 * deployment's, and those of the databases on that dashboard.
 *
 * A row is two widgets over metrics listed by name, so every configured database has its
 * row, even one that never reported (a SEARCH expression would show only databases that
 * reported in the last two weeks, and would mix in another deployment's databases in the
 * same namespace). Rows grow the dashboard, so past CloudWatch's limits (widgets and
 * metrics per dashboard) the databases are split evenly over several dashboards, named
 * `<name>-<region>-<i>of<n>`. Dashboards are global to the account, hence the region in
 * the name.
 */
export class Dashboard extends Construct {
  /**
   * What one database's row puts on a dashboard: two widgets, and nine entries in their
   * metrics arrays (eight metrics and the expression that fills the record's empty days,
   * counted as one too, to be safe).
   */
  static readonly ROW = { widgets: 2, metrics: 9, pitrMetrics: 3, heightUnits: 5 } as const;

  /**
   * How many databases fit on one dashboard: the most rows whose widgets (with the header
   * and the widgets listing the alarms) and metrics stay within CloudWatch's limits, when
   * each database has `alarmsPerDatabase` alarms and the deployment `deploymentAlarms`,
   * and each row `metricsPerRow` metrics (more with the point-in-time facts).
   */
  static capacity(
    alarmsPerDatabase: number,
    deploymentAlarms: number,
    metricsPerRow: number = Dashboard.ROW.metrics,
  ): number {
    const fits = (rows: number) => {
      const alarms = deploymentAlarms + rows * alarmsPerDatabase;
      const widgets = 1 + Math.ceil(alarms / DASHBOARD_LIMITS.alarmsPerAlarmWidget) + rows * Dashboard.ROW.widgets;
      return (
        widgets <= DASHBOARD_LIMITS.widgetsPerDashboard &&
        rows * metricsPerRow <= DASHBOARD_LIMITS.metricsPerDashboard &&
        // One row's metrics sit in two widgets, far under the 500 a widget may hold.
        metricsPerRow <= DASHBOARD_LIMITS.metricsPerWidget
      );
    };
    let rows = 0;
    while (fits(rows + 1)) rows++;
    return rows;
  }

  readonly dashboards: cloudwatch.Dashboard[] = [];

  constructor(scope: Construct, id: string, props: DashboardProps) {
    super(scope, id);
    const deploymentAlarms = props.alarms?.deployment ?? [];
    const alarmsOf = (databaseId: string) => props.alarms?.byDatabase.get(databaseId) ?? [];
    const alarmsPerDatabase = Math.max(0, ...props.databaseIds.map((db) => alarmsOf(db).length));
    const pitr = new Set(props.pitrDatabaseIds ?? []);
    const metricsPerRow = Dashboard.ROW.metrics + (pitr.size > 0 ? Dashboard.ROW.pitrMetrics : 0);
    const capacity = Dashboard.capacity(alarmsPerDatabase, deploymentAlarms.length, metricsPerRow);
    const perDashboard = props.databasesPerDashboard ?? capacity;
    if (!Number.isInteger(perDashboard) || perDashboard < 1 || perDashboard > capacity) {
      throw new Error(
        `databasesPerDashboard must be a whole number from 1 to ${capacity} (CloudWatch's widget and metric limits), got ${perDashboard}`,
      );
    }
    if (props.databaseIds.length === 0) throw new Error("databaseIds must name at least one database");
    // Evenly: 250 databases at 247 a page are two pages of 125, not 247 and 3.
    const pages = Math.ceil(props.databaseIds.length / perDashboard);
    const size = Math.ceil(props.databaseIds.length / pages);
    for (let page = 0; page < pages; page++) {
      const ids = props.databaseIds.slice(page * size, (page + 1) * size);
      const suffix = pages === 1 ? "" : `-${page + 1}of${pages}`;
      const dashboard = new cloudwatch.Dashboard(this, `Page${page + 1}`, {
        dashboardName: `${props.deploymentName}-${Aws.REGION}${suffix}`,
        defaultInterval: Duration.days(RECORD_DAYS),
        // Each widget's own period is the point (hourly age, daily record): never let the
        // console replace it with one fitted to the time range.
        periodOverride: cloudwatch.PeriodOverride.INHERIT,
      });
      dashboard.addWidgets(header(props.deploymentName, ids, page, pages, props.databaseIds.length));
      const alarms = [...deploymentAlarms, ...ids.flatMap(alarmsOf)];
      for (let i = 0; i < alarms.length; i += DASHBOARD_LIMITS.alarmsPerAlarmWidget) {
        dashboard.addWidgets(
          new cloudwatch.AlarmStatusWidget({
            title: "Alarms firing now (empty when all is well)",
            alarms: alarms.slice(i, i + DASHBOARD_LIMITS.alarmsPerAlarmWidget),
            states: [cloudwatch.AlarmState.ALARM],
            sortBy: cloudwatch.AlarmStatusWidgetSortBy.STATE_UPDATED_TIMESTAMP,
            width: 24,
            height: 3,
          }),
        );
      }
      for (const databaseId of ids) dashboard.addWidgets(...row(databaseId, pitr.has(databaseId)));
      this.dashboards.push(dashboard);
    }
  }
}

function header(name: string, ids: readonly string[], page: number, pages: number, total: number): cloudwatch.IWidget {
  const which =
    pages === 1 ? `all ${total} databases` : `databases ${ids[0]} to ${ids.at(-1)} (page ${page + 1} of ${pages})`;
  return new cloudwatch.TextWidget({
    width: 24,
    height: 3,
    markdown: [
      `# strongroom ${name}: ${which}`,
      "One row a database. **Left:** its newest backup (age in hours, stored size, seconds it took) and its last verification (1 ok, 0 failed; the restore's seconds). " +
        `**Right:** the last ${RECORD_DAYS} days, one column a day: backups that day (red: none) and that day's verification (red: failed).`,
      "A database whose host archives its WAL also shows the archive's age (minutes since the newest WAL file), its newest base backup's age and whether it can recover to a point in time now (1/0).",
      "A blank value is a fact with no datapoint in the time range: never backed up, or never verified. The alarms below this text say what needs a person now.",
    ].join("\n\n"),
  });
}

/** One database's row: its newest facts (with `pitr`, the point-in-time ones too), and its 14-day record. */
function row(databaseId: string, pitr: boolean): cloudwatch.IWidget[] {
  // Labels are short on purpose: every byte of a row is repeated per database in the
  // template, which CloudFormation caps at 1 MB.
  const metric = (metricName: string, statistic: string, period: Duration, label?: string) =>
    new cloudwatch.Metric({
      namespace: METRICS_NAMESPACE,
      metricName,
      dimensionsMap: databaseDimensions(databaseId),
      statistic,
      period,
      ...(label === undefined ? {} : { label }),
    });
  const hour = Duration.hours(1);
  const day = Duration.days(1);
  const height = Dashboard.ROW.heightUnits;
  // A number widget shows each metric's newest datapoint in the time range: hourly
  // periods make that the newest backup's or verification's own value.
  const now = new cloudwatch.SingleValueWidget({
    title: databaseId,
    width: 12,
    height,
    metrics: [
      metric(NEWEST_BACKUP_AGE_HOURS, "Maximum", hour, "backup age (h)"),
      metric(BACKUP_STORED_BYTES, "Maximum", hour, "size"),
      metric(BACKUP_DURATION_SECONDS, "Maximum", hour, "took (s)"),
      metric(VERIFICATION_OK, "Minimum", hour, "verified (1/0)"),
      metric(VERIFY_RESTORE_SECONDS, "Maximum", hour, "restore (s)"),
      // Verified with exclusions: how many extensions the restore left out (0: none).
      metric(VERIFIED_EXCLUSIONS, "Maximum", hour, "left out (ext)"),
      // The readiness function's, hourly (core/pitr/pitr-status.ts).
      ...(pitr
        ? [
            metric(WAL_ARCHIVE_AGE_MINUTES, "Maximum", hour, "WAL (min)"),
            metric(NEWEST_BASE_AGE_HOURS, "Maximum", hour, "base (h)"),
            metric(PITR_READY, "Minimum", hour, "PITR (1/0)"),
          ]
        : []),
    ],
  });
  const record = new cloudwatch.TableWidget({
    title: `${databaseId}, ${RECORD_DAYS} days`,
    width: 12,
    height,
    period: day,
    metrics: [
      // A day without a backup has no datapoint; FILL makes it a 0, which shows red.
      new cloudwatch.MathExpression({
        expression: "FILL(b, 0)",
        usingMetrics: { b: metric(BACKUP_RECORDED, "Sum", day) },
        period: day,
        label: "backups",
      }),
      // The worst of the day: 0 if any verification failed. Blank on days without one.
      metric(VERIFICATION_OK, "Minimum", day, "verified (1/0)"),
    ],
    thresholds: [
      cloudwatch.TableThreshold.below(0.5, cloudwatch.Color.RED),
      cloudwatch.TableThreshold.above(0.5, cloudwatch.Color.GREEN),
    ],
    summary: { columns: [cloudwatch.TableSummaryColumn.SUM], sticky: true },
  });
  return [now, record];
}
