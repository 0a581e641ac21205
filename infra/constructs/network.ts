import { Fn, RemovalPolicy } from "aws-cdk-lib";
import * as ec2 from "aws-cdk-lib/aws-ec2";
import * as logs from "aws-cdk-lib/aws-logs";
import { Construct } from "constructs";

export interface NetworkProps {
  /**
   * Use these subnets of an existing VPC instead of creating one. Private subnets need
   * VPC endpoints (S3 gateway; ECR api and dkr; logs; secretsmanager; states) or a NAT.
   * @default a new VPC with public subnets only and no NAT gateway
   */
  readonly existing?: {
    readonly vpcId: string;
    readonly subnetIds: readonly string[];
    /** @default one new group, all egress, no ingress */
    readonly securityGroupIds?: readonly string[];
    /** @default false */
    readonly assignPublicIp?: boolean;
  };
}

/**
 * Where the worker tasks run. The created VPC has public subnets only: tasks get a
 * public IP to reach ECR, S3, Secrets Manager and the database, and no NAT gateway bills
 * by the hour while nothing runs. Nothing can connect in: the security group has no
 * ingress rule.
 */
export class Network extends Construct {
  readonly vpc: ec2.IVpc;
  readonly subnetIds: string[];
  readonly securityGroupIds: string[];
  /**
   * The verify tasks' groups. A verify task restores code a backed-up database's roles
   * wrote, so its group lets out HTTPS only (ECR, S3, Secrets Manager, CloudWatch Logs):
   * no database port, nothing else. Security groups do not filter the VPC's DNS resolver.
   * With existing groups configured, those.
   */
  readonly verifySecurityGroupIds: string[];
  readonly assignPublicIp: boolean;

  constructor(scope: Construct, id: string, props: NetworkProps = {}) {
    super(scope, id);
    const existing = props.existing;
    if (existing) {
      if (existing.subnetIds.length === 0) throw new Error("network.subnetIds must name at least one subnet");
      this.vpc = ec2.Vpc.fromVpcAttributes(this, "Vpc", { vpcId: existing.vpcId, availabilityZones: Fn.getAzs() });
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
  }
}
