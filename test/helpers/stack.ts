import { readFileSync } from "node:fs";
import * as path from "node:path";
import { App } from "aws-cdk-lib";
import { parseConfig } from "../../infra/config/load-config.ts";
import { StrongroomStack } from "../../infra/stacks/strongroom-stack.ts";

/** Configs and synthesized templates for the infra tests. Asset bundling is skipped. */

const root = path.resolve(import.meta.dirname, "../..");

/** strongroom.config.example.json, parsed afresh (callers edit it). */
// biome-ignore lint/suspicious/noExplicitAny: a config as written, edited freely by tests before it is parsed
export function exampleConfig(): any {
  return JSON.parse(readFileSync(path.join(root, "strongroom.config.example.json"), "utf8"));
}

/**
 * The example config with `count` databases of its own instead of the example's two:
 * `db-001`, `db-002`, …, each with a secret of its own (username and password, as RDS
 * writes it) and its host and database name.
 */
// biome-ignore lint/suspicious/noExplicitAny: as exampleConfig
export function generatedConfig(count: number): any {
  const raw = exampleConfig();
  raw.databases = Array.from({ length: count }, (_, i) => {
    const id = `db-${String(i + 1).padStart(3, "0")}`;
    return {
      id,
      secretArn: `arn:aws:secretsmanager:eu-central-1:123456789012:secret:rds/${id}-AbCdEf`,
      restoreSecretArn: `arn:aws:secretsmanager:eu-central-1:123456789012:secret:rds/${id}-restore-GhIjKl`,
      host: `${id}.cluster-abc123.eu-central-1.rds.amazonaws.com`,
      dbname: id.replace("-", "_"),
    };
  });
  return raw;
}

/** The stack's template from a config as written (checked as `cdk synth` checks it). */
export function synthesize(raw: unknown): { Resources: Record<string, CfnResource> } {
  const app = new App({ context: { "aws:cdk:bundling-stacks": [] } });
  new StrongroomStack(app, "Strongroom", { stackName: "strongroom", config: parseConfig(raw, "test config") });
  return app.synth().getStackByName("strongroom").template;
}

export interface CfnResource {
  Type: string;
  Properties: Record<string, unknown>;
  DeletionPolicy?: string;
  UpdateReplacePolicy?: string;
}
