import { writeFile } from "node:fs/promises";
import * as path from "node:path";
import { runSimulation } from "@cloud-copilot/iam-simulate";
import { beforeAll, describe, expect, it } from "vitest";
import type { LocalNames } from "../../infra/sim/template.ts";
import { exampleConfig } from "../helpers/stack.ts";
import { ACCOUNT, type Synthesized, synthesizeAll } from "../helpers/synth.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * Deletions by anyone else: strongroom's audit log records its own acts, and S3 keeps no
 * record of who deleted an object. A CloudTrail trail of the bucket's S3 data events
 * does. CloudTrail's rules: a data resource `AWS::S3::Object` with value `<bucket
 * ARN>/<prefix>` covers the objects under that prefix; `WriteOnly` covers PutObject,
 * DeleteObject(s) and the multipart calls; the trail delivers to its bucket as
 * cloudtrail.amazonaws.com, which the bucket's policy must allow.
 */
let synth: Synthesized;
let names: LocalNames;

beforeAll(() => {
  synth = synthesizeAll(path.resolve(import.meta.dirname, "../../strongroom.config.example.json"));
  names = synth.stacks[0] as LocalNames;
});

describe("the object trail", () => {
  it("records every write and delete of the objects under strongroom's prefix, by anyone", () => {
    const trails = names.resourcesOf("AWS::CloudTrail::Trail");
    expect(trails).toHaveLength(1);
    const [bucket] = names.resourcesOf("AWS::S3::Bucket").filter((b) => b.id.startsWith("BackupsBucket"));
    const selectors = trails[0]?.properties.EventSelectors as Array<{
      ReadWriteType: string;
      DataResources: Array<{ Type: string; Values: string[] }>;
    }>;
    const covering = selectors.filter((s) => ["WriteOnly", "All"].includes(s.ReadWriteType));
    const values = covering.flatMap((s) =>
      s.DataResources.filter((r) => r.Type === "AWS::S3::Object").flatMap((r) => r.Values),
    );
    // The key of every object strongroom writes starts with the prefix, so the value covers it.
    const backup = `${names.getAtt(bucket?.id as string, "Arn")}/pg/shop/backups/20261201T020000Z-abcdef/manifest.json`;
    expect(values.some((v) => backup.startsWith(v))).toBe(true);
    expect(trails[0]?.properties.IsLogging).toBe(true);
    expect(trails[0]?.properties.EnableLogFileValidation).toBe(true);
  });

  it("lets CloudTrail deliver to its log bucket, as S3 evaluates the bucket's policy", async () => {
    const [trail] = names.resourcesOf("AWS::CloudTrail::Trail");
    const logBucket = String(trail?.properties.S3BucketName);
    const [policy] = names.resourcesOf("AWS::S3::BucketPolicy").filter((p) => p.properties.Bucket === logBucket);
    const deliver = async (key: string) => {
      const out = await runSimulation(
        {
          request: {
            principal: "cloudtrail.amazonaws.com",
            action: "s3:PutObject",
            resource: { resource: `arn:aws:s3:::${logBucket}/${key}`, accountId: ACCOUNT },
            contextVariables: { "aws:SecureTransport": "true", "s3:x-amz-acl": "bucket-owner-full-control" },
          },
          identityPolicies: [],
          serviceControlPolicies: [],
          resourceControlPolicies: [],
          resourcePolicy: policy?.properties.PolicyDocument,
        },
        {},
      );
      if (out.resultType === "error") throw new Error(JSON.stringify(out.errors));
      return out.overallResult;
    };
    expect(await deliver(`AWSLogs/${ACCOUNT}/CloudTrail/eu-central-1/2026/12/02/x.json.gz`)).toBe("Allowed");
    expect(await deliver("elsewhere/x.json.gz")).not.toBe("Allowed");
  });

  it("is left out when the config says objectTrail: false (an organisation trail already records data events)", async () => {
    const file = path.join(await tempDir("strongroom-trail-"), "config.json");
    await writeFile(file, JSON.stringify({ ...exampleConfig(), objectTrail: false }));
    const without = synthesizeAll(file);
    expect((without.stacks[0] as LocalNames).resourcesOf("AWS::CloudTrail::Trail")).toEqual([]);
  });
});
