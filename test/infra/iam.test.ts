import * as path from "node:path";
import { runSimulation } from "@cloud-copilot/iam-simulate";
import { beforeAll, describe, expect, it } from "vitest";
import type { CfnTemplate, LocalNames } from "../../infra/sim/template.ts";
import { ACCOUNT, roleArn, roleKey, rolePolicies, type Synthesized, synthesizeAll } from "../helpers/synth.ts";

/**
 * What the synthesized roles may do, decided by IAM's own evaluation rules
 * (@cloud-copilot/iam-simulate over the template's policies, names resolved as the sim
 * resolves them), not by reading our resource strings.
 */
const root = path.resolve(import.meta.dirname, "../..");
let synth: Synthesized;
let names: LocalNames;
let template: CfnTemplate;
let bucket: string;

beforeAll(() => {
  synth = synthesizeAll(path.join(root, "strongroom.config.example.json"));
  template = synth.parent;
  names = synth.stacks[0] as LocalNames;
  const [created] = names.resourcesOf("AWS::S3::Bucket");
  bucket = names.getAtt(created?.id as string, "Arn").replace("arn:aws:s3:::", "");
});

/** The identity policies of the one role whose logical id (in its stack) starts with `rolePrefix`. */
function policiesOf(rolePrefix: string): Array<{ name: string; policy: unknown }> {
  return rolePolicies(synth, roleKey(synth, rolePrefix));
}

/** The bucket's own policy, as the template gives it. */
function bucketPolicy(): unknown {
  const [policy] = names.resourcesOf("AWS::S3::BucketPolicy");
  return policy?.properties.PolicyDocument;
}

async function decide(
  rolePrefix: string,
  action: string,
  key: string,
  options: { context?: Record<string, string>; identityPolicies?: Array<{ name: string; policy: unknown }> } = {},
): Promise<string> {
  const out = await runSimulation(
    {
      request: {
        principal: options.identityPolicies
          ? `arn:aws:iam::${ACCOUNT}:role/${rolePrefix}`
          : roleArn(synth, roleKey(synth, rolePrefix)),
        action,
        resource: { resource: `arn:aws:s3:::${bucket}/${key}`, accountId: ACCOUNT },
        // Requests over TLS, as the SDK makes them (the bucket policy denies any other).
        contextVariables: { "aws:SecureTransport": "true", ...options.context },
      },
      identityPolicies: options.identityPolicies ?? policiesOf(rolePrefix),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      resourcePolicy: bucketPolicy(),
    },
    {},
  );
  if (out.resultType === "error") throw new Error(JSON.stringify(out.errors));
  return out.overallResult;
}

describe("what the task roles may write, as IAM evaluates it", () => {
  const backup = "pg/shop/backups/20261201T020000Z-abcdef/dump.pgc.zst.age";
  const manifest = "pg/shop/backups/20261201T020000Z-abcdef/manifest.json";
  const summary = "pg/shop/verifications/20261201T020000Z-abcdef/20261201T030000000Z-abcdef.json";

  it("lets the backup task put backups, and nothing else: no verification result, audit row or probe object", async () => {
    const role = "BackupTaskRoleshop";
    const ifNoneMatch = { context: { "s3:if-none-match": "*" } };
    expect(await decide(role, "s3:PutObject", backup)).toBe("Allowed");
    expect(await decide(role, "s3:PutObject", manifest, ifNoneMatch)).toBe("Allowed");
    // A manifest only where none is: without the header, or with another value than `*`, never.
    expect(await decide(role, "s3:PutObject", manifest)).toBe("ExplicitlyDenied");
    expect(await decide(role, "s3:PutObject", manifest, { context: { "s3:if-none-match": '"0123"' } })).toBe(
      "ExplicitlyDenied",
    );
    expect(await decide(role, "s3:PutObject", summary)).toBe("ImplicitlyDenied");
    expect(await decide(role, "s3:PutObject", "pg/.strongroom/audit/db-shop/000000000009.json")).toBe(
      "ImplicitlyDenied",
    );
    expect(await decide(role, "s3:DeleteObject", backup)).toBe("ImplicitlyDenied");
  });

  it("keeps each database's backup task to its own prefix: it cannot put, read or list another database's backups", async () => {
    const billing = "pg/billing/backups/20261201T020000Z-abcdef/dump.pgc.zst.age";
    const ifNoneMatch = { context: { "s3:if-none-match": "*" } };
    expect(await decide("BackupTaskRoleshop", "s3:PutObject", billing)).toBe("ImplicitlyDenied");
    expect(
      await decide(
        "BackupTaskRoleshop",
        "s3:PutObject",
        billing.replace("dump.pgc.zst.age", "manifest.json"),
        ifNoneMatch,
      ),
    ).toBe("ImplicitlyDenied");
    expect(await decide("BackupTaskRoleshop", "s3:GetObject", billing)).toBe("ImplicitlyDenied");
    // A prefix that merely starts with the id is another database's.
    expect(await decide("BackupTaskRoleshop", "s3:PutObject", "pg/shop2/backups/x/dump.pgc.zst.age")).toBe(
      "ImplicitlyDenied",
    );
    expect(await decide("BackupTaskRolebilling", "s3:PutObject", billing)).toBe("Allowed");
    expect(await decide("BackupTaskRolebilling", "s3:PutObject", backup)).toBe("ImplicitlyDenied");
  });

  it("lets nobody put a manifest without If-None-Match, so a committed one is never overwritten: not the backup task, not an admin", async () => {
    expect(await decide("BackupTaskRoleshop", "s3:PutObject", manifest)).toBe("ExplicitlyDenied");
    const admin = [
      {
        name: "admin",
        policy: { Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "s3:*", Resource: "*" }] },
      },
    ];
    expect(await decide("SomeAdmin", "s3:PutObject", manifest, { identityPolicies: admin })).toBe("ExplicitlyDenied");
    expect(
      await decide("SomeAdmin", "s3:PutObject", manifest, {
        identityPolicies: admin,
        context: { "s3:if-none-match": "*" },
      }),
    ).toBe("Allowed");
    expect(await decide("SomeAdmin", "s3:PutObject", backup, { identityPolicies: admin })).toBe("Allowed");
  });

  it("lets a database's verify task put its verification results, never another database's, and never a backup", async () => {
    const role = "VerifyTaskRoleshop";
    expect(await decide(role, "s3:PutObject", summary)).toBe("Allowed");
    expect(await decide(role, "s3:PutObject", summary.replace("pg/shop/", "pg/billing/"))).toBe("ImplicitlyDenied");
    expect(await decide(role, "s3:GetObject", backup.replace("pg/shop/", "pg/billing/"))).toBe("ImplicitlyDenied");
    expect(await decide(role, "s3:DeleteObject", backup)).toBe("ImplicitlyDenied");
    expect(await decide(role, "s3:PutObject", manifest, { context: { "s3:if-none-match": "*" } })).toBe(
      "ImplicitlyDenied",
    );
  });

  it("lets the restore task write nothing", async () => {
    const role = "WorkerRestoreTaskRole";
    expect(await decide(role, "s3:PutObject", manifest, { context: { "s3:if-none-match": "*" } })).toBe(
      "ImplicitlyDenied",
    );
    expect(await decide(role, "s3:PutObject", summary)).toBe("ImplicitlyDenied");
    expect(await decide(role, "s3:GetObject", backup)).toBe("Allowed");
  });
});

describe("what anyone may do to the audit table, as IAM evaluates it with the table's own policy", () => {
  const admin = [
    {
      name: "admin",
      policy: { Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "dynamodb:*", Resource: "*" }] },
    },
  ];

  async function onAudit(action: string): Promise<string> {
    const [audit] = names.resourcesOf("AWS::DynamoDB::GlobalTable").filter((t) => t.id.startsWith("TablesAudit"));
    const replicas = audit?.properties.Replicas as Array<{ ResourcePolicy?: { PolicyDocument: unknown } }>;
    const table = names.getAtt(audit?.id as string, "Arn");
    const out = await runSimulation(
      {
        request: {
          principal: `arn:aws:iam::${ACCOUNT}:role/SomeAdmin`,
          action,
          resource: { resource: table, accountId: ACCOUNT },
          contextVariables: {},
        },
        identityPolicies: admin,
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        resourcePolicy: replicas[0]?.ResourcePolicy?.PolicyDocument,
      },
      {},
    );
    if (out.resultType === "error") throw new Error(JSON.stringify(out.errors));
    return out.overallResult;
  }

  it("lets nobody update, delete or batch-write over a row, even with dynamodb:*; rows are only put and read", async () => {
    for (const action of [
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:BatchWriteItem",
      "dynamodb:PartiQLDelete",
    ]) {
      expect(await onAudit(action), action).toBe("ExplicitlyDenied");
    }
    for (const action of ["dynamodb:PutItem", "dynamodb:Query", "dynamodb:GetItem"]) {
      expect(await onAudit(action), action).toBe("Allowed");
    }
  });
});

describe("who may publish to the alarm topic, as SNS evaluates its policy", () => {
  it("lets every alarm in the template publish to the topic its action names (a topic policy replaces SNS's default one)", async () => {
    const [topic] = names.resourcesOf("AWS::SNS::Topic");
    const topicArn = names.getAtt(topic?.id as string, "Arn");
    const [policy] = names.resourcesOf("AWS::SNS::TopicPolicy");
    // Every stack's: each database's alarms are in its nested stack.
    const alarms = synth.stacks.flatMap((n) => n.resourcesOf("AWS::CloudWatch::Alarm").map((a) => ({ ...a, n })));
    // seven deployment alarms (three flows, inconclusive, storage exceeded, probe, dead letters) and two per database
    expect(alarms.length).toBe(7 + 2 * 2);
    for (const alarm of alarms) {
      expect(alarm.properties.AlarmActions).toEqual([topicArn]);
      const out = await runSimulation(
        {
          request: {
            principal: "cloudwatch.amazonaws.com",
            action: "sns:Publish",
            resource: { resource: topicArn, accountId: ACCOUNT },
            contextVariables: {
              "aws:SecureTransport": "true",
              "aws:SourceAccount": ACCOUNT,
              "aws:SourceArn": `arn:aws:cloudwatch:eu-central-1:${ACCOUNT}:alarm:${alarm.n.physicalName(alarm.id)}`,
            },
          },
          identityPolicies: [],
          serviceControlPolicies: [],
          resourceControlPolicies: [],
          resourcePolicy: policy?.properties.PolicyDocument,
        },
        {},
      );
      if (out.resultType === "error") throw new Error(JSON.stringify(out.errors));
      expect(out.overallResult, alarm.id).toBe("Allowed");
    }
  });
});

describe("what the flows may ask of ECS and IAM, as IAM evaluates it", () => {
  /** The state machine role of a flow, its policies resolved. */
  function flowRole(flow: string): { arn: string; policies: Array<{ name: string; policy: unknown }> } {
    const key = roleKey(synth, `${flow}StateMachineRole`);
    return { arn: roleArn(synth, key), policies: rolePolicies(synth, key) };
  }

  async function asFlow(flow: string, action: string, resource: string, context: Record<string, string>) {
    const role = flowRole(flow);
    const out = await runSimulation(
      {
        request: {
          principal: role.arn,
          action,
          resource: { resource, accountId: ACCOUNT },
          contextVariables: context,
        },
        identityPolicies: role.policies,
        serviceControlPolicies: [],
        resourceControlPolicies: [],
      },
      {},
    );
    if (out.resultType === "error") throw new Error(JSON.stringify(out.errors));
    return out.overallResult;
  }

  it("lets each flow tag the task its RunTask creates (PropagateTags needs ecs:TagResource), and tag nothing else", async () => {
    const [cluster] = names.resourcesOf("AWS::ECS::Cluster");
    const task = `arn:aws:ecs:eu-central-1:${ACCOUNT}:task/${names.ref(cluster?.id as string)}/0123456789abcdef`;
    for (const flow of ["BackupFlow", "RestoreFlow", "VerifyFlow"]) {
      expect(await asFlow(flow, "ecs:TagResource", task, { "ecs:CreateAction": "RunTask" }), flow).toBe("Allowed");
      expect(await asFlow(flow, "ecs:TagResource", task, {}), flow).toBe("ImplicitlyDenied");
    }
  });

  it("lets a flow pass its tasks' roles to ECS tasks only", async () => {
    const arn = roleArn(synth, roleKey(synth, "BackupTaskRoleshop"));
    expect(await asFlow("BackupFlow", "iam:PassRole", arn, { "iam:PassedToService": "ecs-tasks.amazonaws.com" })).toBe(
      "Allowed",
    );
    expect(await asFlow("BackupFlow", "iam:PassRole", arn, { "iam:PassedToService": "lambda.amazonaws.com" })).toBe(
      "ImplicitlyDenied",
    );
  });

  it("lets only VerifyFlow pass ECS's volume role, and only to ECS itself: no task can be given it", async () => {
    const arn = roleArn(synth, roleKey(synth, "WorkerVerifyVolumeRole"));
    const toEcs = { "iam:PassedToService": "ecs.amazonaws.com" };
    expect(await asFlow("VerifyFlow", "iam:PassRole", arn, toEcs)).toBe("Allowed");
    expect(await asFlow("VerifyFlow", "iam:PassRole", arn, { "iam:PassedToService": "ecs-tasks.amazonaws.com" })).toBe(
      "ImplicitlyDenied",
    );
    for (const flow of ["BackupFlow", "RestoreFlow"]) {
      expect(await asFlow(flow, "iam:PassRole", arn, toEcs), flow).toBe("ImplicitlyDenied");
    }
  });

  it("lets each flow run and pass only its own duty's task definitions and roles: BackupFlow never starts a task that holds the identity", async () => {
    const ecs = { "iam:PassedToService": "ecs-tasks.amazonaws.com" };
    const definitions = synth.stacks.flatMap((n) =>
      n.resourcesOf("AWS::ECS::TaskDefinition").map((d) => ({
        family: String(d.properties.Family),
        arn: n.ref(d.id),
        roles: [String(d.properties.TaskRoleArn), String(d.properties.ExecutionRoleArn)],
      })),
    );
    expect(definitions.length).toBe(9);
    const duty = (family: string) => family.split("_")[1] as string;
    const may: Record<string, string[]> = {
      BackupFlow: ["backup"],
      RestoreFlow: ["restore", "target"],
      VerifyFlow: ["verify", "verify-ebs"],
    };
    for (const [flow, duties] of Object.entries(may)) {
      for (const d of definitions) {
        const expected = duties.includes(duty(d.family)) ? "Allowed" : "ImplicitlyDenied";
        expect(await asFlow(flow, "ecs:RunTask", d.arn, {}), `${flow} runs ${d.family}`).toBe(expected);
        for (const role of d.roles) {
          expect(await asFlow(flow, "iam:PassRole", role, ecs), `${flow} passes ${role}`).toBe(expected);
        }
      }
    }
  });
});

describe("what the functions may log, as IAM evaluates it", () => {
  it("gives each function its own role, no managed policy, and writing to the functions' log group only", async () => {
    const roles = Object.keys(template.Resources).filter(
      (id) => id.startsWith("Handlers") && template.Resources[id]?.Type === "AWS::IAM::Role",
    );
    expect(roles.length).toBeGreaterThanOrEqual(9);
    const groupName = (prefix: string) => {
      const [id] = Object.keys(template.Resources).filter(
        (r) => r.startsWith(prefix) && template.Resources[r]?.Type === "AWS::Logs::LogGroup",
      );
      return names.physicalName(id as string);
    };
    const stream = (group: string) =>
      `arn:aws:logs:eu-central-1:${ACCOUNT}:log-group:${group}:log-stream:2026/12/02/abc`;
    for (const role of roles) {
      expect(
        (template.Resources[role]?.Properties as { ManagedPolicyArns?: unknown } | undefined)?.ManagedPolicyArns,
        role,
      ).toBeUndefined();
      const decideLogs = async (resource: string) => {
        const out = await runSimulation(
          {
            request: {
              principal: roleArn(synth, role),
              action: "logs:PutLogEvents",
              resource: { resource, accountId: ACCOUNT },
              contextVariables: {},
            },
            identityPolicies: rolePolicies(synth, role),
            serviceControlPolicies: [],
            resourceControlPolicies: [],
          },
          {},
        );
        if (out.resultType === "error") throw new Error(JSON.stringify(out.errors));
        return out.overallResult;
      };
      expect(await decideLogs(stream(groupName("HandlersLogs"))), role).toBe("Allowed");
      expect(await decideLogs(stream(groupName("WorkerLogs"))), role).toBe("ImplicitlyDenied");
    }
  });
});
