import * as path from "node:path";
import { Template } from "aws-cdk-lib/assertions";
import { beforeAll, describe, expect, it } from "vitest";
import { RDS_CA_BUNDLE_PATH } from "../../infra/constructs/tls.ts";
import type { LocalNames } from "../../infra/sim/template.ts";
import { roleKey, rolePolicies, type Synthesized, synthesizeAll } from "../helpers/synth.ts";

/**
 * The security properties of the synthesized template, from the example config, the
 * nested stacks' resources included. Asset bundling is skipped (the cdk.json test in
 * app.test.ts bundles for real); cdk-nag runs.
 */
const root = path.resolve(import.meta.dirname, "../..");
type Resource = { Type: string; Properties: Record<string, unknown>; DeletionPolicy?: string };
type Statement = { Effect: string; Action: string | string[]; Resource: unknown };

let template: Template;
let resources: Record<string, Resource>;
let synth: Synthesized;

beforeAll(() => {
  synth = synthesizeAll(path.join(root, "strongroom.config.example.json"));
  template = Template.fromJSON(synth.parent);
  resources = synth.resources as Record<string, Resource>;
});

const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
const actions = (s: Statement) => (Array.isArray(s.Action) ? s.Action : [s.Action]);
const json = (v: unknown) => JSON.stringify(v);

/** Every statement of every policy of the role with this key (inline, or attached in its stack). */
function statementsOf(key: string): Statement[] {
  return rolePolicies(synth, key).flatMap((p) => p.policy.Statement as Statement[]);
}

const roleIdOf = (prefix: string) => roleKey(synth, prefix);

const identityArn = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:strongroom/identity-AbCdEf";

describe("the synthesized template", () => {
  it("lets each database's backup task put objects but never delete them, nor read the identity", () => {
    for (const db of ["shop", "billing"]) {
      const s = statementsOf(roleIdOf(`BackupTaskRole${db}`));
      const all = s.flatMap(actions);
      expect(all).toEqual(expect.arrayContaining(["s3:PutObject", "s3:AbortMultipartUpload"]));
      expect(all.filter((a) => /Delete|secretsmanager|\*/.test(a))).toEqual([]);
    }
  });

  it("lets the restore task read backups but never write or delete them", () => {
    const all = statementsOf(roleIdOf("WorkerRestoreTaskRole")).flatMap(actions);
    expect(all).toContain("s3:GetObject");
    expect(all.filter((a) => /Put|Delete|Abort|\*/.test(a))).toEqual([]);
  });

  it("gives the identity secret only to restore and verify task definitions' execution roles", () => {
    const readers = ofType("AWS::IAM::Role")
      .filter(([key]) => json(rolePolicies(synth, key)).includes(identityArn))
      .map(([key]) => synth.localId(key));
    // Each group's restore execution role, the restore targets' and the verify tasks' one.
    expect(readers.length).toBe(synth.nested.size + 2);
    for (const id of readers) expect(id).toMatch(/^(Worker)?(Restore|RestoreTarget|Verify)ExecutionRole/);
    // And every task definition that gets it as a secret is a restore or verify one, run by such a role.
    for (const [key, def] of ofType("AWS::ECS::TaskDefinition")) {
      const secrets = (def.Properties.ContainerDefinitions as Array<{ Secrets: Array<{ Name: string }> }>)[0]?.Secrets;
      if (!secrets?.some((x) => x.Name === "STRONGROOM_IDENTITY")) continue;
      expect(synth.localId(key)).toMatch(/^(Worker)?(RestoreTask|RestoreTarget|VerifyTask|VerifyVolumeTask)/);
    }
  });

  it("lets each database's verify task read its backups and put only its verification results, never delete", () => {
    const s = statementsOf(roleIdOf("VerifyTaskRoleshop"));
    const all = s.flatMap(actions);
    expect(all.filter((a) => /Delete|Abort|\*/.test(a))).toEqual([]);
    const puts = s.filter((st) => actions(st).includes("s3:PutObject"));
    expect(puts).toHaveLength(1);
    expect(json(puts[0]?.Resource)).toContain("/pg/shop/verifications/*");
  });

  it("lets a verify task out on HTTPS only (code from a backup runs in it); backup and restore tasks reach their databases", () => {
    const names = synth.stacks[0] as LocalNames;
    const groupsOf = (flow: string): string[] => {
      const [machine] = names.resourcesOf("AWS::StepFunctions::StateMachine").filter((m) => m.id.startsWith(flow));
      const definition = JSON.parse(machine?.properties.DefinitionString as string) as {
        States: Record<string, { Resource?: string; Parameters?: Record<string, unknown> }>;
      };
      const task = Object.values(definition.States).find((st) => String(st.Resource).endsWith("ecs:runTask.sync"));
      const network = task?.Parameters?.NetworkConfiguration as
        | { AwsvpcConfiguration: { SecurityGroups: string[] } }
        | undefined;
      return network?.AwsvpcConfiguration.SecurityGroups ?? [];
    };
    const egressOf = (group: string) => {
      const id = group.replace(/^sg-/, "");
      return (resources[id]?.Properties.SecurityGroupEgress ?? []) as Array<Record<string, unknown>>;
    };
    const [verify] = groupsOf("VerifyFlow");
    expect(egressOf(verify as string)).toEqual([
      expect.objectContaining({ IpProtocol: "tcp", FromPort: 443, ToPort: 443, CidrIp: "0.0.0.0/0" }),
    ]);
    for (const flow of ["BackupFlow", "RestoreFlow"]) {
      const [group] = groupsOf(flow);
      expect(group).not.toBe(verify);
      expect(egressOf(group as string)).toEqual([expect.objectContaining({ IpProtocol: "-1" })]);
    }
  });

  it("sizes only the verify task's ephemeral storage per run, from the plan, and keeps every other task at its definition's", () => {
    const names = synth.stacks[0] as LocalNames;
    for (const machine of names.resourcesOf("AWS::StepFunctions::StateMachine")) {
      const definition = JSON.parse(machine.properties.DefinitionString as string) as {
        States: Record<string, { Resource?: string; Parameters?: { Overrides?: Record<string, unknown> } }>;
      };
      for (const task of Object.values(definition.States).filter((st) =>
        String(st.Resource).endsWith("ecs:runTask.sync"),
      )) {
        const storage = task.Parameters?.Overrides?.EphemeralStorage;
        if (machine.id.startsWith("VerifyFlow")) {
          expect(storage, machine.id).toEqual({ "SizeInGiB.$": "$.plan.ephemeralStorageGiB" });
        } else expect(storage, machine.id).toBeUndefined();
      }
    }
  });

  it("gives a verify run that ephemeral storage cannot hold an EBS volume, sized by the plan, created by ECS with a role only ECS may assume, and mounted where the verify task puts its cluster", () => {
    const names = synth.stacks[0] as LocalNames;
    const [machine] = names
      .resourcesOf("AWS::StepFunctions::StateMachine")
      .filter((m) => m.id.startsWith("VerifyFlow"));
    const definition = JSON.parse(machine?.properties.DefinitionString as string) as {
      States: Record<
        string,
        {
          Type: string;
          Choices?: Array<{ Variable: string; StringEquals: string; Next: string }>;
          Default?: string;
          Parameters?: Record<string, unknown>;
        }
      >;
    };
    const choice = definition.States["Storage?"];
    expect(choice?.Choices).toEqual([
      { Variable: "$.plan.storage", StringEquals: "ebs", Next: "Run verify task on a volume" },
    ]);
    expect(choice?.Default).toBe("Run verify task");
    expect(definition.States["Run verify task"]?.Parameters?.VolumeConfigurations).toBeUndefined();
    const volumes = (definition.States["Run verify task on a volume"]?.Parameters?.VolumeConfigurations ??
      []) as Array<{
      Name: string;
      ManagedEBSVolume: Record<string, unknown>;
    }>;
    expect(volumes).toHaveLength(1);
    const [volume] = volumes;
    expect(volume).toMatchObject({
      Name: "launch-volume",
      ManagedEBSVolume: { "SizeInGiB.$": "$.plan.volumeGiB", VolumeType: "gp3", Encrypted: true },
    });
    // gp3's free baseline: Fargate caps a task's EBS throughput by its size, so none is bought;
    // the account's default EBS key unless the config names one (ebsKmsKeyArn).
    expect(volume?.ManagedEBSVolume).not.toHaveProperty("Throughput");
    expect(volume?.ManagedEBSVolume).not.toHaveProperty("KmsKeyId");
    // The role ECS assumes to create and delete it: only ECS itself may, with ECS's policy for volumes.
    const roleId = names
      .resourcesOf("AWS::IAM::Role")
      .map((r) => r.id)
      .find((id) => id.startsWith("WorkerVerifyVolumeRole")) as string;
    expect(volume?.ManagedEBSVolume.RoleArn).toBe(names.getAtt(roleId, "Arn"));
    const role = resources[roleId]?.Properties as {
      AssumeRolePolicyDocument: { Statement: Array<{ Principal: unknown; Action: string }> };
      ManagedPolicyArns: unknown[];
    };
    expect(role.AssumeRolePolicyDocument.Statement).toEqual([
      expect.objectContaining({ Action: "sts:AssumeRole", Principal: { Service: "ecs.amazonaws.com" } }),
    ]);
    expect(JSON.stringify(role.ManagedPolicyArns)).toContain(
      "service-role/AmazonECSInfrastructureRolePolicyForVolumes",
    );
    // Each database's volume task definition configures exactly that volume at launch, at
    // /mnt, and its worker puts the scratch cluster there.
    const volumeTasks = ofType("AWS::ECS::TaskDefinition").filter(([id]) =>
      synth.localId(id).startsWith("VerifyVolumeTask"),
    );
    expect(volumeTasks.length).toBe(2);
    for (const [, def] of volumeTasks) {
      expect(def.Properties.Volumes).toEqual([
        { Name: "scratch" },
        { Name: "launch-volume", ConfiguredAtLaunch: true },
      ]);
      const [container] = def.Properties.ContainerDefinitions as Array<{
        Environment: Array<{ Name: string; Value: unknown }>;
      }>;
      expect(container?.Environment).toContainEqual({ Name: "STRONGROOM_SCRATCH_DIR", Value: "/mnt" });
    }
  });

  it("retries a RunTask that ECS could not place (AmazonECS.Unknown, as Step Functions reports it) and never a task that ran and failed", () => {
    const names = synth.stacks[0] as LocalNames;
    for (const machine of names.resourcesOf("AWS::StepFunctions::StateMachine")) {
      const definition = JSON.parse(machine.properties.DefinitionString as string) as {
        States: Record<string, { Resource?: string; Retry?: Array<{ ErrorEquals: string[] }> }>;
      };
      const task = Object.values(definition.States).find((st) => String(st.Resource).endsWith("ecs:runTask.sync"));
      if (!task) continue;
      const retried = (task.Retry ?? []).flatMap((r) => r.ErrorEquals);
      expect(retried, machine.id).toEqual(expect.arrayContaining(["AmazonECS.Unknown", "ECS.AmazonECSException"]));
      expect(retried, machine.id).not.toContain("States.TaskFailed");
      expect(retried, machine.id).not.toContain("States.ALL");
    }
  });

  it("retries a throttled Lambda call in every flow, and logs every flow under /aws/vendedlogs/", () => {
    const names = synth.stacks[0] as LocalNames;
    for (const machine of names.resourcesOf("AWS::StepFunctions::StateMachine")) {
      const definition = JSON.parse(machine.properties.DefinitionString as string) as {
        States: Record<string, { Resource?: string; Retry?: Array<{ ErrorEquals: string[] }> }>;
      };
      for (const [name, state] of Object.entries(definition.States)) {
        if (!String(state.Resource).endsWith(":lambda:invoke")) continue;
        const retried = (state.Retry ?? []).flatMap((r) => r.ErrorEquals);
        expect(retried, `${machine.id} ${name}`).toContain("Lambda.TooManyRequestsException");
      }
      const logging = machine.properties.LoggingConfiguration as {
        Destinations: Array<{ CloudWatchLogsLogGroup: { LogGroupArn: string } }>;
      };
      const arn = logging.Destinations[0]?.CloudWatchLogsLogGroup.LogGroupArn ?? "";
      const groupId = Object.keys(resources).find(
        (id) => arn.includes(id) && resources[id]?.Type === "AWS::Logs::LogGroup",
      );
      expect(String(resources[groupId as string]?.Properties.LogGroupName), machine.id).toMatch(
        /^\/aws\/vendedlogs\/states\//,
      );
    }
  });

  it("alarms when a schedule's start lands in its dead-letter queue (a backup that never began)", () => {
    const queues = ofType("AWS::SQS::Queue").map(([id]) => id);
    const scheduled = ofType("AWS::Scheduler::Schedule").map(([, s]) => json(s.Properties.Target));
    for (const queue of queues.filter((q) => scheduled.some((t) => t.includes(q)))) {
      const watching = ofType("AWS::CloudWatch::Alarm").filter(([, a]) =>
        json(a.Properties.Dimensions).includes(queue),
      );
      expect(watching.length, `an alarm on ${queue}`).toBe(1);
      const [, alarm] = watching[0] as [string, Resource];
      expect(alarm.Properties).toMatchObject({ MetricName: "ApproximateNumberOfMessagesVisible", Threshold: 1 });
      expect(json(alarm.Properties.AlarmActions)).toContain("AlarmsTopic");
    }
  });

  it("runs the verify worker as root, so the scratch server it starts runs as postgres and cannot read the worker's environment; other tasks as the image's user", () => {
    // The rule this rests on, proven in test/integration/dump-code-isolation.test.ts: the
    // worker isolates its scratch server (another OS user, an allowlisted environment) only
    // when it runs as root; as the image's `node` user the server shares its uid, and
    // /proc/<worker>/environ with it.
    for (const [id, def] of ofType("AWS::ECS::TaskDefinition")) {
      const [container] = def.Properties.ContainerDefinitions as Array<{ User?: string }>;
      expect(container?.User, id).toBe(/^Verify(Volume)?Task/.test(synth.localId(id)) ? "0" : undefined);
    }
  });

  it("puts database credentials in task definition secrets, never in the plain environment; verify gets none", () => {
    // two databases' backup, restore, verify and verify-on-a-volume tasks, and a restore target's
    expect(ofType("AWS::ECS::TaskDefinition").length).toBe(9);
    for (const [id, def] of ofType("AWS::ECS::TaskDefinition")) {
      const [container] = def.Properties.ContainerDefinitions as Array<{
        Environment: Array<{ Name: string; Value: unknown }>;
        Secrets: Array<{ Name: string }>;
        ReadonlyRootFilesystem: boolean;
        MountPoints: Array<{ ContainerPath: string }>;
      }>;
      if (/^Verify(Volume)?Task/.test(synth.localId(id))) {
        // It restores into a cluster inside the task: the identity, and no database's credentials.
        expect(container?.Secrets.map((s) => s.Name)).toEqual(["STRONGROOM_IDENTITY"]);
      } else {
        expect(container?.Secrets.map((s) => s.Name)).toEqual(expect.arrayContaining(["PGUSER", "PGPASSWORD"]));
        // Host, port and database name: each exactly once, from the config or (where it says so) the secret.
        const everything = [
          ...(container?.Secrets ?? []).map((s) => s.Name),
          ...(container?.Environment ?? []).map((e) => e.Name),
        ];
        // Deployed, the server is authenticated: verify-full against the RDS bundle the image holds.
        const environment = Object.fromEntries((container?.Environment ?? []).map((e) => [e.Name, e.Value]));
        expect(environment, id).toMatchObject({ PGSSLMODE: "verify-full", PGSSLROOTCERT: RDS_CA_BUNDLE_PATH });
        for (const v of ["PGHOST", "PGPORT", "PGDATABASE"])
          expect(
            everything.filter((n) => n === v),
            id,
          ).toHaveLength(1);
      }
      expect(container?.Environment.map((e) => e.Name).filter((n) => /PASS|IDENTITY$|SECRET/.test(n))).toEqual([]);
      expect(container?.ReadonlyRootFilesystem).toBe(true);
      expect(container?.MountPoints).toEqual([
        expect.objectContaining({ ContainerPath: "/tmp" }),
        // The verify task on a volume: its EBS volume, where its scratch cluster goes.
        ...(synth.localId(id).startsWith("VerifyVolumeTask")
          ? [expect.objectContaining({ ContainerPath: "/mnt", SourceVolume: "launch-volume" })]
          : []),
      ]);
      expect(def.Properties.RuntimePlatform).toEqual({ CpuArchitecture: "ARM64", OperatingSystemFamily: "LINUX" });
      expect(def.Properties.RequiresCompatibilities).toEqual(["FARGATE"]);
    }
  });

  it("connects each restore with the database's restore secret and each backup with its backup secret (item 8: a read-only backup role cannot CREATE DATABASE)", () => {
    const secretOf = (prefix: string) => {
      const [key] = ofType("AWS::ECS::TaskDefinition").filter(([k]) => synth.localId(k).startsWith(prefix));
      const def = synth.namesOf(key?.[0] as string).resolve(key?.[1].Properties) as {
        ContainerDefinitions: Array<{ Secrets: Array<{ Name: string; ValueFrom: string }> }>;
      };
      return def.ContainerDefinitions[0]?.Secrets.find((x) => x.Name === "PGPASSWORD")?.ValueFrom ?? "";
    };
    expect(secretOf("RestoreTaskshop")).toContain(":secret:rds/shop-restore-Uv7wX8:password::");
    expect(secretOf("BackupTaskshop")).toContain(":secret:rds/shop-Gh1jK2:password::");
  });

  it("runs every Lambda on Node 22, ARM64", () => {
    const fns = ofType("AWS::Lambda::Function");
    expect(fns.length).toBe(9);
    for (const [, f] of fns) {
      expect(f.Properties.Runtime).toBe("nodejs22.x");
      expect(f.Properties.Architectures).toEqual(["arm64"]);
    }
  });

  it("never grants UpdateItem or DeleteItem, and only audit-append may put an audit row, which it only puts and reads", () => {
    const roles = ofType("AWS::IAM::Role").map(([key]) => key);
    const everything = roles.flatMap((key) => statementsOf(key).flatMap(actions));
    const auditTableKey = ofType("AWS::DynamoDB::GlobalTable").find(([key]) => key.startsWith("TablesAudit"))?.[0];
    expect(auditTableKey).toBeDefined();
    const puttersOfAudit = roles.filter((key) =>
      statementsOf(key).some(
        (st) =>
          st.Effect === "Allow" &&
          actions(st).some((a) => a === "dynamodb:PutItem" || a === "dynamodb:*") &&
          json(st.Resource).includes(auditTableKey as string),
      ),
    );
    expect(puttersOfAudit).toEqual([roleIdOf("Handlersauditappendrole")]);
    expect(everything.filter((a) => /dynamodb:(UpdateItem|DeleteItem|BatchWriteItem|\*)/.test(a))).toEqual([]);
    const append = statementsOf(roleIdOf("Handlersauditappendrole")).flatMap(actions);
    expect(append.filter((a) => !a.startsWith("logs:")).sort()).toEqual([
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:Query",
    ]);
    const prune = statementsOf(roleIdOf("Handlersretentionprunerole")).flatMap(actions);
    expect(prune).toContain("s3:DeleteObject");
    expect(prune.filter((a) => a.startsWith("s3:Put") || a === "dynamodb:PutItem")).toEqual([]);
  });

  it("makes the bucket versioned, private, TLS-only, and aborts stale multipart uploads", () => {
    template.hasResourceProperties("AWS::S3::Bucket", {
      VersioningConfiguration: { Status: "Enabled" },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
    });
    const [, bucket] = ofType("AWS::S3::Bucket")[0] as [string, Resource];
    expect(json(bucket.Properties.LifecycleConfiguration)).toContain(
      '"AbortIncompleteMultipartUpload":{"DaysAfterInitiation":1}',
    );
    expect(bucket.DeletionPolicy).toBe("Retain");
    const policy = json(ofType("AWS::S3::BucketPolicy")[0]?.[1].Properties);
    expect(policy).toContain('"aws:SecureTransport":"false"');
    // A retained bucket keeps its guards: the policy outlives the stack with it.
    expect(ofType("AWS::S3::BucketPolicy")[0]?.[1].DeletionPolicy).toBe("Retain");
  });

  it("lets prune free storage: a versioned bucket keeps a deleted object's bytes until a rule expires noncurrent versions", () => {
    for (const [id, bucket] of ofType("AWS::S3::Bucket")) {
      const versioned = json(bucket.Properties.VersioningConfiguration).includes('"Enabled"');
      if (!versioned) continue;
      const rules = (bucket.Properties.LifecycleConfiguration as { Rules: Array<Record<string, unknown>> }).Rules;
      const expiring = rules.find((r) => r.Status === "Enabled" && r.NoncurrentVersionExpiration !== undefined);
      expect(expiring, `${id} expires noncurrent versions`).toMatchObject({
        NoncurrentVersionExpiration: { NoncurrentDays: 30 },
        ExpiredObjectDeleteMarker: true,
      });
    }
  });

  it("keeps both tables with point-in-time recovery and deletion protection, beyond the stack", () => {
    const tables = ofType("AWS::DynamoDB::GlobalTable");
    expect(tables.length).toBe(2);
    for (const [, t] of tables) {
      expect(t.DeletionPolicy).toBe("Retain");
      const replica = (t.Properties.Replicas as Array<Record<string, unknown>>)[0];
      expect(replica?.PointInTimeRecoverySpecification).toEqual({ PointInTimeRecoveryEnabled: true });
      expect(replica?.DeletionProtectionEnabled).toBe(true);
    }
  });

  it("waits for worker tasks with runTask.sync and retries only ECS's own API errors", () => {
    for (const [, m] of ofType("AWS::StepFunctions::StateMachine")) {
      const text = json(m.Properties.DefinitionString);
      expect(text).toContain(":states:::ecs:runTask.sync");
      expect(text).not.toMatch(/States\.TaskFailed|States\.ALL\\"\],\\"Interval/);
      expect(m.Properties.TracingConfiguration).toEqual({ Enabled: true });
      expect(json(m.Properties.LoggingConfiguration)).toContain('"Level":"ALL"');
    }
  });

  it("stops a worker task after a day, and gives every Task state an object of Parameters or none", () => {
    const names = synth.stacks[0] as LocalNames;
    for (const [id, m] of ofType("AWS::StepFunctions::StateMachine")) {
      const definition = JSON.parse(names.resolve(m.Properties.DefinitionString) as string) as {
        States: Record<string, { Type: string; Resource?: string; Parameters?: unknown; TimeoutSeconds?: number }>;
      };
      const tasks = Object.values(definition.States).filter((s) => s.Type === "Task");
      const workers = tasks.filter((s) => s.Resource?.endsWith(":states:::ecs:runTask.sync"));
      // VerifyFlow's task runs on ephemeral storage or on an EBS volume, one state each.
      expect(workers.length, id).toBe(id.startsWith("VerifyFlow") ? 2 : 1);
      for (const w of workers) expect(w.TimeoutSeconds).toBe(86_400);
      for (const t of tasks) if (t.Parameters !== undefined) expect(typeof t.Parameters).toBe("object");
    }
  });

  it("schedules each configured database in its time zone, starting BackupFlow with its id", () => {
    const schedules = ofType("AWS::Scheduler::Schedule").filter(([id]) => id.includes("Backup"));
    expect(schedules.length).toBe(2);
    const inputs = schedules.map(([, s]) => JSON.parse((s.Properties.Target as { Input: string }).Input));
    expect(inputs).toEqual(expect.arrayContaining([{ databaseId: "shop" }, { databaseId: "billing" }]));
    for (const [, s] of schedules) {
      expect(s.Properties.ScheduleExpressionTimezone).toBe("Europe/Berlin");
      expect(json(s.Properties.Target)).toContain("BackupFlowStateMachine");
      expect(json(s.Properties.Target)).toContain("DeadLetterConfig");
    }
  });

  it("schedules each database's verification daily in its time zone, starting VerifyFlow with its id", () => {
    const schedules = ofType("AWS::Scheduler::Schedule").filter(([id]) => id.includes("Verify"));
    expect(schedules.map(([, s]) => JSON.parse((s.Properties.Target as { Input: string }).Input))).toEqual(
      expect.arrayContaining([{ databaseId: "shop" }, { databaseId: "billing" }]),
    );
    for (const [, s] of schedules) {
      expect(s.Properties.ScheduleExpression).toBe("cron(0 5 * * ? *)");
      expect(s.Properties.ScheduleExpressionTimezone).toBe("Europe/Berlin");
      expect(json(s.Properties.Target)).toContain("VerifyFlowStateMachine");
    }
  });

  it("alarms on failed flows, an inconclusive verification, a failed probe, dead-lettered schedules, each database's staleness and its verification age", () => {
    const alarms = ofType("AWS::CloudWatch::Alarm").map(([, a]) => a.Properties);
    // three flows, inconclusive verifications, a backup too large to verify, the probe,
    // the schedules' dead letters, two databases' staleness and verification age
    expect(alarms.length).toBe(11);
    expect(alarms.filter((a) => a.MetricName === "VerifyStorageExceeded")).toEqual([
      expect.objectContaining({ Dimensions: [{ Name: "service", Value: "strongroom" }], Threshold: 1 }),
    ]);
    // One for the deployment, on the metric verification-record emits without DatabaseId.
    expect(alarms.filter((a) => a.MetricName === "VerificationInconclusive")).toEqual([
      expect.objectContaining({
        Namespace: "Strongroom",
        Dimensions: [{ Name: "service", Value: "strongroom" }],
        Statistic: "Sum",
        Threshold: 1,
        ComparisonOperator: "GreaterThanOrEqualToThreshold",
        TreatMissingData: "notBreaching",
      }),
    ]);
    const unverified = alarms.filter((a) => a.MetricName === "VerifiedAgeHours");
    expect(unverified.map((a) => [a.Threshold, a.TreatMissingData, a.Statistic])).toEqual([
      [48, "breaching", "Maximum"],
      [48, "breaching", "Maximum"],
    ]);
    const stale = alarms.filter((a) => a.MetricName === "BackupRecorded");
    expect(stale.map((a) => a.EvaluationPeriods)).toEqual([26, 26]);
    expect(stale.every((a) => a.TreatMissingData === "breaching" && a.Period === 3600)).toBe(true);
  });
});
