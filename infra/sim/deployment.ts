import { POLICY_SOURCE_TYPES, type ResolvedResource } from "./iam-policies.ts";
import { LocalNames, type Place, synthesize } from "./template.ts";

/**
 * What the synthesized template deploys, as npm run sim uses it: the flows' definitions,
 * the functions and their environments, the task definitions' containers, and the
 * buckets, tables, topics and secrets to create in the stand-ins. Everything here is
 * read from the template; nothing is taken from the CDK constructs.
 */

export interface Flow {
  name: string;
  arn: string;
  /** The state machine's role: what its own calls (invoke, RunTask, publish) run as. */
  roleArn: string;
  /** The Amazon States Language definition, tokens resolved. */
  definition: { StartAt: string; States: Record<string, Record<string, unknown>> } & Record<string, unknown>;
}

export interface LambdaFunction {
  /** The handler's folder under functions/ (the construct id under Handlers). */
  name: string;
  arn: string;
  environment: Record<string, string>;
  timeoutSeconds: number;
  /** The function's execution role. */
  roleArn: string;
}

export interface ContainerDefinition {
  Name: string;
  Environment?: Array<{ Name: string; Value: string }>;
  Secrets?: Array<{ Name: string; ValueFrom: string }>;
  /** `name`, `uid`, `name:group`, `uid:gid`. Absent: the image's USER. */
  User?: string;
  ReadonlyRootFilesystem?: boolean;
  MountPoints?: Array<{ ContainerPath: string; SourceVolume: string; ReadOnly?: boolean }>;
}

/** A task definition's volume: on Fargate, an empty bind mount unless it names EFS or is configured at launch (EBS). */
export interface TaskVolume {
  Name: string;
  Host?: { SourcePath?: string };
  EFSVolumeConfiguration?: unknown;
  ConfiguredAtLaunch?: boolean;
}

export interface TaskDefinition {
  arn: string;
  containers: ContainerDefinition[];
  volumes: TaskVolume[];
  /** What the containers' AWS calls run as. */
  taskRoleArn?: string;
  /** What ECS itself runs as to start the task (pull the image, fetch the secrets). */
  executionRoleArn?: string;
}

export interface TableDefinition {
  name: string;
  keySchema: Array<{ AttributeName: string; KeyType: string }>;
  attributes: Array<{ AttributeName: string; AttributeType: string }>;
}

export interface Schedule {
  name: string;
  targetArn: string;
  input: unknown;
}

export interface Deployment {
  stackName: string;
  place: Place;
  flows: Map<string, Flow>;
  functions: Map<string, LambdaFunction>;
  taskDefinitions: Map<string, TaskDefinition>;
  tables: TableDefinition[];
  topics: Array<{ arn: string; name: string }>;
  /** Buckets the worker and the functions are pointed at (created or imported). */
  buckets: string[];
  /** Secret ARNs the task definitions read. */
  secretArns: string[];
  schedules: Schedule[];
  /** SSM parameters the template writes (each database's settings), by name. */
  parameters: Array<{ name: string; value: string }>;
  /** The resources the IAM gateway reads its policies from (roles, policies, resource policies), resolved. */
  resources: ResolvedResource[];
}

/** Synthesizes the app with `configFile` and reads the deployment out of its template. */
export function readDeployment(configFile: string, place: Place): Deployment {
  const { stackName, template, nested } = synthesize(configFile);
  const parent = new LocalNames(template, stackName, place);
  // The parent's resources and every nested stack's, each resolved in its own stack.
  const stacks = [parent, ...parent.nestedNames(nested)];
  const resourcesOf = (type: string) =>
    stacks.flatMap((names) => names.resourcesOf(type).map((r) => ({ ...r, names })));

  const flows = new Map<string, Flow>();
  for (const sm of resourcesOf("AWS::StepFunctions::StateMachine")) {
    const name = sm.path.split("/")[0] ?? sm.id;
    flows.set(name, {
      name,
      arn: sm.names.getAtt(sm.id, "Arn"),
      roleArn: String(sm.properties.RoleArn),
      definition: JSON.parse(sm.properties.DefinitionString as string) as Flow["definition"],
    });
  }

  const functions = new Map<string, LambdaFunction>();
  for (const f of resourcesOf("AWS::Lambda::Function")) {
    const match = /^Handlers\/([^/]+)\/Resource$/.exec(f.path);
    if (!match?.[1]) continue; // CDK's own helper functions (log retention, …) are not flow steps.
    const variables = (f.properties.Environment as { Variables?: Record<string, string> } | undefined)?.Variables;
    functions.set(f.names.getAtt(f.id, "Arn"), {
      name: match[1],
      arn: f.names.getAtt(f.id, "Arn"),
      environment: variables ?? {},
      timeoutSeconds: Number(f.properties.Timeout ?? 3),
      roleArn: String(f.properties.Role),
    });
  }

  const taskDefinitions = new Map<string, TaskDefinition>();
  for (const d of resourcesOf("AWS::ECS::TaskDefinition")) {
    const arn = d.names.ref(d.id);
    taskDefinitions.set(arn, {
      arn,
      containers: d.properties.ContainerDefinitions as ContainerDefinition[],
      volumes: (d.properties.Volumes as TaskVolume[] | undefined) ?? [],
      ...(d.properties.TaskRoleArn ? { taskRoleArn: String(d.properties.TaskRoleArn) } : {}),
      ...(d.properties.ExecutionRoleArn ? { executionRoleArn: String(d.properties.ExecutionRoleArn) } : {}),
    });
  }

  const tables = [...resourcesOf("AWS::DynamoDB::GlobalTable"), ...resourcesOf("AWS::DynamoDB::Table")].map((t) => ({
    name: t.names.ref(t.id),
    keySchema: t.properties.KeySchema as TableDefinition["keySchema"],
    attributes: t.properties.AttributeDefinitions as TableDefinition["attributes"],
  }));

  const topics = resourcesOf("AWS::SNS::Topic").map((t) => ({
    arn: t.names.ref(t.id),
    name: t.names.physicalName(t.id),
  }));

  const stores = new Set<string>();
  for (const f of functions.values()) if (f.environment.STORE_URL) stores.add(f.environment.STORE_URL);
  const secretArns = new Set<string>();
  for (const d of taskDefinitions.values()) {
    for (const c of d.containers) {
      for (const e of c.Environment ?? []) if (e.Name === "STRONGROOM_STORE") stores.add(e.Value);
      for (const s of c.Secrets ?? []) secretArns.add(secretArnOf(s.ValueFrom).arn);
    }
  }
  const buckets = [...stores].map((url) => new URL(url).host);

  const schedules = resourcesOf("AWS::Scheduler::Schedule").map((s) => {
    const target = s.properties.Target as { Arn: string; Input?: string };
    return {
      name: s.path.split("/").slice(0, -1).join("/") || s.id,
      targetArn: target.Arn,
      input: target.Input === undefined ? {} : (JSON.parse(target.Input) as unknown),
    };
  });

  // Each resolved in its own stack, so a nested stack's policy names the parent's roles as the parent does.
  const resources = POLICY_SOURCE_TYPES.flatMap((type) =>
    resourcesOf(type).map((r) => ({
      logicalId: r.id,
      type,
      properties: r.properties,
      ref: r.names.ref(r.id),
      arn: r.names.getAtt(r.id, "Arn"),
    })),
  );

  return {
    stackName,
    place,
    flows,
    functions,
    taskDefinitions,
    tables,
    topics,
    buckets: [...new Set(buckets)],
    secretArns: [...secretArns],
    schedules,
    parameters: resourcesOf("AWS::SSM::Parameter").map((p) => ({
      name: String(p.properties.Name),
      value: String(p.properties.Value),
    })),
    resources,
  };
}

/**
 * Splits an ECS secret reference, `arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6>`
 * optionally followed by `:<json key>:<version stage>:<version id>`.
 */
export function secretArnOf(valueFrom: string): { arn: string; name: string; jsonKey?: string } {
  const parts = valueFrom.split(":");
  const arn = parts.slice(0, 7).join(":");
  const full = parts[6] ?? "";
  // Secrets Manager appends a dash and six characters to the secret's name in its ARN.
  const name = full.replace(/-[A-Za-z0-9]{6}$/, "");
  const jsonKey = parts[7];
  return { arn, name, ...(jsonKey ? { jsonKey } : {}) };
}
