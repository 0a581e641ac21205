import { InvalidConfigError } from "#core/errors.ts";

/**
 * The IAM policies a synthesized deployment declares, read for the sim's IAM gateway:
 * each role's identity policies, and the resource policies of buckets, tables, topics
 * and secrets. It reads a list of resources with their properties already resolved
 * (Ref, Fn::GetAtt and Fn::Join replaced by local names), not one template, so that
 * resources gathered from a parent stack and its nested stacks read the same way.
 */

/** One resource of the deployment, as the deployment reader resolved it. */
export interface ResolvedResource {
  logicalId: string;
  type: string;
  /** Its properties, every intrinsic function resolved to the sim's local names. */
  properties: Record<string, unknown>;
  /** What `Ref` gives for it (a role's or a bucket's name, a topic's ARN, …). */
  ref: string;
  /** What `Fn::GetAtt [it, Arn]` gives. */
  arn: string;
}

/** The resource types the policies come from; the deployment reader passes these. */
export const POLICY_SOURCE_TYPES = [
  "AWS::IAM::Role",
  "AWS::IAM::Policy",
  "AWS::IAM::ManagedPolicy",
  "AWS::S3::BucketPolicy",
  "AWS::DynamoDB::Table",
  "AWS::DynamoDB::GlobalTable",
  "AWS::SNS::TopicPolicy",
  "AWS::SecretsManager::ResourcePolicy",
] as const;

/** A policy document with the name iam-simulate reports it by. */
export interface NamedPolicy {
  name: string;
  policy: PolicyDocument;
}

export interface PolicyDocument {
  Version?: string;
  Statement: Statement[] | Statement;
}

export type Statement = Record<string, unknown>;

type InlinePolicy = { PolicyName?: string; PolicyDocument?: PolicyDocument };

/**
 * AWS managed policies for roles that only an AWS service assumes to act for itself, and
 * that no principal of the sim (a function, a task, a flow) ever is: ECS's infrastructure
 * role for the EBS volumes it creates at launch. The sim does not emulate EC2's side of
 * that, so the policy's statements are never asked about.
 */
const SERVICE_ONLY_POLICIES: Record<string, string> = {
  "service-role/AmazonECSInfrastructureRolePolicyForVolumes": "ecs.amazonaws.com",
};

function actsOnlyForAws(role: ResolvedResource, policyArn: string): boolean {
  const name = /^arn:aws[a-z-]*:iam::aws:policy\/(.+)$/.exec(policyArn)?.[1];
  const service = name !== undefined ? SERVICE_ONLY_POLICIES[name] : undefined;
  if (!service) return false;
  const trust = role.properties.AssumeRolePolicyDocument as { Statement?: Array<{ Principal?: unknown }> } | undefined;
  const principals = (trust?.Statement ?? []).map((st) => JSON.stringify(st.Principal));
  return principals.length > 0 && principals.every((p) => p === JSON.stringify({ Service: service }));
}

export class TemplatePolicies {
  /** Identity policies by role ARN. */
  private readonly identity = new Map<string, NamedPolicy[]>();
  /** Resource policies by the ARN of the resource they guard (bucket, table, topic, secret). */
  private readonly resource = new Map<string, PolicyDocument>();

  private constructor() {}

  /**
   * Reads the policies out of `resources`. A role that attaches a policy the template
   * does not hold (an AWS managed policy) is refused: its statements are unknown here,
   * so no decision about that role could be trusted.
   */
  static fromResources(resources: Iterable<ResolvedResource>): TemplatePolicies {
    const all = [...resources];
    const out = new TemplatePolicies();
    const roleArnByName = new Map<string, string>();
    for (const r of all.filter((r) => r.type === "AWS::IAM::Role")) {
      roleArnByName.set(r.ref, r.arn);
      const inline = (r.properties.Policies ?? []) as InlinePolicy[];
      out.identity.set(
        r.arn,
        inline.flatMap((p, i) =>
          p.PolicyDocument ? [{ name: `${r.logicalId}.${p.PolicyName ?? i}`, policy: p.PolicyDocument }] : [],
        ),
      );
    }
    const attach = (roleNames: unknown, policy: NamedPolicy) => {
      for (const name of (roleNames ?? []) as string[]) {
        // A role outside the template (imported by name) is no principal of the sim's.
        const arn = roleArnByName.get(name);
        if (arn) out.identity.get(arn)?.push(policy);
      }
    };
    for (const p of all.filter((r) => r.type === "AWS::IAM::Policy")) {
      attach(p.properties.Roles, { name: p.logicalId, policy: p.properties.PolicyDocument as PolicyDocument });
    }
    const managed = all.filter((r) => r.type === "AWS::IAM::ManagedPolicy");
    for (const m of managed) {
      attach(m.properties.Roles, { name: m.logicalId, policy: m.properties.PolicyDocument as PolicyDocument });
    }
    for (const r of all.filter((r) => r.type === "AWS::IAM::Role")) {
      for (const arn of (r.properties.ManagedPolicyArns ?? []) as string[]) {
        const m = managed.find((m) => m.ref === arn || m.arn === arn);
        if (!m && actsOnlyForAws(r, arn)) continue;
        if (!m) {
          throw new InvalidConfigError(
            `role ${r.logicalId} attaches the managed policy ${arn}, whose statements the sim does not have`,
            { hint: "give the role its own statements (addToPolicy), or run the sim with --no-iam" },
          );
        }
        out.identity.get(r.arn)?.push({ name: m.logicalId, policy: m.properties.PolicyDocument as PolicyDocument });
      }
      if (r.properties.PermissionsBoundary !== undefined) {
        throw new InvalidConfigError(`role ${r.logicalId} has a permissions boundary, which the sim does not model`, {
          hint: "run the sim with --no-iam",
        });
      }
    }

    for (const b of all.filter((r) => r.type === "AWS::S3::BucketPolicy")) {
      out.addResourcePolicy(`arn:aws:s3:::${String(b.properties.Bucket)}`, b.properties.PolicyDocument);
    }
    for (const t of all.filter((r) => r.type === "AWS::DynamoDB::Table")) {
      const policy = (t.properties.ResourcePolicy as { PolicyDocument?: unknown } | undefined)?.PolicyDocument;
      if (policy) out.addResourcePolicy(t.arn, policy);
    }
    for (const t of all.filter((r) => r.type === "AWS::DynamoDB::GlobalTable")) {
      // The sim runs one region, so one replica's policy is the table's.
      const replicas = (t.properties.Replicas ?? []) as Array<{ ResourcePolicy?: { PolicyDocument?: unknown } }>;
      const policy = replicas.find((r) => r.ResourcePolicy?.PolicyDocument)?.ResourcePolicy?.PolicyDocument;
      if (policy) out.addResourcePolicy(t.arn, policy);
    }
    for (const p of all.filter((r) => r.type === "AWS::SNS::TopicPolicy")) {
      for (const topic of (p.properties.Topics ?? []) as string[])
        out.addResourcePolicy(topic, p.properties.PolicyDocument);
    }
    for (const p of all.filter((r) => r.type === "AWS::SecretsManager::ResourcePolicy")) {
      out.addResourcePolicy(String(p.properties.SecretId), p.properties.ResourcePolicy);
    }
    return out;
  }

  /** The role ARNs the template declares. */
  get roleArns(): string[] {
    return [...this.identity.keys()];
  }

  /** The role's identity policies, or undefined for a role the template does not declare. */
  identityPolicies(roleArn: string): NamedPolicy[] | undefined {
    return this.identity.get(roleArn);
  }

  /**
   * The policy of the resource `arn` falls under: an object's bucket, a table's (also
   * for its indexes and streams), a topic's, a secret's.
   */
  resourcePolicy(arn: string): PolicyDocument | undefined {
    const s3 = /^arn:aws:s3:::([^/]+)/.exec(arn);
    if (s3) return this.resource.get(`arn:aws:s3:::${s3[1]}`);
    const table = /^(arn:aws:dynamodb:[^:]*:[^:]*:table\/[^/]+)/.exec(arn);
    if (table) return this.resource.get(table[1] as string);
    return this.resource.get(arn) ?? this.secretPolicy(arn);
  }

  /**
   * Replaces the role's identity policies (tests use it to take a statement away and
   * watch a flow fail). Only the sim's copy changes.
   */
  setIdentityPolicies(roleArn: string, policies: NamedPolicy[]): void {
    if (!this.identity.has(roleArn)) throw new Error(`the template declares no role ${roleArn}`);
    this.identity.set(roleArn, policies);
  }

  private addResourcePolicy(arn: string, document: unknown): void {
    if (!document) return;
    const existing = this.resource.get(arn);
    // Two policies on one resource: AWS keeps the last deployed; the sim keeps both, so
    // neither's deny is lost.
    this.resource.set(
      arn,
      existing
        ? { Version: "2012-10-17", Statement: [...statements(existing), ...statements(document as PolicyDocument)] }
        : (document as PolicyDocument),
    );
  }

  /** A secret's policy may be keyed by its name or its ARN (whose name carries a 6-character suffix). */
  private secretPolicy(arn: string): PolicyDocument | undefined {
    const m = /^arn:aws:secretsmanager:[^:]*:[^:]*:secret:(.+)$/.exec(arn);
    if (!m?.[1]) return undefined;
    return this.resource.get(m[1]) ?? this.resource.get(m[1].replace(/-[A-Za-z0-9]{6}$/, ""));
  }
}

export function statements(document: PolicyDocument): Statement[] {
  return Array.isArray(document.Statement) ? document.Statement : [document.Statement];
}
