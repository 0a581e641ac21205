import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import * as path from "node:path";
import { App, Stack } from "aws-cdk-lib";
import { beforeAll, describe, expect, it } from "vitest";
import type { StrongroomError } from "#core/errors.ts";
import { buildApp } from "../../infra/app.ts";
import { parseConfig } from "../../infra/config/load-config.ts";
import { Network } from "../../infra/constructs/network.ts";
import { type CfnTemplate, LocalNames } from "../../infra/sim/template.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * AWS's rules for where the worker tasks run, as the synthesized template must keep them:
 * a gateway endpoint is routes in route tables; an interface endpoint is network
 * interfaces in subnets, reached by the service's usual name only with private DNS, and
 * only through a group that admits the tasks on 443; a task in a private subnet has no
 * public IP, and reaches AWS only through endpoints or a NAT. Asset bundling is skipped;
 * cdk-nag runs on every synth.
 */
const root = path.resolve(import.meta.dirname, "../..");
const example = () => JSON.parse(readFileSync(path.join(root, "strongroom.config.example.json"), "utf8"));
type Resource = { Type: string; Properties: Record<string, unknown> };

interface Synthesized {
  template: CfnTemplate & { Outputs: Record<string, { Value: unknown; Description?: string }> };
  resources: Record<string, Resource>;
  names: LocalNames;
  /** The synth's warnings, as cdk synth prints them. */
  warnings: string[];
}

async function synth(network: unknown): Promise<Synthesized> {
  const file = path.join(await tempDir("strongroom-network-"), "config.json");
  await writeFile(file, JSON.stringify({ ...example(), network }));
  const app = new App({ context: { config: file, "aws:cdk:bundling-stacks": [] } });
  const stack = buildApp(app).synth().getStackByName("strongroom");
  const template = stack.template as Synthesized["template"];
  return {
    template,
    resources: template.Resources as Record<string, Resource>,
    names: new LocalNames(template, "strongroom", { account: "123456789012", region: "eu-central-1" }),
    warnings: stack.messages.filter((m) => m.level === "warning").map((m) => String(m.entry.data)),
  };
}

const ofType = (s: Synthesized, type: string) => Object.entries(s.resources).filter(([, r]) => r.Type === type);

/** Each flow's RunTask network configuration, with Refs resolved as the sim names them. */
function runTaskNetworks(
  s: Synthesized,
): Record<string, { Subnets: string[]; SecurityGroups: string[]; AssignPublicIp: string }> {
  const out: Record<string, { Subnets: string[]; SecurityGroups: string[]; AssignPublicIp: string }> = {};
  for (const machine of s.names.resourcesOf("AWS::StepFunctions::StateMachine")) {
    const definition = JSON.parse(machine.properties.DefinitionString as string) as {
      States: Record<string, { Resource?: string; Parameters?: Record<string, unknown> }>;
    };
    for (const state of Object.values(definition.States)) {
      if (!String(state.Resource).endsWith("ecs:runTask.sync")) continue;
      const config = state.Parameters?.NetworkConfiguration as { AwsvpcConfiguration: (typeof out)[string] };
      out[machine.id.replace(/StateMachine[0-9A-F]{8}$/, "")] = config.AwsvpcConfiguration;
    }
  }
  return out;
}

const VPC = "vpc-0a1b2c3d4e5f60718";
const SUBNETS = ["subnet-0a1b2c3d4e5f60711", "subnet-0a1b2c3d4e5f60722"];
const ROUTE_TABLES = ["rtb-0a1b2c3d4e5f60733", "rtb-0a1b2c3d4e5f60744"];
const region = (service: string) => ({ "Fn::Join": ["", ["com.amazonaws.", { Ref: "AWS::Region" }, `.${service}`]] });

describe("an existing VPC's private subnets with createEndpoints (the normal case, and the example's)", () => {
  let s: Synthesized;
  beforeAll(async () => {
    s = await synth(example().network);
  });

  it("is what the example config deploys", () => {
    expect(example().network).toEqual({
      vpcId: VPC,
      subnetIds: SUBNETS,
      createEndpoints: true,
      routeTableIds: ROUTE_TABLES,
    });
  });

  it("attaches the S3 gateway endpoint to the subnets' route tables: a gateway endpoint is a route, with no subnet or group", () => {
    const gateways = ofType(s, "AWS::EC2::VPCEndpoint").filter(([, e]) => e.Properties.VpcEndpointType === "Gateway");
    expect(gateways.map(([, e]) => e.Properties)).toEqual([
      { VpcId: VPC, ServiceName: region("s3"), VpcEndpointType: "Gateway", RouteTableIds: ROUTE_TABLES },
    ]);
  });

  it("gives ECR (api and dkr), CloudWatch Logs and Secrets Manager interface endpoints with private DNS, in the task subnets", () => {
    const interfaces = ofType(s, "AWS::EC2::VPCEndpoint").filter(
      ([, e]) => e.Properties.VpcEndpointType === "Interface",
    );
    expect(interfaces.map(([, e]) => e.Properties.ServiceName)).toEqual(
      ["ecr.api", "ecr.dkr", "logs", "secretsmanager"].map(region),
    );
    for (const [id, e] of interfaces) {
      // Without private DNS, ECS and the SDK would still resolve the public names, and go nowhere.
      expect(e.Properties.PrivateDnsEnabled, id).toBe(true);
      expect(e.Properties.SubnetIds, id).toEqual(SUBNETS);
      expect(e.Properties.VpcId, id).toBe(VPC);
    }
  });

  it("puts the interface endpoints behind one group that admits HTTPS from every task group and nothing else", () => {
    const endpointGroups = new Set(
      ofType(s, "AWS::EC2::VPCEndpoint").flatMap(([, e]) => JSON.stringify(e.Properties.SecurityGroupIds ?? null)),
    );
    endpointGroups.delete("null");
    expect(endpointGroups.size).toBe(1);
    const [groupRef] = JSON.parse([...endpointGroups][0] as string) as Array<{ "Fn::GetAtt": [string, string] }>;
    const group = s.resources[groupRef?.["Fn::GetAtt"][0] as string] as Resource;
    const taskGroups = new Set(Object.values(runTaskNetworks(s)).flatMap((n) => n.SecurityGroups));
    expect(taskGroups.size).toBe(2); // backup and restore's, and verify's
    const ingress = group.Properties.SecurityGroupIngress as Array<Record<string, unknown>>;
    expect(ingress).toHaveLength(taskGroups.size);
    for (const rule of ingress) {
      expect(rule).toMatchObject({ IpProtocol: "tcp", FromPort: 443, ToPort: 443 });
      expect(rule).not.toHaveProperty("CidrIp");
      expect(taskGroups).toContain(s.names.resolve(rule.SourceSecurityGroupId));
    }
    expect(ofType(s, "AWS::EC2::SecurityGroupIngress")).toEqual([]);
  });

  it("makes no endpoint for what no task calls: Step Functions, DynamoDB, SSM, KMS, STS", () => {
    const services = ofType(s, "AWS::EC2::VPCEndpoint").map(([, e]) => JSON.stringify(e.Properties.ServiceName));
    for (const service of ["states", "dynamodb", "ssm", "kms", "sts"]) {
      expect(services).not.toContain(JSON.stringify(region(service)));
    }
  });

  it("runs every flow's tasks in the configured subnets without a public IP", () => {
    const networks = runTaskNetworks(s);
    expect(Object.keys(networks).sort()).toEqual(["BackupFlow", "RestoreFlow", "VerifyFlow"]);
    for (const [flow, n] of Object.entries(networks)) {
      expect(n.Subnets, flow).toEqual(SUBNETS);
      expect(n.AssignPublicIp, flow).toBe("DISABLED");
    }
  });

  it("outputs the backup and restore tasks' group (not verify's), telling the user to admit it on 5432", () => {
    const output = s.template.Outputs.DatabaseClientSecurityGroup;
    const networks = runTaskNetworks(s);
    expect(s.names.resolve(output?.Value)).toBe(networks.BackupFlow?.SecurityGroups[0]);
    expect(networks.RestoreFlow?.SecurityGroups).toEqual(networks.BackupFlow?.SecurityGroups);
    expect(networks.VerifyFlow?.SecurityGroups).not.toEqual(networks.BackupFlow?.SecurityGroups);
    expect(output?.Description).toContain("add an inbound rule on TCP 5432");
  });

  it("synthesizes offline with no warning", () => {
    expect(s.warnings).toEqual([]);
  });
});

describe("network.create (a trial)", () => {
  let s: Synthesized;
  beforeAll(async () => {
    s = await synth({ create: true });
  });

  it("creates a VPC with public subnets only, no NAT gateway and no endpoints, and gives tasks public IPs", () => {
    expect(ofType(s, "AWS::EC2::NatGateway")).toEqual([]);
    expect(ofType(s, "AWS::EC2::VPCEndpoint")).toEqual([]);
    const subnets = ofType(s, "AWS::EC2::Subnet");
    expect(subnets).toHaveLength(2);
    for (const [, subnet] of subnets) expect(subnet.Properties.MapPublicIpOnLaunch).toBe(true);
    for (const n of Object.values(runTaskNetworks(s))) {
      expect(n.AssignPublicIp).toBe("ENABLED");
      expect(n.Subnets).toEqual(subnets.map(([id]) => s.names.ref(id)));
    }
  });

  it("warns at synth that it cannot reach a database in another VPC, and that tasks get public IPs", () => {
    expect(s.warnings).toEqual([
      expect.stringMatching(
        /^network\.create: the VPC it creates is for trials: it cannot reach a database in another VPC without VPC peering or a Transit Gateway .* its tasks get public IPs/,
      ),
    ]);
  });
});

describe("an existing VPC's private subnets without createEndpoints", () => {
  let s: Synthesized;
  beforeAll(async () => {
    s = await synth({ vpcId: VPC, subnetIds: SUBNETS, securityGroupIds: ["sg-0a1b2c3d4e5f60755"] });
  });

  it("warns that a task starts only with a NAT gateway or VPC endpoints, and creates no endpoint", () => {
    expect(ofType(s, "AWS::EC2::VPCEndpoint")).toEqual([]);
    expect(s.warnings).toEqual([
      expect.stringMatching(
        /^network: tasks in private subnets reach ECR, S3, Secrets Manager and CloudWatch Logs only through a NAT gateway or VPC endpoints/,
      ),
    ]);
  });

  it("runs every task in the given group, and outputs it as the one the database must admit", () => {
    for (const n of Object.values(runTaskNetworks(s))) {
      expect(n).toEqual({ Subnets: SUBNETS, SecurityGroups: ["sg-0a1b2c3d4e5f60755"], AssignPublicIp: "DISABLED" });
    }
    expect(s.template.Outputs.DatabaseClientSecurityGroup?.Value).toBe("sg-0a1b2c3d4e5f60755");
    expect(ofType(s, "AWS::EC2::SecurityGroup")).toEqual([]);
  });
});

describe("network settings a schema cannot check", () => {
  function problemsOf(network: unknown): string[] {
    try {
      parseConfig({ ...example(), network }, "c.json");
    } catch (err) {
      expect((err as StrongroomError).name).toBe("InvalidConfigError");
      return (err as Error).message.split("\n").slice(1);
    }
    return [];
  }

  it("refuses createEndpoints without the route tables the S3 gateway endpoint goes in", () => {
    expect(problemsOf({ vpcId: VPC, subnetIds: SUBNETS, createEndpoints: true })).toEqual([
      "network.routeTableIds: required with createEndpoints: the route tables of subnetIds, where the S3 gateway endpoint goes",
    ]);
  });

  it("refuses endpoint settings without createEndpoints, which would be silently ignored", () => {
    expect(problemsOf({ vpcId: VPC, subnetIds: SUBNETS, routeTableIds: ROUTE_TABLES, endpointSubnetIds: [] })).toEqual([
      'network.routeTableIds: read only with "createEndpoints": true',
      'network.endpointSubnetIds: read only with "createEndpoints": true',
      "network.endpointSubnetIds: must name at least one subnet, or be left out (then subnetIds)",
    ]);
  });

  it("names the network's shapes when an id is malformed", () => {
    expect(problemsOf({ vpcId: VPC, subnetIds: SUBNETS, createEndpoints: true, routeTableIds: ["rt-1"] })).toEqual([
      expect.stringMatching(
        /^network: must be \{"vpcId": "vpc-…", .*"routeTableIds"\?: \["rtb-…"\].*\{"create": true\} for a trial/,
      ),
    ]);
  });

  it("gives an existing network in public subnets (assignPublicIp) no warning", () => {
    const config = parseConfig(
      { ...example(), network: { vpcId: VPC, subnetIds: SUBNETS, assignPublicIp: true } },
      "c",
    );
    expect(config.warnings).toEqual([]);
  });

  it("the Network construct refuses the same props, naming the field", () => {
    expect(
      () =>
        new Network(new Stack(), "Network", { existing: { vpcId: VPC, subnetIds: SUBNETS, createEndpoints: true } }),
    ).toThrow(/^network\.routeTableIds: required with createEndpoints/);
    expect(() => new Network(new Stack(), "Network", { existing: { vpcId: VPC, subnetIds: [] } })).toThrow(
      /^network\.subnetIds: must name at least one subnet$/,
    );
  });
});
