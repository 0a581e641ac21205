import { readFileSync } from "node:fs";
import * as path from "node:path";
import { App, Stack } from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import { beforeAll, describe, expect, it } from "vitest";
import * as emitted from "#core/flows/metrics.ts";
import { parseConfig } from "../../infra/config/load-config.ts";
import { Alarms } from "../../infra/constructs/alarms.ts";
import { DASHBOARD_LIMITS, Dashboard } from "../../infra/constructs/dashboard.ts";
import { type CfnResource, exampleConfig, generatedConfig, synthesize } from "../helpers/stack.ts";

/**
 * The dashboard, read from the synthesized template: what it shows must be what the
 * functions emit, and it must fit CloudWatch's limits (DASHBOARD_LIMITS, sources in
 * docs/architecture.md) at 200 databases and beyond.
 */

const root = path.resolve(import.meta.dirname, "../..");

type Widget = { type: string; width: number; height: number; properties: Record<string, unknown> };
type Body = { widgets: Widget[]; start?: string; periodOverride?: string };

/** Every dashboard's name and body; a token in the body (the region, an alarm's ARN) reads TOKEN. */
function dashboardsOf(
  resources: Record<string, CfnResource>,
): Array<{ name: unknown; templateBytes: number; body: Body }> {
  const flat = (v: unknown): string => {
    if (typeof v === "string") return v;
    const join = (v as { "Fn::Join"?: [string, unknown[]] })["Fn::Join"];
    if (join) return join[1].map((p) => (typeof p === "string" ? p : "TOKEN")).join(join[0]);
    return "TOKEN";
  };
  return Object.values(resources)
    .filter((r) => r.Type === "AWS::CloudWatch::Dashboard")
    .map((r) => {
      // What the body takes of the template: as it is written there, escaped, tokens and all.
      const templateBytes = Buffer.byteLength(JSON.stringify(r.Properties.DashboardBody));
      return {
        name: r.Properties.DashboardName,
        templateBytes,
        body: JSON.parse(flat(r.Properties.DashboardBody)) as Body,
      };
    });
}

/** A metrics-array entry: a metric [namespace, name, dimension, value, …, options?] or an expression [{expression}]. */
type Entry = unknown[];
const entriesOf = (w: Widget) => (w.properties.metrics as Entry[] | undefined) ?? [];
const isExpression = (e: Entry) => typeof e[0] === "object";

function metricOf(e: Entry): { namespace: string; name: string; dimensions: Record<string, string> } {
  const parts = e.filter((p) => typeof p === "string") as string[];
  const [namespace, name, ...pairs] = parts;
  const dimensions: Record<string, string> = {};
  for (let i = 0; i < pairs.length; i += 2) dimensions[pairs[i] as string] = pairs[i + 1] as string;
  return { namespace: namespace as string, name: name as string, dimensions };
}

/**
 * The metric names the functions emit, read from their code: each `addMetric(NAME, …)`
 * in functions/*\/handler.ts, NAME resolved in core/flows/metrics.ts. A dashboard metric
 * outside this set would be a graph that stays empty.
 */
function emittedNames(): Set<string> {
  const handlers = ["catalog-record", "verification-record", "readiness"].map((f) =>
    readFileSync(path.join(root, "functions", f, "handler.ts"), "utf8"),
  );
  const names = new Set<string>();
  for (const source of handlers) {
    // Each emitting handler names its database dimension by the shared constant.
    expect(source).toMatch(/addDimension\(DATABASE_DIMENSION, /);
    for (const [, constant] of source.matchAll(/addMetric\(([A-Z_]+),/g)) {
      const value = (emitted as Record<string, unknown>)[constant as string];
      expect(typeof value, `${constant} is exported by core/flows/metrics.ts`).toBe("string");
      names.add(value as string);
    }
  }
  return names;
}

/**
 * A dashboard over these databases and as many alarms as the stack makes for them: the
 * Alarms construct's two per database (or, past a stack's 500 resources, alarms imported
 * by ARN), plus the stack's five others (three flows, the probe, the dead letters).
 */
function dashboardStack(
  databaseIds: string[],
  props: { databasesPerDashboard?: number; importAlarms?: boolean; pitr?: string[] } = {},
) {
  const stack = new Stack(new App(), "Dashboards", { env: { account: "123456789012", region: "eu-central-1" } });
  const imported = (name: string) =>
    cloudwatch.Alarm.fromAlarmArn(stack, name, `arn:aws:cloudwatch:eu-central-1:123456789012:alarm:${name}`);
  const byDatabase = new Map<string, cloudwatch.IAlarm[]>();
  if (props.importAlarms) {
    for (const id of databaseIds) byDatabase.set(id, [imported(`Stale-${id}`), imported(`Unverified-${id}`)]);
  } else {
    const alarms = new Alarms(stack, "Alarms");
    for (const id of databaseIds) {
      alarms.stale(id);
      alarms.unverified(id, 8);
    }
    for (const [id, own] of alarms.databaseAlarms) byDatabase.set(id, own);
  }
  const deployment = [
    "BackupFlowFailed",
    "RestoreFlowFailed",
    "VerifyFlowFailed",
    "VerificationInconclusive",
    "VerifyStorageExceeded",
    "ProbeFailed",
    "ScheduleDeadLetters",
  ].map(imported);
  const dashboard = new Dashboard(stack, "Dashboard", {
    deploymentName: "strongroom",
    databaseIds,
    alarms: { deployment, byDatabase },
    ...(props.pitr ? { pitrDatabaseIds: props.pitr } : {}),
    ...(props.databasesPerDashboard === undefined ? {} : { databasesPerDashboard: props.databasesPerDashboard }),
  });
  const alarmCount = deployment.length + [...byDatabase.values()].flat().length;
  return { stack, dashboard, alarmCount };
}

const resourcesOf = (stack: Stack) =>
  (stack.node.root as App).synth().getStackByName(stack.stackName).template.Resources as Record<string, CfnResource>;

/** Every limit of DASHBOARD_LIMITS, checked on one dashboard body. */
function expectWithinLimits(body: Body, templateBytes: number): void {
  expect(body.widgets.length).toBeLessThanOrEqual(DASHBOARD_LIMITS.widgetsPerDashboard);
  const entries = body.widgets.flatMap(entriesOf);
  expect(entries.length).toBeLessThanOrEqual(DASHBOARD_LIMITS.metricsPerDashboard);
  for (const w of body.widgets) {
    expect(entriesOf(w).length).toBeLessThanOrEqual(DASHBOARD_LIMITS.metricsPerWidget);
    expect(w.width).toBeGreaterThanOrEqual(1);
    expect(w.width).toBeLessThanOrEqual(24);
    expect(w.height).toBeGreaterThanOrEqual(1);
    expect(w.height).toBeLessThanOrEqual(1000);
    if (w.type === "alarm") {
      const arns = (w.properties.alarms as string[]).length;
      expect(arns).toBeGreaterThanOrEqual(1);
      expect(arns).toBeLessThanOrEqual(DASHBOARD_LIMITS.alarmsPerAlarmWidget);
    }
  }
  // CloudWatch documents no limit on a body's size; its template's is 1 MB, for the whole stack.
  expect(templateBytes).toBeLessThanOrEqual(BODY_BUDGET_BYTES);
}

/**
 * What one dashboard's body may take of its template (CloudFormation: 1 MB): half, the
 * other half for the rest of the stack. A row takes about 1.8 KB, an alarm about 60 bytes.
 */
const BODY_BUDGET_BYTES = 512 * 1024;

describe("the dashboard of the example config", () => {
  let dashboards: ReturnType<typeof dashboardsOf>;
  beforeAll(() => {
    dashboards = dashboardsOf(synthesize(exampleConfig()).Resources);
  });

  it("shows the metrics the functions emit, under their namespace and with their dimensions", () => {
    expect(dashboards).toHaveLength(1);
    const names = emittedNames();
    const entries = (dashboards[0] as (typeof dashboards)[number]).body.widgets.flatMap(entriesOf);
    const metrics = entries.filter((e) => !isExpression(e)).map(metricOf);
    expect(metrics.length).toBeGreaterThan(0);
    for (const m of metrics) {
      expect(m.namespace).toBe(emitted.METRICS_NAMESPACE);
      expect(names, m.name).toContain(m.name);
      expect(m.dimensions).toEqual(emitted.databaseDimensions(m.dimensions[emitted.DATABASE_DIMENSION] as string));
    }
    // What a morning needs, per database: the newest backup's age, size and duration, the
    // last verification's outcome, restore time and extensions left out, and the backups
    // of each of 14 days.
    for (const db of ["shop", "billing"]) {
      const shown = new Set(metrics.filter((m) => m.dimensions.DatabaseId === db).map((m) => m.name));
      expect([...shown].sort()).toEqual(
        [
          emitted.NEWEST_BACKUP_AGE_HOURS,
          emitted.BACKUP_STORED_BYTES,
          emitted.BACKUP_DURATION_SECONDS,
          emitted.VERIFICATION_OK,
          emitted.VERIFY_RESTORE_SECONDS,
          emitted.VERIFIED_EXCLUSIONS,
          emitted.BACKUP_RECORDED,
        ].sort(),
      );
    }
  });

  it("opens on the 14-day record, keeps each widget's period, and lists the alarms that fire", () => {
    const { body, name } = dashboards[0] as (typeof dashboards)[number];
    expect(body.start).toBe("-P14D");
    expect(body.periodOverride).toBe("inherit");
    // Dashboards are global to the account: the region keeps two regions' deployments apart.
    expect(JSON.stringify(name)).toContain("AWS::Region");
    const alarmWidgets = body.widgets.filter((w) => w.type === "alarm");
    // Three flows, inconclusive verifications, a backup too large to verify, the probe, the dead letters, and two per database: 11 alarms, one widget.
    expect(alarmWidgets.map((w) => [(w.properties.alarms as string[]).length, w.properties.states])).toEqual([
      [11, ["ALARM"]],
    ]);
    expectWithinLimits(body, (dashboards[0] as (typeof dashboards)[number]).templateBytes);
  });
});

describe("the dashboard at scale", () => {
  it("fits 200 databases on one dashboard within CloudWatch's limits, every database in one row", () => {
    const config = parseConfig(generatedConfig(200), "200 databases");
    const ids = config.databases.map((d) => d.id);
    const { stack, alarmCount } = dashboardStack(ids);
    expect(alarmCount).toBe(407);
    const dashboards = dashboardsOf(resourcesOf(stack));
    expect(dashboards).toHaveLength(1);
    const { body, templateBytes } = dashboards[0] as (typeof dashboards)[number];
    expectWithinLimits(body, templateBytes);
    const shown = body.widgets
      .flatMap(entriesOf)
      .filter((e) => !isExpression(e))
      .map((e) => metricOf(e).dimensions.DatabaseId);
    expect(new Set(shown)).toEqual(new Set(ids));
    // One row a database: every row's widgets and metrics as Dashboard.ROW counts them.
    expect(body.widgets.filter((w) => String(w.properties.title).startsWith("db-137"))).toHaveLength(
      Dashboard.ROW.widgets,
    );
    expect(body.widgets.length).toBe(1 + 5 + 200 * Dashboard.ROW.widgets);
    expect(body.widgets.flatMap(entriesOf).length).toBe(200 * Dashboard.ROW.metrics);
  });

  it("splits databases evenly over several dashboards once one would pass a limit, each within them all", () => {
    const ids = Array.from({ length: 600 }, (_, i) => `db-${i + 1}`);
    const { stack } = dashboardStack(ids, { importAlarms: true });
    const capacity = Dashboard.capacity(2, 7);
    // docs/operations.md's figure: 2 widgets a row, the header, and 5 alarm widgets for 499 alarms.
    expect(capacity).toBe(246);
    expect(capacity).toBeLessThan(600 / 2);
    const dashboards = dashboardsOf(resourcesOf(stack));
    expect(dashboards).toHaveLength(Math.ceil(600 / capacity));
    const perPage = dashboards.map(
      ({ body }) =>
        new Set(
          body.widgets
            .flatMap(entriesOf)
            .filter((e) => !isExpression(e))
            .map((e) => metricOf(e).dimensions.DatabaseId),
        ),
    );
    expect(perPage.map((s) => s.size)).toEqual([200, 200, 200]);
    expect(new Set(perPage.flatMap((s) => [...s]))).toEqual(new Set(ids));
    for (const d of dashboards) {
      expectWithinLimits(d.body, d.templateBytes);
      // The deployment's seven alarms on every page, and only the page's own databases' two each.
      const arns = d.body.widgets.filter((w) => w.type === "alarm").flatMap((w) => w.properties.alarms as string[]);
      expect(arns).toHaveLength(7 + 2 * 200);
    }
    expect(dashboards.map((d) => JSON.stringify(d.name))).toEqual([
      expect.stringContaining("-1of3"),
      expect.stringContaining("-2of3"),
      expect.stringContaining("-3of3"),
    ]);
  });

  it("shows a walArchiving database's point-in-time facts in its row (archive age, base age, PITR ready), and still fits CloudWatch's limits when every row has them", () => {
    const ids = Array.from({ length: 400 }, (_, i) => `db-${i + 1}`);
    const { stack } = dashboardStack(ids, { importAlarms: true, pitr: ids.slice(1) });
    const dashboards = dashboardsOf(resourcesOf(stack));
    const metrics = dashboards.flatMap((d) =>
      d.body.widgets
        .flatMap(entriesOf)
        .filter((e) => !isExpression(e))
        .map(metricOf),
    );
    const namesOf = (db: string) => new Set(metrics.filter((m) => m.dimensions.DatabaseId === db).map((m) => m.name));
    const pitrFacts = [emitted.WAL_ARCHIVE_AGE_MINUTES, emitted.NEWEST_BASE_AGE_HOURS, emitted.PITR_READY];
    for (const name of pitrFacts) {
      expect(namesOf("db-2").has(name), name).toBe(true);
      expect(namesOf("db-1").has(name), name).toBe(false);
    }
    const emittedByFunctions = emittedNames();
    for (const name of new Set(metrics.map((m) => m.name))) expect(emittedByFunctions, name).toContain(name);
    // Twelve metrics a row: fewer rows fit a page than with nine.
    const capacity = Dashboard.capacity(2, 7, Dashboard.ROW.metrics + Dashboard.ROW.pitrMetrics);
    expect(capacity).toBeLessThan(Dashboard.capacity(2, 7));
    expect(dashboards).toHaveLength(Math.ceil(400 / capacity));
    for (const d of dashboards) expectWithinLimits(d.body, d.templateBytes);
  });

  it("refuses databasesPerDashboard outside 1 to what the limits allow, naming the prop", () => {
    expect(() => dashboardStack(["a"], { databasesPerDashboard: 0 })).toThrow(
      /databasesPerDashboard must be a whole number from 1 to \d+/,
    );
    expect(() => dashboardStack(["a"], { databasesPerDashboard: 1000 })).toThrow(/databasesPerDashboard/);
  });
});
