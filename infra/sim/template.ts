import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { App } from "aws-cdk-lib";
import { buildApp } from "../app.ts";

/**
 * The synthesized template, read the way npm run sim needs it: CloudFormation's
 * intrinsic functions resolved to local names, so that a state machine's definition,
 * a task definition's environment or a Lambda's variables can be used as they are.
 */

export interface CfnResource {
  Type: string;
  Properties?: Record<string, unknown>;
  Metadata?: Record<string, unknown>;
}

export interface CfnTemplate {
  Resources: Record<string, CfnResource>;
  Parameters?: Record<string, unknown>;
}

/** A synthesized stack: the parent's template and each nested stack's, by its logical id in the parent. */
export interface SynthesizedStack {
  stackName: string;
  template: CfnTemplate;
  nested: Map<string, CfnTemplate>;
}

/** The account and region moto answers as (moto's fixed account id, the SDK's region). */
export interface Place {
  account: string;
  region: string;
}

/**
 * Synthesizes the app in this process with the given config, as `cdk synth -c sim=true
 * -c config=FILE` would, cdk-nag included. Assets are not bundled: npm run sim runs the
 * handlers and the worker from the checkout, not from their bundles.
 */
export function synthesize(configFile: string): SynthesizedStack {
  const outdir = mkdtempSync(path.join(os.tmpdir(), "strongroom-synth-"));
  try {
    const app = new App({
      outdir,
      context: {
        config: path.resolve(configFile),
        sim: "true",
        "aws:cdk:bundling-stacks": [],
        // Each resource's construct path, by which the sim finds a flow's or a function's name.
        "aws:cdk:enable-path-metadata": true,
        // Each nested stack's template file, by which the sim reads its resources.
        "aws:cdk:enable-asset-metadata": true,
      },
    });
    const assembly = buildApp(app).synth();
    const [stack] = assembly.stacks;
    if (!stack) throw new Error("the app synthesized no stack");
    const template = stack.template as CfnTemplate;
    // Read now: the files go with the output directory.
    const nested = new Map<string, CfnTemplate>();
    for (const [id, r] of Object.entries(template.Resources)) {
      if (r.Type !== "AWS::CloudFormation::Stack") continue;
      const file = r.Metadata?.["aws:asset:path"];
      if (typeof file !== "string") throw new Error(`nested stack ${id} names no template file`);
      nested.set(id, JSON.parse(readFileSync(path.join(assembly.directory, file), "utf8")) as CfnTemplate);
    }
    return { stackName: stack.stackName, template, nested };
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

/** The construct path's part below the stack: `BackupFlow/StateMachine/Resource`. */
export function constructPath(resource: CfnResource): string {
  const full = resource.Metadata?.["aws:cdk:path"];
  return typeof full === "string" ? full.split("/").slice(1).join("/") : "";
}

/**
 * What `Ref` and `Fn::GetAtt` give for each resource, made up locally in the shapes AWS
 * uses (names under the stack's name, ARNs in the sim's account and region), so that
 * resolved values name the buckets, tables and topics the sim creates.
 */
export class LocalNames {
  private readonly template: CfnTemplate;
  private readonly stackName: string;
  readonly place: Place;
  /** A nested stack's parameters, as its parent passes them (resolved in the parent). */
  private readonly parameters: Record<string, unknown>;

  constructor(template: CfnTemplate, stackName: string, place: Place, parameters: Record<string, unknown> = {}) {
    this.template = template;
    this.stackName = stackName;
    this.place = place;
    this.parameters = parameters;
  }

  /**
   * Names for each nested stack of this (parent) template: physical names under
   * `<stack>-<nested logical id>`, parameters resolved here.
   */
  nestedNames(nested: Map<string, CfnTemplate>): LocalNames[] {
    return [...nested].map(([id, template]) => {
      const given = (this.template.Resources[id]?.Properties?.Parameters ?? {}) as Record<string, unknown>;
      const parameters = this.resolve(given) as Record<string, unknown>;
      return new LocalNames(template, `${this.stackName}-${id.slice(0, 24)}`, this.place, parameters);
    });
  }

  /** A physical name for a resource: `<stack>-<logical id>`, lower case where AWS needs it. */
  physicalName(logicalId: string): string {
    const type = this.resource(logicalId).Type;
    if (type === "AWS::S3::Bucket") {
      return `${this.stackName}-${logicalId}`
        .toLowerCase()
        .replace(/[^a-z0-9-]/g, "-")
        .slice(0, 63);
    }
    return `${this.stackName}-${logicalId}`;
  }

  ref(logicalId: string): string {
    const { account, region } = this.place;
    switch (logicalId) {
      case "AWS::Partition":
        return "aws";
      case "AWS::Region":
        return region;
      case "AWS::AccountId":
        return account;
      case "AWS::URLSuffix":
        return "amazonaws.com";
      case "AWS::StackName":
        return this.stackName;
    }
    if (logicalId in this.parameters) return this.parameters[logicalId] as string;
    const name = this.physicalName(logicalId);
    const resource = this.resource(logicalId);
    switch (resource.Type) {
      case "AWS::ECS::TaskDefinition": {
        // A task definition's ARN names its family (CloudFormation's made-up name without one).
        const family = resource.Properties?.Family;
        return `arn:aws:ecs:${region}:${account}:task-definition/${typeof family === "string" ? family : name}:1`;
      }
      case "AWS::SSM::Parameter":
        return String(this.resolve(resource.Properties?.Name ?? name));
      case "AWS::SNS::Topic":
      case "AWS::StepFunctions::StateMachine":
        return this.arn(logicalId);
      default:
        return name;
    }
  }

  getAtt(logicalId: string, attribute: string): string {
    if (attribute === "Arn") return this.arn(logicalId);
    if (attribute === "GroupId") return `sg-${logicalId}`;
    if (attribute === "TopicName" || attribute === "Name") return this.physicalName(logicalId);
    return `${this.physicalName(logicalId)}.${attribute}`;
  }

  private arn(logicalId: string): string {
    const { account, region } = this.place;
    const name = this.physicalName(logicalId);
    const type = this.resource(logicalId).Type;
    const arns: Record<string, string> = {
      "AWS::Lambda::Function": `arn:aws:lambda:${region}:${account}:function:${name}`,
      "AWS::ECS::Cluster": `arn:aws:ecs:${region}:${account}:cluster/${name}`,
      "AWS::S3::Bucket": `arn:aws:s3:::${name}`,
      "AWS::DynamoDB::GlobalTable": `arn:aws:dynamodb:${region}:${account}:table/${name}`,
      "AWS::DynamoDB::Table": `arn:aws:dynamodb:${region}:${account}:table/${name}`,
      "AWS::SNS::Topic": `arn:aws:sns:${region}:${account}:${name}`,
      "AWS::StepFunctions::StateMachine": `arn:aws:states:${region}:${account}:stateMachine:${name}`,
      "AWS::IAM::Role": `arn:aws:iam::${account}:role${String(this.resource(logicalId).Properties?.Path ?? "/")}${name}`,
      "AWS::SQS::Queue": `arn:aws:sqs:${region}:${account}:${name}`,
      // CloudFormation's Arn of a log group ends in `:*`.
      "AWS::Logs::LogGroup": `arn:aws:logs:${region}:${account}:log-group:${name}:*`,
    };
    return arns[type] ?? `arn:aws:cloudformation:${region}:${account}:${type}/${name}`;
  }

  private resource(logicalId: string): CfnResource {
    const resource = this.template.Resources[logicalId];
    if (!resource) throw new Error(`the template has no resource ${logicalId}`);
    return resource;
  }

  /** `value` with every Ref, Fn::GetAtt, Fn::Join and Fn::Sub replaced by its local value. */
  resolve(value: unknown): unknown {
    if (Array.isArray(value)) return value.map((v) => this.resolve(v));
    if (typeof value !== "object" || value === null) return value;
    const entries = Object.entries(value);
    const [key, arg] = entries[0] ?? [];
    if (entries.length === 1 && key !== undefined) {
      if (key === "Ref") return this.ref(arg as string);
      if (key === "Fn::GetAtt") {
        const [id, attribute] = Array.isArray(arg) ? arg : String(arg).split(".");
        return this.getAtt(id as string, attribute as string);
      }
      if (key === "Fn::Join") {
        const [separator, parts] = arg as [string, unknown[]];
        return (this.resolve(parts) as unknown[]).join(separator);
      }
      if (key === "Fn::Sub" && typeof arg === "string") {
        return arg.replace(/\$\{([^}]+)\}/g, (_, name: string) =>
          name.includes(".") ? this.getAtt(...(name.split(".", 2) as [string, string])) : this.ref(name),
        );
      }
    }
    return Object.fromEntries(entries.map(([k, v]) => [k, this.resolve(v)]));
  }

  /** The resources of one type, with their properties resolved. */
  resourcesOf(type: string): Array<{ id: string; path: string; properties: Record<string, unknown> }> {
    return Object.entries(this.template.Resources)
      .filter(([, r]) => r.Type === type)
      .map(([id, r]) => ({
        id,
        path: constructPath(r),
        properties: this.resolve(r.Properties ?? {}) as Record<string, unknown>,
      }));
  }
}
