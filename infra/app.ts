#!/usr/bin/env node
import { existsSync, realpathSync } from "node:fs";
import * as path from "node:path";
import { Annotations, App, Validations } from "aws-cdk-lib";
import { AwsSolutionsChecks } from "cdk-nag";
import { InvalidConfigError } from "#core/errors.ts";
import { loadConfig } from "./config/load-config.ts";
import { configErrorText, shownPath } from "./config/report.ts";
import { Undeployable } from "./constructs/undeployable.ts";
import { StrongroomStack } from "./stacks/strongroom-stack.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
export const EXAMPLE_CONFIG = path.join(ROOT, "strongroom.config.example.json");

/**
 * The config file: `-c config=FILE`, else strongroom.config.json at the repository root,
 * else (so that `npm run synth` works on a fresh clone) the example, whose template
 * CloudFormation refuses (isExampleConfig).
 */
export function configPath(app: App): string {
  const given = app.node.tryGetContext("config") as string | undefined;
  if (given) return path.resolve(given);
  const own = path.join(ROOT, "strongroom.config.json");
  return existsSync(own) ? own : EXAMPLE_CONFIG;
}

/**
 * Whether `file` is the example config itself (by its real path, however it was named). A
 * copy is not: it is the user's own, to edit, and its problems are the loader's to find.
 */
export function isExampleConfig(file: string): boolean {
  return realpathSync(file) === realpathSync(EXAMPLE_CONFIG);
}

/** What CloudFormation says when it refuses a template synthesized from the example. */
export const EXAMPLE_REFUSED =
  "strongroom: this template was synthesized from strongroom.config.example.json, whose ARNs and addresses are placeholders; copy it to strongroom.config.json, put in your own values, and deploy that";

/**
 * Composes the stack from the config and checks it with cdk-nag's AWS Solutions rules;
 * an unacknowledged finding fails the synth. `-c sim=true` (npm run sim) accepts the
 * config's `sim` section, which a real deploy refuses.
 */
export function buildApp(app = new App()): App {
  const purpose = app.node.tryGetContext("sim") === "true" || app.node.tryGetContext("sim") === true ? "sim" : "deploy";
  const file = configPath(app);
  const config = loadConfig(file, purpose);
  const stack = new StrongroomStack(app, "Strongroom", {
    stackName: config.name,
    description: "strongroom: PostgreSQL backups you own and can prove",
    config,
  });
  // The app cannot know whether it runs for `cdk synth` or `cdk deploy`: the template refuses.
  if (isExampleConfig(file)) new Undeployable(stack, "ExampleConfig", { reason: EXAMPLE_REFUSED });
  // cdk synth and deploy print these; they deploy, but would misbehave.
  for (const warning of config.warnings) Annotations.of(stack).addWarningV2("strongroom:config", warning);
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return app;
}

/**
 * What `cdk synth` and `cdk deploy` run (cdk.json), returning the exit code. A config with
 * problems is printed as those problems, one line each, not as a stack trace; the example
 * config is announced in one line, since its template is for reading only.
 */
export function main(app = new App()): number {
  try {
    buildApp(app);
  } catch (err) {
    if (!(err instanceof InvalidConfigError) || err.problems === undefined) throw err;
    process.stderr.write(configErrorText(err));
    return 1;
  }
  const file = configPath(app);
  if (isExampleConfig(file)) {
    process.stderr.write(
      `${shownPath(file)}: the example config (placeholder ARNs and addresses), synthesized to be read; CloudFormation refuses to deploy it: copy it to strongroom.config.json and put in your own values\n`,
    );
  }
  app.synth();
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = main();
