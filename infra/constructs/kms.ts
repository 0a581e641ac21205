import { Stack } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import type { IConstruct } from "constructs";

/**
 * Customer-managed KMS keys. A bucket under SSE-KMS needs kms:GenerateDataKey to put and
 * kms:Decrypt to get (S3 calls KMS as the caller); a secret under a customer key needs
 * kms:Decrypt for GetSecretValue. Each grant is bound to the one service that may use it
 * (`kms:ViaService`), so a role that may read a secret cannot decrypt anything else with
 * the same key directly. The key policies must allow the account's IAM to grant this
 * (the default key policy does).
 */
export type KeyUse = "s3-read" | "s3-write" | "secrets" | "ebs";

const ACTIONS: Record<KeyUse, string[]> = {
  "s3-read": ["kms:Decrypt"],
  "s3-write": ["kms:Decrypt", "kms:GenerateDataKey"],
  secrets: ["kms:Decrypt"],
  // What ECS's infrastructure role needs for a volume under a customer key.
  ebs: ["kms:CreateGrant", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey"],
};
const SERVICE: Record<KeyUse, string> = { "s3-read": "s3", "s3-write": "s3", secrets: "secretsmanager", ebs: "ec2" };

export function allowKeys(scope: IConstruct, keyArns: readonly string[], use: KeyUse): iam.PolicyStatement | undefined {
  if (keyArns.length === 0) return undefined;
  const region = Stack.of(scope).region;
  return new iam.PolicyStatement({
    actions: ACTIONS[use],
    resources: [...keyArns],
    conditions: { StringEquals: { "kms:ViaService": `${SERVICE[use]}.${region}.amazonaws.com` } },
  });
}

/** Adds the statement for `use` to a role, when there are keys. */
export function grantKeys(role: iam.IRole, keyArns: readonly string[], use: KeyUse): void {
  const statement = allowKeys(role, keyArns, use);
  if (statement) role.addToPrincipalPolicy(statement);
}
