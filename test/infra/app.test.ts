import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { Template } from "aws-cdk-lib/assertions";
import { afterAll, describe, expect, it } from "vitest";
import { buildApp } from "../../infra/app.ts";

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "../..");
let outDir: string | undefined;
afterAll(() => (outDir ? rm(outDir, { recursive: true, force: true }) : undefined));

describe("cdk app", () => {
  it("composes one Strongroom stack that, until the deploy issue lands, creates no resources", () => {
    const assembly = buildApp().synth();
    expect(assembly.stacks.map((s) => s.stackName)).toEqual(["Strongroom"]);
    const stack = assembly.getStackByName("Strongroom");
    expect(stack.template.Description).toBe("strongroom: PostgreSQL backups you own and can prove");
    // Nothing deployable yet: an empty stack cannot create or change anything in an account.
    expect(Template.fromJSON(stack.template).toJSON().Resources ?? {}).toEqual({});
  });

  it("synthesizes through cdk.json, as `cdk synth` and `cdk deploy` run it, offline", async () => {
    outDir = await mkdtemp(path.join(tmpdir(), "strongroom-cdk-"));
    await run(path.join(root, "node_modules/.bin/cdk"), ["synth", "--quiet", "--no-notices", "-o", outDir], {
      cwd: root,
      env: { ...process.env, CDK_DISABLE_VERSION_CHECK: "1" },
    });
    const template = JSON.parse(await readFile(path.join(outDir, "Strongroom.template.json"), "utf8"));
    expect(template.Description).toBe("strongroom: PostgreSQL backups you own and can prove");
    // The cloud assembly cdk deploy reads names the stack as a CloudFormation stack.
    const manifest = JSON.parse(await readFile(path.join(outDir, "manifest.json"), "utf8"));
    expect(manifest.artifacts.Strongroom.type).toBe("aws:cloudformation:stack");
  });
});
