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
export type KeyUse = "s3-read" | "s3-write" | "secrets";

export function allowKeys(scope: IConstruct, keyArns: readonly string[], use: KeyUse): iam.PolicyStatement | undefined {
  if (keyArns.length === 0) return undefined;
  const region = Stack.of(scope).region;
  const service = use === "secrets" ? "secretsmanager" : "s3";
  return new iam.PolicyStatement({
    actions: use === "s3-write" ? ["kms:Decrypt", "kms:GenerateDataKey"] : ["kms:Decrypt"],
    resources: [...keyArns],
    conditions: { StringEquals: { "kms:ViaService": `${service}.${region}.amazonaws.com` } },
  });
}

/** Adds the statement for `use` to a role, when there are keys. */
export function grantKeys(role: iam.IRole, keyArns: readonly string[], use: KeyUse): void {
  const statement = allowKeys(role, keyArns, use);
  if (statement) role.addToPrincipalPolicy(statement);
}
