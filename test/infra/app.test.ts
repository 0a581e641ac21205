import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { App } from "aws-cdk-lib";
import { FLAGS } from "aws-cdk-lib/cx-api";
import { afterAll, describe, expect, it } from "vitest";
import { buildApp } from "../../infra/app.ts";

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "../..");
let outDir: string | undefined;
afterAll(() => (outDir ? rm(outDir, { recursive: true, force: true }) : undefined));

describe("cdk app", () => {
  it("composes one stack, named by the config, from the example when no config is given", () => {
    const assembly = buildApp(new App({ context: { "aws:cdk:bundling-stacks": [] } })).synth();
    expect(assembly.stacks.map((s) => s.stackName)).toEqual(["strongroom"]);
    const stack = assembly.getStackByName("strongroom");
    expect(stack.template.Description).toBe("strongroom: PostgreSQL backups you own and can prove");
  });

  it("fails the synth on a bad config, one line per problem", () => {
    expect(() =>
      buildApp(new App({ context: { config: path.join(root, "package.json"), "aws:cdk:bundling-stacks": [] } })),
    ).toThrow(/package\.json has \d+ problems:\n(name|bucket|recipients).*: /);
  });

  it("pins in cdk.json every feature flag synth would call unconfigured, to how it behaves unset: no template changes", async () => {
    const context = JSON.parse(await readFile(path.join(root, "cdk.json"), "utf8")).context as Record<string, unknown>;
    // Set on purpose to their recommended values when the app was made.
    const chosen = new Set(["@aws-cdk/core:checkSecretUsage", "@aws-cdk/core:target-partitions"]);
    for (const [name, flag] of Object.entries(FLAGS)) {
      const unset = flag.unconfiguredBehavesLike?.v2 ?? false;
      if (chosen.has(name) || unset === flag.recommendedValue) continue;
      expect([name, context[name]]).toEqual([name, unset]);
    }
  });

  it("synthesizes through cdk.json, as `cdk synth` and `cdk deploy` run it, offline", async () => {
    outDir = await mkdtemp(path.join(tmpdir(), "strongroom-cdk-"));
    const { stderr } = await run(
      path.join(root, "node_modules/.bin/cdk"),
      ["synth", "--quiet", "--no-notices", "-o", outDir],
      { cwd: root, env: { ...process.env, CDK_DISABLE_VERSION_CHECK: "1" } },
    );
    // Quiet: no esbuild size summary per function, no feature flag nag.
    expect(stderr).not.toMatch(/⚡ Done|index\.mjs|feature flags/);
    const template = JSON.parse(await readFile(path.join(outDir, "Strongroom.template.json"), "utf8"));
    // cdk-nag ran as a validation plugin: an unacknowledged finding would have failed the synth.
    expect(Object.keys(template.Resources).length).toBeGreaterThan(50);
    expect(template.Description).toBe("strongroom: PostgreSQL backups you own and can prove");
    // The cloud assembly cdk deploy reads names the stack as a CloudFormation stack.
    const manifest = JSON.parse(await readFile(path.join(outDir, "manifest.json"), "utf8"));
    expect(manifest.artifacts.Strongroom.type).toBe("aws:cloudformation:stack");
  });
});
