import { execFile } from "node:child_process";
import { copyFile, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { App } from "aws-cdk-lib";
import { FLAGS } from "aws-cdk-lib/cx-api";
import { afterAll, describe, expect, it } from "vitest";
import { buildApp, EXAMPLE_CONFIG, EXAMPLE_REFUSED } from "../../infra/app.ts";
import { Undeployable } from "../../infra/constructs/undeployable.ts";
import { runCommand } from "../helpers/run.ts";
import { exampleConfig } from "../helpers/stack.ts";
import { tempDir } from "../helpers/temp.ts";

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "../..");
let outDir: string | undefined;
afterAll(() => (outDir ? rm(outDir, { recursive: true, force: true }) : undefined));

/** `cdk synth` through cdk.json, offline, as a user runs it on a fresh clone: run once, read by two tests. */
let cdkSynth: Promise<{ stderr: string; dir: string }> | undefined;
function synthByCli(): Promise<{ stderr: string; dir: string }> {
  cdkSynth ??= (async () => {
    outDir = await mkdtemp(path.join(tmpdir(), "strongroom-cdk-"));
    const { stderr } = await run(
      path.join(root, "node_modules/.bin/cdk"),
      ["synth", "--quiet", "--no-notices", "-o", outDir],
      { cwd: root, env: { ...process.env, CDK_DISABLE_VERSION_CHECK: "1" } },
    );
    return { stderr, dir: outDir };
  })();
  return cdkSynth;
}

/** `node infra/app.ts`, the command cdk.json gives cdk synth and cdk deploy, with the context they pass it. */
async function runApp(context: Record<string, unknown>) {
  const dir = await tempDir("strongroom-app-");
  return runCommand(process.execPath, [path.join(root, "infra/app.ts")], undefined, {
    ...process.env,
    CDK_OUTDIR: dir,
    CDK_CONTEXT_JSON: JSON.stringify({ "aws:cdk:bundling-stacks": [], ...context }),
  });
}

type Condition = string | { [fn: string]: unknown };

/** A template rule's condition, as CloudFormation evaluates it with these parameter values. */
function evaluate(condition: Condition, parameters: Record<string, string>): unknown {
  if (typeof condition === "string") return condition;
  const [fn, args] = Object.entries(condition)[0] as [string, unknown];
  const arg = (i: number) => evaluate((args as Condition[])[i] as Condition, parameters);
  if (fn === "Ref") return parameters[args as string];
  if (fn === "Fn::Not") return !arg(0);
  if (fn === "Fn::Equals") return arg(0) === arg(1);
  throw new Error(`${fn} is not evaluated here`);
}

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
    const { dir, stderr } = await synthByCli();
    // Quiet: no esbuild size summary per function, no feature flag nag.
    expect(stderr).not.toMatch(/⚡ Done|index\.mjs|feature flags/);
    const template = JSON.parse(await readFile(path.join(dir, "Strongroom.template.json"), "utf8"));
    // cdk-nag ran as a validation plugin: an unacknowledged finding would have failed the synth.
    expect(Object.keys(template.Resources).length).toBeGreaterThan(50);
    expect(template.Description).toBe("strongroom: PostgreSQL backups you own and can prove");
    // The cloud assembly cdk deploy reads names the stack as a CloudFormation stack.
    const manifest = JSON.parse(await readFile(path.join(dir, "manifest.json"), "utf8"));
    expect(manifest.artifacts.Strongroom.type).toBe("aws:cloudformation:stack");
  });

  it("shows the example config for synth, saying so in one line, and makes its template one CloudFormation refuses to deploy", async () => {
    // GIVEN no strongroom.config.json: cdk synth and cdk deploy alike synthesize the example
    const { stderr, dir } = await synthByCli();
    const template = JSON.parse(await readFile(path.join(dir, "Strongroom.template.json"), "utf8")) as {
      Parameters: Record<string, { Default?: string; AllowedValues?: string[] }>;
      Rules: Record<string, { Assertions: Array<{ Assert: Condition; AssertDescription: string }> }>;
    };
    // THEN synth says it is the example, once
    expect(stderr.split("\n").filter((l) => l.startsWith("strongroom.config.example.json"))).toEqual([
      "strongroom.config.example.json: the example config (placeholder ARNs and addresses), synthesized to be read; CloudFormation refuses to deploy it: copy it to strongroom.config.json and put in your own values",
    ]);
    // AND the template has a rule that no parameter value a deploy may pass satisfies
    const refusals = Object.values(template.Rules).flatMap((r) =>
      r.Assertions.filter((a) => a.AssertDescription === EXAMPLE_REFUSED),
    );
    expect(refusals).toHaveLength(1);
    const assertion = refusals[0] as { Assert: Condition };
    const refs = [...JSON.stringify(assertion.Assert).matchAll(/"Ref":"([^"]+)"/g)].map((m) => m[1] as string);
    expect(refs).toHaveLength(1);
    const parameter = template.Parameters[refs[0] as string];
    expect(parameter?.AllowedValues?.length).toBeGreaterThan(0);
    for (const value of parameter?.AllowedValues ?? []) {
      expect(evaluate(assertion.Assert, { [refs[0] as string]: value })).toBe(false);
    }
  });

  it("refuses to deploy only the example itself, however it is named: a copy is the user's own config", async () => {
    const dir = await tempDir("strongroom-app-");
    const copy = path.join(dir, "strongroom.config.json");
    await copyFile(EXAMPLE_CONFIG, copy);
    const link = path.join(dir, "example.json");
    await symlink(EXAMPLE_CONFIG, link);
    const guarded = (config: string) =>
      buildApp(new App({ context: { config, "aws:cdk:bundling-stacks": [] } }))
        .node.findAll()
        .some((c) => c instanceof Undeployable);
    expect([EXAMPLE_CONFIG, link, copy].map(guarded)).toEqual([true, true, false]);
  });

  it("reports every problem of a config at once, one line each naming the file and the field, with no stack trace, and exits 1", async () => {
    // GIVEN a config with problems the schema finds and problems only the checks after it find
    const raw = exampleConfig();
    raw.alarmEmail = "ops";
    raw.databases[1].secretArn = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:rds/billing";
    raw.defaults.timeZone = "Mars/Olympus";
    raw.databases[1].id = "shop";
    const file = path.join(await tempDir("strongroom-app-"), "strongroom.config.json");
    await writeFile(file, JSON.stringify(raw));
    // WHEN the app runs as cdk synth or cdk deploy runs it
    const r = await runApp({ config: file });
    // THEN it prints each problem once, on its own line, then the hint, and nothing else
    expect(r.stderr).toBe(
      [
        `${file}: alarmEmail: must be an email address`,
        `${file}: databases[1].secretArn: must be the full ARN of a Secrets Manager secret, with the 6-character suffix (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf)`,
        `${file}: defaults.timeZone: unknown time zone "Mars/Olympus" (use an IANA name, e.g. Europe/Berlin)`,
        `${file}: databases[1].id: duplicate id "shop"`,
        "HINT: see strongroom.config.example.json and the README's Deploy section",
        "",
      ].join("\n"),
    );
    expect(r.stdout.toString()).toBe("");
    expect(r.code).toBe(1);
  });
});
