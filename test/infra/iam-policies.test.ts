import { describe, expect, it } from "vitest";
import { type ResolvedResource, TemplatePolicies } from "../../infra/sim/iam-policies.ts";

/** How the sim reads a deployment's policies from its resolved resources (one stack's or a parent's and its nested stacks'). */
const ROLE = "arn:aws:iam::123456789012:role/app-Role";
const doc = (action: string) => ({
  Version: "2012-10-17",
  Statement: [{ Effect: "Allow", Action: action, Resource: "*" }],
});
const role = (properties: Record<string, unknown> = {}): ResolvedResource => ({
  logicalId: "Role",
  type: "AWS::IAM::Role",
  ref: "app-Role",
  arn: ROLE,
  properties,
});

describe("TemplatePolicies", () => {
  it("gives a role its inline policies, the policies that name it, and the template's managed policies it attaches", () => {
    const policies = TemplatePolicies.fromResources([
      role({
        Policies: [{ PolicyName: "inline", PolicyDocument: doc("s3:GetObject") }],
        ManagedPolicyArns: ["mp-arn"],
      }),
      {
        logicalId: "Extra",
        type: "AWS::IAM::Policy",
        ref: "Extra",
        arn: "",
        properties: { Roles: ["app-Role"], PolicyDocument: doc("s3:PutObject") },
      },
      {
        logicalId: "Managed",
        type: "AWS::IAM::ManagedPolicy",
        ref: "mp-arn",
        arn: "mp-arn",
        properties: { PolicyDocument: doc("s3:ListBucket") },
      },
    ]);
    expect(policies.identityPolicies(ROLE)?.map((p) => p.name)).toEqual(["Role.inline", "Extra", "Managed"]);
    expect(policies.identityPolicies("arn:aws:iam::123456789012:role/other")).toBeUndefined();
  });

  it("finds the bucket's policy for its objects, and the table's for its indexes", () => {
    const policies = TemplatePolicies.fromResources([
      {
        logicalId: "BucketPolicy",
        type: "AWS::S3::BucketPolicy",
        ref: "bp",
        arn: "",
        properties: { Bucket: "b", PolicyDocument: doc("s3:*") },
      },
      {
        logicalId: "Table",
        type: "AWS::DynamoDB::GlobalTable",
        ref: "t",
        arn: "arn:aws:dynamodb:us-east-1:123456789012:table/t",
        properties: { Replicas: [{ Region: "us-east-1", ResourcePolicy: { PolicyDocument: doc("dynamodb:*") } }] },
      },
    ]);
    expect(policies.resourcePolicy("arn:aws:s3:::b/pg/x")).toEqual(doc("s3:*"));
    expect(policies.resourcePolicy("arn:aws:s3:::other/x")).toBeUndefined();
    expect(policies.resourcePolicy("arn:aws:dynamodb:us-east-1:123456789012:table/t/index/i")).toEqual(
      doc("dynamodb:*"),
    );
  });

  it("refuses a role with an AWS managed policy, whose statements it does not have", () => {
    expect(() =>
      TemplatePolicies.fromResources([
        role({ ManagedPolicyArns: ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"] }),
      ]),
    ).toThrow(/attaches the managed policy arn:aws:iam::aws:policy\/service-role\/AWSLambdaBasicExecutionRole/);
  });

  it("refuses a role with a permissions boundary, which it does not model", () => {
    expect(() => TemplatePolicies.fromResources([role({ PermissionsBoundary: "arn:aws:iam::aws:policy/x" })])).toThrow(
      /permissions boundary/,
    );
  });
});
