import { writeFile } from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { MAX_PER_GROUP, RESOURCES_PER_DATABASE, RESOURCES_PER_GROUP } from "../../infra/constructs/database-group.ts";
import type { CfnTemplate } from "../../infra/sim/template.ts";
import { generatedConfig } from "../helpers/stack.ts";
import { type Synthesized, synthesizeAll } from "../helpers/synth.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * The quotas a deployment of many databases meets in AWS, checked on synthesized
 * templates of 1, 50 and 200 databases. Each limit is AWS's, documented:
 * - CloudFormation: 500 resources per stack (a nested stack is a stack), a 1 MB template
 *   (from S3, as nested templates are), 200 parameters per template;
 * - Lambda: 4 KB for all of a function's environment variables together;
 * - Step Functions: a definition of at most 1 MB;
 * - IAM: 1,000 roles per account by default, 10,240 characters of inline policy per role;
 * - SSM Parameter Store: 4 KB per standard parameter;
 * - ECS: a family of letters, digits, `_` and `-`, at most 255.
 */
const QUOTA = {
  resourcesPerStack: 500,
  templateBytes: 1_000_000,
  parametersPerTemplate: 200,
  lambdaEnvironmentBytes: 4 * 1024,
  definitionBytes: 1_048_576,
  rolesPerAccount: 1000,
  inlinePolicyChars: 10_240,
  parameterValueBytes: 4 * 1024,
};

/** `n` databases, the first three (where there are more) with ids awkward in a family name. */
function manyDatabases(n: number): unknown {
  const raw = generatedConfig(n);
  if (n > 3) {
    ["a.b", "a_b", "A-b.c.d"].forEach((id, i) => {
      raw.databases[i].id = id;
    });
  }
  return raw;
}

async function synthesizeWith(n: number): Promise<{ synth: Synthesized; seconds: number }> {
  const file = path.join(await tempDir("strongroom-scale-"), "config.json");
  await writeFile(file, JSON.stringify(manyDatabases(n)));
  const started = performance.now();
  const synth = synthesizeAll(file);
  return { synth, seconds: (performance.now() - started) / 1000 };
}

function templates(s: Synthesized): Array<[string, CfnTemplate]> {
  return [["parent", s.parent], ...s.nested];
}

describe("a deployment of many databases stays within AWS's quotas", () => {
  it.each([1, 50, 200])(
    "%i databases: resources, template size and parameters per stack; Lambda environment; definitions; roles; settings",
    async (n) => {
      const { synth, seconds } = await synthesizeWith(n);
      const counts: Record<string, number> = {};
      for (const [id, t] of templates(synth)) {
        const resources = Object.keys(t.Resources).length;
        counts[id] = resources;
        expect(resources, `${id}: resources`).toBeLessThanOrEqual(QUOTA.resourcesPerStack);
        expect(Buffer.byteLength(JSON.stringify(t)), `${id}: template bytes`).toBeLessThanOrEqual(QUOTA.templateBytes);
        expect(Object.keys(t.Parameters ?? {}).length, `${id}: parameters`).toBeLessThanOrEqual(
          QUOTA.parametersPerTemplate,
        );
      }
      const all = Object.entries(synth.resources);
      const ofType = (type: string) => all.filter(([, r]) => r.Type === type);

      for (const [id, f] of ofType("AWS::Lambda::Function")) {
        const variables = (f.Properties.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables;
        // As Lambda counts it: the keys and values, once deployed (tokens resolved).
        const resolved = synth.namesOf(id).resolve(variables ?? {}) as Record<string, string>;
        const bytes = Object.entries(resolved).reduce(
          (sum, [k, v]) => sum + Buffer.byteLength(k) + Buffer.byteLength(String(v)),
          0,
        );
        expect(bytes, `${id}: environment bytes`).toBeLessThanOrEqual(QUOTA.lambdaEnvironmentBytes);
      }
      for (const [id, m] of ofType("AWS::StepFunctions::StateMachine")) {
        const definition = synth.namesOf(id).resolve(m.Properties.DefinitionString) as string;
        expect(Buffer.byteLength(definition), `${id}: definition bytes`).toBeLessThanOrEqual(QUOTA.definitionBytes);
      }

      const roles = ofType("AWS::IAM::Role");
      expect(roles.length).toBeLessThanOrEqual(QUOTA.rolesPerAccount / 2);
      for (const [id, r] of roles) {
        const inline = JSON.stringify(r.Properties.Policies ?? []).replace(/\s/g, "");
        expect(inline.length, `${id}: inline policy characters`).toBeLessThanOrEqual(QUOTA.inlinePolicyChars);
      }
      for (const [id, p] of ofType("AWS::SSM::Parameter")) {
        // Task definition ARNs resolve to at most ~120 bytes each; the tokens here are longer.
        const value = synth.namesOf(id).resolve(p.Properties.Value) as string;
        expect(Buffer.byteLength(value), `${id}: parameter bytes`).toBeLessThanOrEqual(QUOTA.parameterValueBytes);
      }
      expect(ofType("AWS::SSM::Parameter").length).toBe(n + 1); // each database's, and the restore target's

      const families = ofType("AWS::ECS::TaskDefinition").map(([, d]) => String(d.Properties.Family));
      // backup, restore, verify and verify-ebs per database; the restore target's
      expect(families.length).toBe(4 * n + 1);
      expect(new Set(families).size).toBe(families.length);
      for (const f of families) expect(f).toMatch(/^[A-Za-z0-9_-]{1,255}$/);

      // For the closing note: how big each size is, and how long synth (with cdk-nag) took.
      console.info(
        `${n} databases: ${all.length} resources in ${synth.nested.size + 1} stacks (largest ${Math.max(...Object.values(counts))}), ${roles.length} roles, synth ${seconds.toFixed(1)} s`,
      );
    },
    600_000,
  );

  it("keeps a database in the same nested stack whatever else is configured, so adding one never moves another", async () => {
    const groupsOf = (s: Synthesized) =>
      new Map(
        Object.entries(s.resources)
          .filter(([, r]) => r.Type === "AWS::ECS::TaskDefinition" && String(r.Properties.Family).includes("_backup_"))
          .map(([key, r]) => [String(r.Properties.Family), key.split("/")[0]]),
      );
    const few = groupsOf((await synthesizeWith(12)).synth);
    const more = groupsOf((await synthesizeWith(30)).synth);
    for (const [family, group] of few) expect(more.get(family), family).toBe(group);
    expect(MAX_PER_GROUP * RESOURCES_PER_DATABASE + RESOURCES_PER_GROUP).toBeLessThan(QUOTA.resourcesPerStack);
  }, 600_000);
});
