import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import * as path from "node:path";
import { runSimulation } from "@cloud-copilot/iam-simulate";
import { beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../infra/config/load-config.ts";
import { ACCOUNT, roleArn, roleKey, rolePolicies, type Synthesized, synthesizeAll } from "../helpers/synth.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * A bucket under SSE-KMS and secrets under a customer-managed key: S3 and Secrets Manager
 * call KMS as the caller, so each role needs the key, and only through its service
 * (kms:ViaService), as IAM evaluates it.
 */
const root = path.resolve(import.meta.dirname, "../..");
const KEY = `arn:aws:kms:eu-central-1:${ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab`;
const example = () => JSON.parse(readFileSync(path.join(root, "strongroom.config.example.json"), "utf8"));
let synth: Synthesized;

beforeAll(async () => {
  const file = path.join(await tempDir("strongroom-kms-"), "config.json");
  await writeFile(file, JSON.stringify({ ...example(), kmsKeyArns: [KEY] }));
  synth = synthesizeAll(file);
}, 120_000);

async function onKey(rolePrefix: string, action: string, via?: string): Promise<string> {
  const key = rolePrefix.includes("/") ? rolePrefix : roleKey(synth, rolePrefix);
  const out = await runSimulation(
    {
      request: {
        principal: roleArn(synth, key),
        action,
        resource: { resource: KEY, accountId: ACCOUNT },
        contextVariables: via ? { "kms:ViaService": `${via}.eu-central-1.amazonaws.com` } : {},
      },
      identityPolicies: rolePolicies(synth, key),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      // A key's own policy decides whether IAM policies count at all: the default one
      // lets the account's IAM grant use of the key, which these grants rely on.
      resourcePolicy: {
        Version: "2012-10-17",
        Statement: [
          { Effect: "Allow", Principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` }, Action: "kms:*", Resource: "*" },
        ],
      },
    },
    {},
  );
  if (out.resultType === "error") throw new Error(JSON.stringify(out.errors));
  return out.overallResult;
}

describe("customer-managed KMS keys", () => {
  it("lets every execution role decrypt its secrets through Secrets Manager only", async () => {
    for (const role of ["BackupExecutionRole", "RestoreExecutionRole", "WorkerVerifyExecutionRole"]) {
      const keys = Object.keys(synth.resources).filter(
        (k) => synth.resources[k]?.Type === "AWS::IAM::Role" && synth.localId(k).startsWith(role),
      );
      expect(keys.length, role).toBeGreaterThan(0);
    }
    const one = Object.keys(synth.resources).find(
      (k) => synth.resources[k]?.Type === "AWS::IAM::Role" && synth.localId(k).startsWith("BackupExecutionRole"),
    ) as string;
    expect(await onKey(one, "kms:Decrypt", "secretsmanager")).toBe("Allowed");
    expect(await onKey(one, "kms:Decrypt", "s3")).toBe("ImplicitlyDenied");
    expect(await onKey(one, "kms:Decrypt")).toBe("ImplicitlyDenied");
    expect(await onKey("WorkerVerifyExecutionRole", "kms:Decrypt", "secretsmanager")).toBe("Allowed");
  });

  it("lets a backup task encrypt new objects through S3, and the restore task only decrypt", async () => {
    expect(await onKey("BackupTaskRoleshop", "kms:GenerateDataKey", "s3")).toBe("Allowed");
    expect(await onKey("BackupTaskRoleshop", "kms:GenerateDataKey", "secretsmanager")).toBe("ImplicitlyDenied");
    expect(await onKey("WorkerRestoreTaskRole", "kms:Decrypt", "s3")).toBe("Allowed");
    expect(await onKey("WorkerRestoreTaskRole", "kms:GenerateDataKey", "s3")).toBe("ImplicitlyDenied");
    expect(await onKey("Handlersplanrestorerole", "kms:Decrypt", "s3")).toBe("Allowed");
    expect(await onKey("Handlersplanbackuprole", "kms:Decrypt", "s3")).toBe("ImplicitlyDenied");
  });

  it("grants no KMS at all without keys, and refuses an alias for a key", () => {
    const plain = synthesizeAll(path.join(root, "strongroom.config.example.json"));
    expect(JSON.stringify(plain.resources)).not.toContain("kms:");
    expect(() =>
      parseConfig({ ...example(), kmsKeyArns: ["arn:aws:kms:eu-central-1:123456789012:alias/x"] }, "c"),
    ).toThrow("kmsKeyArns[0]: must be the ARN of a KMS key");
  });
});
