import { writeFile } from "node:fs/promises";
import * as path from "node:path";
import { runSimulation } from "@cloud-copilot/iam-simulate";
import { beforeAll, describe, expect, it } from "vitest";
import { StrongroomError } from "#core/errors.ts";
import { parseConfig } from "../../infra/config/load-config.ts";
import { parseEcrImageUri } from "../../infra/constructs/ecr-image.ts";
import { exampleConfig } from "../helpers/stack.ts";
import { ACCOUNT, roleArn, roleKey, rolePolicies, type Synthesized, synthesizeAll } from "../helpers/synth.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * `verify.image`: one database's verify task runs another image, built FROM the worker
 * image, from a private ECR repository its execution role may pull. Asset bundling is
 * skipped; IAM is evaluated by iam-simulate, as AWS would evaluate these policies.
 */
const DIGEST = `sha256:${"ab".repeat(32)}`;
const REPOSITORY = "strongroom/verify-postgis";
const IMAGE = `${ACCOUNT}.dkr.ecr.eu-central-1.amazonaws.com/${REPOSITORY}@${DIGEST}`;
const REPOSITORY_ARN = `arn:aws:ecr:eu-central-1:${ACCOUNT}:repository/${REPOSITORY}`;

const EBS_KEY = `arn:aws:kms:eu-central-1:${ACCOUNT}:key/0b1e9d7a-5c3f-4e2a-9d8b-7f6e5d4c3b2a`;

type ContainerDefinitions = Array<{ Image: unknown }>;
let synth: Synthesized;

beforeAll(async () => {
  const raw = exampleConfig();
  raw.databases[0].verify = { image: IMAGE };
  // Also a customer-managed key for the verify tasks' EBS volumes (one synth for both).
  raw.ebsKmsKeyArn = EBS_KEY;
  const file = path.join(await tempDir("strongroom-verify-image-"), "config.json");
  await writeFile(file, JSON.stringify(raw));
  synth = synthesizeAll(file);
}, 120_000);

/** Every task definition's key, its id in its stack, its resolved image and execution role ARN. */
function taskDefinitions(): Array<{ key: string; id: string; image: unknown; executionRole: unknown }> {
  return Object.entries(synth.resources)
    .filter(([, r]) => r.Type === "AWS::ECS::TaskDefinition")
    .map(([key, r]) => {
      const props = synth.namesOf(key).resolve(r.Properties) as {
        ContainerDefinitions: ContainerDefinitions;
        ExecutionRoleArn: unknown;
      };
      return {
        key,
        id: synth.localId(key),
        image: props.ContainerDefinitions[0]?.Image,
        executionRole: props.ExecutionRoleArn,
      };
    });
}

/** Whether the role with this key may pull from the repository, as IAM decides it. */
async function mayPull(key: string, repositoryArn: string): Promise<string> {
  const out = await runSimulation(
    {
      request: {
        principal: roleArn(synth, key),
        action: "ecr:BatchGetImage",
        resource: { resource: repositoryArn, accountId: ACCOUNT },
        contextVariables: {},
      },
      identityPolicies: rolePolicies(synth, key),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
    },
    {},
  );
  if (out.resultType === "error") throw new Error(JSON.stringify(out.errors));
  return out.overallResult;
}

function problemsOf(raw: unknown): string[] {
  try {
    parseConfig(raw, "c.json");
  } catch (err) {
    expect(err).toBeInstanceOf(StrongroomError);
    return (err as Error).message.split("\n").slice(1);
  }
  return [];
}

describe("verify.image", () => {
  it("is the image of that database's verify task definitions only (ephemeral and on a volume); every other keeps the worker image", () => {
    const defs = taskDefinitions();
    const custom = defs.filter((d) => d.image === IMAGE);
    expect(custom.map((d) => d.id).sort()).toEqual([
      expect.stringMatching(/^VerifyTaskshop/),
      expect.stringMatching(/^VerifyVolumeTaskshop/),
    ]);
    const others = defs.filter((d) => d.image !== IMAGE);
    // shop's backup and restore, billing's three, and the restore targets'.
    expect(others.map((d) => d.id)).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^BackupTaskshop/),
        expect.stringMatching(/^RestoreTaskshop/),
        expect.stringMatching(/^VerifyTaskbilling/),
        expect.stringMatching(/^VerifyVolumeTaskbilling/),
      ]),
    );
    const images = new Set(others.map((d) => JSON.stringify(d.image)));
    expect(images.size).toBe(1);
    expect([...images][0]).toContain("container-assets");
  });

  it("lets the verify tasks' execution role pull that repository, and no other role or repository", async () => {
    const shop = taskDefinitions().find((d) => d.image === IMAGE);
    const verify = roleKey(synth, "WorkerVerifyExecutionRole");
    expect(shop?.executionRole).toBe(roleArn(synth, verify));
    expect(await mayPull(verify, REPOSITORY_ARN)).toBe("Allowed");
    const other = `arn:aws:ecr:eu-central-1:${ACCOUNT}:repository/strongroom/other`;
    expect(await mayPull(verify, other)).toBe("ImplicitlyDenied");
    const sameNameElsewhere = `arn:aws:ecr:us-east-1:${ACCOUNT}:repository/${REPOSITORY}`;
    expect(await mayPull(verify, sameNameElsewhere)).toBe("ImplicitlyDenied");
    for (const role of ["BackupExecutionRole", "RestoreExecutionRole"]) {
      const keys = Object.keys(synth.resources).filter(
        (k) => synth.resources[k]?.Type === "AWS::IAM::Role" && synth.localId(k).startsWith(role),
      );
      expect(keys.length, role).toBeGreaterThan(0);
      for (const key of keys) expect(await mayPull(key, REPOSITORY_ARN), key).toBe("ImplicitlyDenied");
    }
  });

  it("is absent by default: every verify task runs the worker image", () => {
    const config = parseConfig(exampleConfig(), "example");
    expect(config.databases.map((d) => d.verify.image)).toEqual([undefined, undefined]);
  });

  it("applies from defaults to every database, and a database's own overrides it", () => {
    const raw = exampleConfig();
    const other = `${ACCOUNT}.dkr.ecr.eu-central-1.amazonaws.com/verify:pg-hint-plan`;
    raw.defaults = { ...raw.defaults, verify: { image: IMAGE } };
    raw.databases[1].verify = { image: other };
    expect(parseConfig(raw, "c.json").databases.map((d) => d.verify.image)).toEqual([IMAGE, other]);
  });

  it.for([
    [
      "ghcr.io/acme/strongroom-verify:1",
      /is not an image in a private Amazon ECR registry; push it to an ECR repository/,
    ],
    ["public.ecr.aws/acme/strongroom-verify:1", /is not an image in a private Amazon ECR registry/],
    ["strongroom-verify:latest", /is not an image in a private Amazon ECR registry/],
    [`${ACCOUNT}.dkr.ecr.eu-central-1.amazonaws.com/verify`, /names no tag or digest/],
    [`${ACCOUNT}.dkr.ecr.eu-central-1.amazonaws.com/verify:1@${DIGEST}`, /names both a tag and a digest/],
    [`${ACCOUNT}.dkr.ecr.eu-central-1.amazonaws.com/verify@sha256:abc`, /is not a digest/],
    [`${ACCOUNT}.dkr.ecr.eu-central-1.amazonaws.com/Verify:1`, /is not an ECR repository name/],
    [`${ACCOUNT}.dkr.ecr.eu-central-1.amazonaws.com/verify:-x`, /is not a tag/],
    [`${ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com/verify:1`, /region cn-north-1 is not served at amazonaws\.com/],
    ["1234.dkr.ecr.eu-central-1.amazonaws.com/verify:1", /is not an image in a private Amazon ECR registry/],
  ] as const)("refuses %s with one line naming the field", ([uri, message]) => {
    const raw = exampleConfig();
    raw.databases[1].verify = { image: uri };
    const problems = problemsOf(raw);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^databases\[1\]\.verify\.image: /);
    expect(problems[0]).toMatch(message);
    raw.databases[1].verify = {};
    raw.defaults = { ...raw.defaults, verify: { image: uri } };
    expect(problemsOf(raw)).toEqual([expect.stringMatching(/^defaults\.verify\.image: /)]);
  });

  it("refuses an empty or non-string image through the schema", () => {
    const raw = exampleConfig();
    raw.databases[0].verify = { image: "" };
    expect(problemsOf(raw)).toEqual(["databases[0].verify.image: must NOT have fewer than 1 characters"]);
    raw.databases[0].verify = { image: 7 };
    expect(problemsOf(raw)).toEqual(["databases[0].verify.image: must be string"]);
  });

  it("reads a URI's account, region, partition, repository and reference", () => {
    expect(parseEcrImageUri(IMAGE)).toEqual({
      account: ACCOUNT,
      region: "eu-central-1",
      partition: "aws",
      repository: REPOSITORY,
      reference: `@${DIGEST}`,
      repositoryArn: REPOSITORY_ARN,
    });
    expect(parseEcrImageUri(`${ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn/a/b:v1.2`).repositoryArn).toBe(
      `arn:aws-cn:ecr:cn-north-1:${ACCOUNT}:repository/a/b`,
    );
    expect(parseEcrImageUri(`${ACCOUNT}.dkr.ecr-fips.us-gov-west-1.amazonaws.com/x_y:latest`).partition).toBe(
      "aws-us-gov",
    );
  });

  it("encrypts the verify tasks' EBS volumes with the config's ebsKmsKeyArn, which ECS's volume role may use through EC2 only", () => {
    const [machineKey] = Object.keys(synth.resources).filter(
      (k) =>
        synth.resources[k]?.Type === "AWS::StepFunctions::StateMachine" && synth.localId(k).startsWith("VerifyFlow"),
    );
    const definition = JSON.parse(
      synth
        .namesOf(machineKey as string)
        .resolve(synth.resources[machineKey as string]?.Properties.DefinitionString) as string,
    ) as {
      States: Record<
        string,
        { Parameters?: { VolumeConfigurations?: Array<{ ManagedEBSVolume: Record<string, unknown> }> } }
      >;
    };
    const [volume] = definition.States["Run verify task on a volume"]?.Parameters?.VolumeConfigurations ?? [];
    expect(volume?.ManagedEBSVolume).toMatchObject({ Encrypted: true, KmsKeyId: EBS_KEY });
    const statements = rolePolicies(synth, roleKey(synth, "WorkerVerifyVolumeRole")).flatMap((p) => p.policy.Statement);
    expect(statements).toEqual([
      expect.objectContaining({
        Action: expect.arrayContaining(["kms:CreateGrant", "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey"]),
        Resource: EBS_KEY,
        Condition: { StringEquals: { "kms:ViaService": expect.stringMatching(/^ec2\./) } },
      }),
    ]);
  });
});
