import { readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { runSimulation } from "@cloud-copilot/iam-simulate";
import { beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey } from "#core/audit/row-signature.ts";
import {
  databaseDimensions,
  PITR_VERIFIED_AGE_HOURS,
  WAL_ARCHIVE_AGE_MINUTES,
  WAL_GAPS,
  WAL_UNTRUSTED_OBJECTS,
} from "#core/flows/metrics.ts";
import type { LocalNames } from "../../infra/sim/template.ts";
import { ACCOUNT, roleArn, roleKey, rolePolicies, type Synthesized, synthesizeAll } from "../helpers/synth.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * The role a self-run database's host archives WAL with (`"walArchiving": true`), as
 * IAM's own evaluation decides it (@cloud-copilot/iam-simulate over the synthesized
 * policies, with the bucket's): it may only add WAL under its database's prefix.
 */
const root = path.resolve(import.meta.dirname, "../..");
const SIGNER = generateSigningKey().signer;
let synth: Synthesized;
let names: LocalNames;
let bucket: string;

beforeAll(async () => {
  const config = JSON.parse(await readFile(path.join(root, "strongroom.config.example.json"), "utf8"));
  // shop as a server the team runs itself (WAL archiving is for those; RDS keeps its own).
  config.databases[0] = {
    ...config.databases[0],
    host: "db1.internal.example.com",
    walArchiving: true,
    walSigners: [SIGNER],
    maxWalAgeMinutes: 30,
    mode: "both",
  };
  const file = path.join(await tempDir("strongroom-walhost-"), "config.json");
  await writeFile(file, JSON.stringify(config));
  synth = synthesizeAll(file);
  names = synth.stacks[0] as LocalNames;
  const [created] = names.resourcesOf("AWS::S3::Bucket");
  bucket = names.getAtt(created?.id as string, "Arn").replace("arn:aws:s3:::", "");
}, 120_000);

async function decide(
  action: string,
  key: string,
  context: Record<string, string> = {},
  role = roleKey(synth, "WalHostRoleshop"),
): Promise<string> {
  const [policy] = names.resourcesOf("AWS::S3::BucketPolicy");
  const out = await runSimulation(
    {
      request: {
        principal: roleArn(synth, role),
        action,
        resource: { resource: `arn:aws:s3:::${bucket}/${key}`, accountId: ACCOUNT },
        contextVariables: { "aws:SecureTransport": "true", ...context },
      },
      identityPolicies: rolePolicies(synth, role),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      resourcePolicy: policy?.properties.PolicyDocument,
    },
    {},
  );
  if (out.resultType === "error") throw new Error(JSON.stringify(out.errors));
  return out.overallResult;
}

/**
 * A base's tar as S3 authorizes its requests (all as s3:PutObject): CreateMultipartUpload
 * and UploadPart cannot carry If-None-Match and are no creation; CompleteMultipartUpload
 * (or a single PutObject) creates the object and must carry it, so that an existing tar
 * is never replaced.
 */
const tarRequests: Array<[Record<string, string>, string]> = [
  [{ "s3:ObjectCreationOperation": "false" }, "Allowed"],
  [{ "s3:ObjectCreationOperation": "true", "s3:if-none-match": "*" }, "Allowed"],
  [{ "s3:ObjectCreationOperation": "true" }, "ExplicitlyDenied"],
  // Fails closed: a header other than `*`, or a put whose operation S3 does not say.
  [{ "s3:ObjectCreationOperation": "true", "s3:if-none-match": '"0123abcd"' }, "ExplicitlyDenied"],
  [{}, "ExplicitlyDenied"],
];

describe("the WAL host role, as IAM evaluates it", () => {
  const segment = "pg/shop/wal/000000010000000000000003";
  const putIfAbsent = { "s3:if-none-match": "*" };

  it("adds a WAL file only with If-None-Match: * (put-if-absent), and reads its own WAL back", async () => {
    expect(await decide("s3:PutObject", segment, putIfAbsent)).toBe("Allowed");
    expect(await decide("s3:PutObject", "pg/shop/wal/00000002.history", putIfAbsent)).toBe("Allowed");
    expect(await decide("s3:GetObject", segment)).toBe("Allowed");
  });

  it("never replaces or deletes one: no PutObject without the header or with an ETag, no DeleteObject", async () => {
    expect(await decide("s3:PutObject", segment)).toBe("ImplicitlyDenied");
    expect(await decide("s3:PutObject", segment, { "s3:if-none-match": '"0123abcd"' })).toBe("ImplicitlyDenied");
    expect(await decide("s3:DeleteObject", segment)).toBe("ImplicitlyDenied");
  });

  it("takes base backups: the tar uploaded in parts and created only with If-None-Match, its manifest only with If-None-Match, never deleted", async () => {
    const tar = "pg/shop/base/20261201T020000Z-abcdef/base.tar.zst.age";
    const manifest = "pg/shop/base/20261201T020000Z-abcdef/manifest.json";
    for (const [context, decision] of tarRequests) expect(await decide("s3:PutObject", tar, context)).toBe(decision);
    expect(await decide("s3:PutObject", manifest, putIfAbsent)).toBe("Allowed");
    expect(await decide("s3:PutObject", manifest)).toBe("ExplicitlyDenied");
    expect(await decide("s3:DeleteObject", tar)).toBe("ImplicitlyDenied");
    expect(await decide("s3:DeleteObject", manifest)).toBe("ImplicitlyDenied");
  });

  it("touches nothing else: not its logical backups, not another database's WAL, not the audit log", async () => {
    for (const key of [
      "pg/shop/backups/20261201T020000Z-abcdef/manifest.json",
      "pg/shop/verifications/20261201T020000Z-abcdef/x.json",
      "pg/billing/wal/000000010000000000000003",
      "pg/.strongroom/audit/db-shop/000000000009.json",
      "pg/shop/walx/000000010000000000000003",
    ]) {
      expect(await decide("s3:PutObject", key, putIfAbsent), key).not.toBe("Allowed");
      expect(await decide("s3:GetObject", key), key).not.toBe("Allowed");
    }
  });

  it("is assumed by EC2 through an instance profile, and both are stack outputs", () => {
    const role = synth.resources[roleKey(synth, "WalHostRoleshop")];
    expect(JSON.stringify(role?.Properties?.AssumeRolePolicyDocument)).toContain("ec2.amazonaws.com");
    const outputs = Object.keys((synth.parent as { Outputs?: Record<string, unknown> }).Outputs ?? {});
    expect(outputs.some((o) => o.startsWith("WalHostRoleshop"))).toBe(true);
    expect(outputs.some((o) => o.startsWith("WalHostInstanceProfileshop"))).toBe(true);
    // billing (RDS) has none.
    expect(outputs.some((o) => o.includes("billing"))).toBe(false);
  });
});

describe("a database with walArchiving, watched", () => {
  const resourcesOf = (type: string) => Object.entries(synth.resources).filter(([, r]) => r.Type === type);
  const alarm = (prefix: string) =>
    resourcesOf("AWS::CloudWatch::Alarm").find(([key]) => synth.localId(key).startsWith(prefix))?.[1].Properties;

  it("hands readiness the host's signers and the archive-age limit in its settings parameter; billing has none", () => {
    // The value is an Fn::Join over the task definitions' ARNs; its literal pieces, joined, hold the rest.
    const text = (value: unknown): string =>
      typeof value === "string"
        ? value
        : Array.isArray(value)
          ? value.map(text).join("")
          : value && typeof value === "object"
            ? Object.values(value).map(text).join("")
            : "";
    const settings = (id: string) =>
      text(
        resourcesOf("AWS::SSM::Parameter").find(([, r]) => text(r.Properties.Name).endsWith(`/databases/${id}`))?.[1]
          .Properties.Value,
      );
    expect(settings("shop")).toContain(JSON.stringify({ wal: { signers: [SIGNER], maxAgeMinutes: 30 } }).slice(1, -1));
    expect(settings("billing")).toContain('"verify"');
    expect(settings("billing")).not.toContain('"wal"');
  });

  it("alarms on a WAL gap, on objects no trusted signer signed, and on the archive's age past maxWalAgeMinutes, to the topic", () => {
    const gap = alarm("WalGapshop");
    const untrusted = alarm("WalUntrustedshop");
    const age = alarm("WalArchiveAgeshop");
    const dims = Object.entries(databaseDimensions("shop")).map(([Name, Value]) => ({ Name, Value }));
    expect(gap).toMatchObject({
      MetricName: WAL_GAPS,
      Namespace: "Strongroom",
      Threshold: 1,
      ComparisonOperator: "GreaterThanOrEqualToThreshold",
      TreatMissingData: "notBreaching",
    });
    expect(untrusted).toMatchObject({ MetricName: WAL_UNTRUSTED_OBJECTS, Threshold: 1 });
    // Nothing archived (no datapoint) is as bad as an old archive.
    // Five-minute periods, two in a row: the every-five-minutes readiness run reports the age.
    expect(age).toMatchObject({
      MetricName: WAL_ARCHIVE_AGE_MINUTES,
      Threshold: 30,
      ComparisonOperator: "GreaterThanThreshold",
      TreatMissingData: "breaching",
      Period: 300,
      EvaluationPeriods: 2,
      DatapointsToAlarm: 2,
    });
    const schedules = resourcesOf("AWS::Scheduler::Schedule").map(
      ([, r]) => r.Properties as { ScheduleExpression: string; Target: { Arn: unknown; Input?: string } },
    );
    const walAge = schedules.filter((p) => (p.Target.Input ?? "").includes("walAgeOnly"));
    expect(walAge.map((p) => [p.ScheduleExpression, JSON.parse(p.Target.Input as string)])).toEqual([
      ["rate(5 minutes)", { walAgeOnly: true }],
    ]);
    expect(JSON.stringify(walAge[0]?.Target.Arn)).toMatch(/Readiness/i);
    for (const a of [gap, untrusted, age]) {
      expect(a?.Dimensions).toEqual(expect.arrayContaining(dims));
      expect(JSON.stringify(a?.AlarmActions)).toMatch(/Topic/);
    }
    // No successful verify --pitr in the database's verify.maxAgeDays (2 by default), or none: as the logical Unverified alarm.
    expect(alarm("PitrUnverifiedshop")).toMatchObject({
      MetricName: PITR_VERIFIED_AGE_HOURS,
      Threshold: 48,
      ComparisonOperator: "GreaterThanThreshold",
      EvaluationPeriods: 3,
      TreatMissingData: "breaching",
    });
    // Mode both: a staleness alarm per kind, so daily base backups never keep a failing logical backup quiet.
    expect(alarm("Staleshop")).toMatchObject({ MetricName: "BackupRecorded", EvaluationPeriods: 26 });
    expect(alarm("StaleBaseshop")).toMatchObject({ MetricName: "BaseBackupRecorded", EvaluationPeriods: 26 });
    expect(alarm("StaleBasebilling")).toBeUndefined();
    expect(alarm("WalGapbilling")).toBeUndefined();
    expect(alarm("PitrUnverifiedbilling")).toBeUndefined();
  });

  it("lets readiness read the WAL headers and base manifests it judges, and never write or delete them", async () => {
    const readiness = roleKey(synth, "Handlersreadinessrole");
    for (const key of ["pg/shop/wal/000000010000000000000003", "pg/shop/base/20261201T020000Z-abcdef/manifest.json"]) {
      expect(await decide("s3:GetObject", key, {}, readiness), key).toBe("Allowed");
      expect(await decide("s3:PutObject", key, { "s3:if-none-match": "*" }, readiness), key).not.toBe("Allowed");
      expect(await decide("s3:DeleteObject", key, {}, readiness), key).not.toBe("Allowed");
    }
  });

  it("lets the verify task of a walArchiving database store verify --pitr's results beside its bases, and no other database's", async () => {
    const shop = roleKey(synth, "VerifyTaskRoleshop");
    const billing = roleKey(synth, "VerifyTaskRolebilling");
    const result = "pg/shop/base/20261201T020000Z-abcdef/verifications/20261202T020000Z-x.json";
    expect(await decide("s3:PutObject", result, {}, shop)).toBe("Allowed");
    // Never the base itself, its manifest, or its WAL.
    for (const key of [
      "pg/shop/base/20261201T020000Z-abcdef/manifest.json",
      "pg/shop/base/20261201T020000Z-abcdef/base.tar.zst.age",
      "pg/shop/wal/000000010000000000000003",
    ]) {
      expect(await decide("s3:PutObject", key, { "s3:if-none-match": "*" }, shop), key).not.toBe("Allowed");
    }
    // billing has no walArchiving: its verify task writes no base verification, its own or shop's.
    expect(
      await decide("s3:PutObject", "pg/billing/base/20261201T020000Z-abcdef/verifications/x.json", {}, billing),
    ).not.toBe("Allowed");
    expect(await decide("s3:PutObject", result, {}, billing)).not.toBe("Allowed");
  });

  it("lets BackupFlow's task of a walArchiving database put a base backup's tar and manifest (put-if-absent), nothing else under base/", async () => {
    const shop = roleKey(synth, "BackupTaskRoleshop");
    const billing = roleKey(synth, "BackupTaskRolebilling");
    const dir = "pg/shop/base/20261201T020000Z-abcdef";
    for (const [context, decision] of tarRequests) {
      expect(await decide("s3:PutObject", `${dir}/base.tar.zst.age`, context, shop)).toBe(decision);
    }
    expect(await decide("s3:PutObject", `${dir}/manifest.json`, { "s3:if-none-match": "*" }, shop)).toBe("Allowed");
    expect(await decide("s3:PutObject", `${dir}/manifest.json`, {}, shop)).not.toBe("Allowed");
    expect(await decide("s3:PutObject", `${dir}/verifications/x.json`, {}, shop)).not.toBe("Allowed");
    // `*` spans `/`: a file named manifest.json deeper down is still a verification's place, not a base's.
    expect(
      await decide("s3:PutObject", `${dir}/verifications/b/manifest.json`, { "s3:if-none-match": "*" }, shop),
    ).not.toBe("Allowed");
    expect(
      await decide("s3:PutObject", "pg/shop/wal/000000010000000000000003", { "s3:if-none-match": "*" }, shop),
    ).not.toBe("Allowed");
    expect(await decide("s3:DeleteObject", `${dir}/base.tar.zst.age`, {}, shop)).not.toBe("Allowed");
    expect(
      await decide("s3:PutObject", "pg/billing/base/20261201T020000Z-abcdef/base.tar.zst.age", {}, billing),
    ).not.toBe("Allowed");
  });

  it("refuses anyone a base manifest put, or a base tar's creation, without If-None-Match, in the bucket's own policy: BackupFlow commits the bytes it reads back, and a manifest names its tar by digest", async () => {
    const [policy] = names.resourcesOf("AWS::S3::BucketPolicy");
    const everything = { name: "all", policy: { Statement: [{ Effect: "Allow", Action: "s3:*", Resource: "*" }] } };
    const asAnyone = async (key: string, context: Record<string, string>) => {
      const out = await runSimulation(
        {
          request: {
            principal: `arn:aws:iam::${ACCOUNT}:role/someone`,
            action: "s3:PutObject",
            resource: { resource: `arn:aws:s3:::${bucket}/${key}`, accountId: ACCOUNT },
            contextVariables: { "aws:SecureTransport": "true", ...context },
          },
          identityPolicies: [everything] as never,
          serviceControlPolicies: [],
          resourceControlPolicies: [],
          resourcePolicy: policy?.properties.PolicyDocument,
        },
        {},
      );
      if (out.resultType === "error") throw new Error(JSON.stringify(out.errors));
      return out.overallResult;
    };
    const manifest = "pg/shop/base/20261201T020000Z-abcdef/manifest.json";
    expect(await asAnyone(manifest, {})).toBe("ExplicitlyDenied");
    expect(await asAnyone(manifest, { "s3:if-none-match": "*" })).toBe("Allowed");
    for (const [context, decision] of tarRequests) {
      expect(await asAnyone("pg/shop/base/20261201T020000Z-abcdef/base.tar.zst.age", context)).toBe(decision);
    }
    // A logical backup's payload is not under this rule (its writers stream without the header).
    expect(
      await asAnyone("pg/shop/backups/20261201T020000Z-abcdef/dump.pgc.zst.age", {
        "s3:ObjectCreationOperation": "true",
      }),
    ).toBe("Allowed");
  });
});
