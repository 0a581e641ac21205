import { Annotations, Fn, RemovalPolicy } from "aws-cdk-lib";
import * as ec2 from "aws-cdk-lib/aws-ec2";
import * as logs from "aws-cdk-lib/aws-logs";
import { Construct } from "constructs";

/**
 * The interface endpoints a worker task in a private subnet needs, by what needs it:
 * ECS pulls the image (ecr.api for the token and manifest, ecr.dkr for the registry; the
 * layers come from S3, through the gateway endpoint), fetches the task definition's
 * secrets (secretsmanager) and ships the container's log lines (logs); the worker itself
 * calls S3 only. Not needed: Step Functions (runTask.sync is Step Functions calling ECS,
 * from outside the VPC; the task never calls back), DynamoDB (tasks run with
 * `--audit none`; the Lambdas, outside the VPC, write the audit and catalog rows), SSM
 * (only the Lambdas read parameters), KMS (S3 and Secrets Manager decrypt on their side),
 * STS (task credentials come from the ECS agent's endpoint inside the task).
 */
export const INTERFACE_ENDPOINTS = {
  EcrApi: ec2.InterfaceVpcEndpointAwsService.ECR,
  EcrDocker: ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
  Logs: ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
  SecretsManager: ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
} as const;

export interface ExistingNetwork {
  readonly vpcId: string;
  /** The subnets tasks run in: private ones, normally, in the database's VPC. */
  readonly subnetIds: readonly string[];
  /** @default two new groups: the tasks' (all egress, no ingress) and verify's (egress 443 only) */
  readonly securityGroupIds?: readonly string[];
  /**
   * Only in public subnets (a route to an internet gateway). In a private subnet a public
   * IP reaches nothing.
   * @default false
   */
  readonly assignPublicIp?: boolean;
  /**
   * Create the VPC endpoints tasks in private subnets need without a NAT: the S3 gateway
   * endpoint on `routeTableIds`, and interface endpoints (ECR api and dkr, CloudWatch
   * Logs, Secrets Manager) with private DNS, in `endpointSubnetIds`, behind a group that
   * admits HTTPS from the tasks' groups. Leave false when the VPC has a NAT, or has these
   * endpoints already (a second S3 gateway endpoint on a route table, or a second
   * interface endpoint with private DNS for a service, fails the deploy).
   * @default false
   */
  readonly createEndpoints?: boolean;
  /** The route tables of `subnetIds`, for the S3 gateway endpoint. Required with createEndpoints. */
  readonly routeTableIds?: readonly string[];
  /**
   * Where the interface endpoints' network interfaces go: at most one subnet per
   * Availability Zone (AWS refuses two in one zone), in the zones the tasks run in.
   * @default subnetIds
   */
  readonly endpointSubnetIds?: readonly string[];
}

export interface NetworkProps {
  /**
   * Use these subnets of an existing VPC instead of creating one: the normal case, since
   * the tasks must reach the database. Private subnets need VPC endpoints
   * (`createEndpoints`) or a NAT.
   * @default a new VPC with public subnets only and no NAT gateway (a trial: it cannot reach a database in another VPC)
   */
  readonly existing?: ExistingNetwork;
}

/**
 * Where the worker tasks run. Normally an existing VPC's private subnets, the database's
 * own VPC, with VPC endpoints for what a task needs of AWS. The created VPC (for trials)
 * has public subnets only: tasks get a public IP to reach ECR, S3, Secrets Manager and
 * the database, and no NAT gateway bills by the hour while nothing runs. Nothing can
 * connect in: no group made here has an ingress rule, but the endpoints' (443 from the
 * tasks).
 */
export class Network extends Construct {
  readonly vpc: ec2.IVpc;
  readonly subnetIds: string[];
  /**
   * The backup and restore tasks' groups: the groups a database's security group must
   * admit on its port.
   */
  readonly securityGroupIds: string[];
  /**
   * The verify tasks' groups. A verify task restores code a backed-up database's roles
   * wrote, so its group lets out HTTPS only (ECR, S3, Secrets Manager, CloudWatch Logs):
   * no database port, nothing else. Security groups do not filter the VPC's DNS resolver.
   * With existing groups configured, those.
   */
  readonly verifySecurityGroupIds: string[];
  readonly assignPublicIp: boolean;
  /** The endpoints' group, when createEndpoints made them. */
  readonly endpointSecurityGroup?: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: NetworkProps = {}) {
    super(scope, id);
    const existing = props.existing;
    if (existing) {
      const problems = existingNetworkProblems(existing);
      if (problems.length > 0) throw new Error(problems.join("\n"));
      this.vpc = ec2.Vpc.fromVpcAttributes(this, "Vpc", { vpcId: existing.vpcId, availabilityZones: Fn.getAzs() });
      // Offline, the zones are a token. Nothing here selects subnets from the VPC (the
      // subnets, route tables and groups are ids from the config), so no synth needs them.
      Annotations.of(this.vpc).acknowledgeWarning(
        "@aws-cdk/aws-ec2:vpcAttributeIsListTokenavailabilityZones",
        "subnets are given by id; nothing selects them by zone",
      );
      this.subnetIds = [...existing.subnetIds];
      this.assignPublicIp = existing.assignPublicIp ?? false;
    } else {
      const vpc = new ec2.Vpc(this, "Vpc", {
        maxAzs: 2,
        natGateways: 0,
        subnetConfiguration: [{ name: "tasks", subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 }],
      });
      vpc.addFlowLog("FlowLog", {
        destination: ec2.FlowLogDestination.toCloudWatchLogs(
          new logs.LogGroup(this, "FlowLogs", {
            retention: logs.RetentionDays.ONE_MONTH,
            removalPolicy: RemovalPolicy.DESTROY,
          }),
        ),
        trafficType: ec2.FlowLogTrafficType.REJECT,
      });
      // CDK's declarations predate exactOptionalPropertyTypes: a Vpc is an IVpc.
      this.vpc = vpc as ec2.IVpc;
      this.subnetIds = vpc.publicSubnets.map((s) => s.subnetId);
      this.assignPublicIp = true;
    }
    if (existing?.securityGroupIds?.length) {
      this.securityGroupIds = [...existing.securityGroupIds];
      this.verifySecurityGroupIds = [...existing.securityGroupIds];
    } else {
      const group = new ec2.SecurityGroup(this, "Tasks", {
        vpc: this.vpc,
        // Changing a description replaces the group, and a database's rule admits it by id.
        description: "strongroom worker tasks: outbound only",
        allowAllOutbound: true,
      });
      this.securityGroupIds = [group.securityGroupId];
      const verify = new ec2.SecurityGroup(this, "VerifyTasks", {
        vpc: this.vpc,
        description: "strongroom verify tasks: outbound HTTPS only",
        allowAllOutbound: false,
      });
      verify.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), "AWS APIs: ECR, S3, Secrets Manager, Logs");
      this.verifySecurityGroupIds = [verify.securityGroupId];
    }
    if (existing?.createEndpoints) this.endpointSecurityGroup = this.createEndpoints(existing);
  }

  /**
   * The S3 gateway endpoint (on the route tables: a gateway endpoint is a route, with no
   * address or group of its own) and the interface endpoints (a network interface per
   * subnet, private DNS on, so the services' usual names resolve to them and neither ECS
   * nor the SDK needs configuring). Level-1 resources: CDK's level-2 ones pick subnets by
   * Availability Zone, which an imported subnet id does not tell offline.
   */
  private createEndpoints(existing: ExistingNetwork): ec2.SecurityGroup {
    const group = new ec2.SecurityGroup(this, "Endpoints", {
      vpc: this.vpc,
      description: "strongroom VPC endpoints: HTTPS from the worker tasks",
      allowAllOutbound: false,
    });
    for (const taskGroup of new Set([...this.securityGroupIds, ...this.verifySecurityGroupIds])) {
      group.addIngressRule(ec2.Peer.securityGroupId(taskGroup), ec2.Port.tcp(443), "strongroom worker tasks");
    }
    new ec2.CfnVPCEndpoint(this, "S3", {
      vpcId: existing.vpcId,
      serviceName: ec2.GatewayVpcEndpointAwsService.S3.name,
      vpcEndpointType: "Gateway",
      routeTableIds: [...(existing.routeTableIds ?? [])],
    });
    const subnetIds = [...(existing.endpointSubnetIds ?? existing.subnetIds)];
    for (const [name, service] of Object.entries(INTERFACE_ENDPOINTS)) {
      new ec2.CfnVPCEndpoint(this, name, {
        vpcId: existing.vpcId,
        serviceName: service.name,
        vpcEndpointType: "Interface",
        privateDnsEnabled: true,
        subnetIds,
        securityGroupIds: [group.securityGroupId],
      });
    }
    return group;
  }
}

/**
 * What is wrong with an existing network's settings that the config's schema cannot say,
 * one line each, naming the config field. The config loader reports these with every
 * other problem; the construct refuses props that have any.
 */
export function existingNetworkProblems(existing: ExistingNetwork): string[] {
  const problems: string[] = [];
  if (existing.subnetIds.length === 0) problems.push("network.subnetIds: must name at least one subnet");
  if (existing.createEndpoints && !existing.routeTableIds?.length) {
    problems.push(
      "network.routeTableIds: required with createEndpoints: the route tables of subnetIds, where the S3 gateway endpoint goes",
    );
  }
  if (!existing.createEndpoints) {
    for (const field of ["routeTableIds", "endpointSubnetIds"] as const) {
      if (existing[field] !== undefined) problems.push(`network.${field}: read only with "createEndpoints": true`);
    }
  }
  if (existing.endpointSubnetIds?.length === 0) {
    problems.push("network.endpointSubnetIds: must name at least one subnet, or be left out (then subnetIds)");
  }
  return problems;
}

/**
 * What deploys but cannot work as the config stands, one line each, naming the field:
 * the config loader adds these to its warnings, and synth prints them.
 */
export function networkWarnings(network: { create: true } | ExistingNetwork): string[] {
  if ("create" in network) {
    return [
      "network.create: the VPC it creates is for trials: it cannot reach a database in another VPC without VPC peering or a Transit Gateway (nor with them where the two VPCs' address ranges overlap, as two default 10.0.0.0/16 ones do), and its tasks get public IPs, so they reach only a database open to the internet; use your database's VPC and private subnets (docs/network.md)",
    ];
  }
  if (!network.createEndpoints && !network.assignPublicIp) {
    return [
      'network: tasks in private subnets reach ECR, S3, Secrets Manager and CloudWatch Logs only through a NAT gateway or VPC endpoints, and without them no task starts (ResourceInitializationError); if the VPC has neither, set "createEndpoints": true with "routeTableIds"',
    ];
  }
  return [];
}
