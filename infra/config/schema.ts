import type { JSONSchemaType } from "ajv";
import { optional } from "#core/json-schema.ts";
import { DATABASE_ID_PATTERN } from "#core/keys.ts";
import { DATABASE_TLS_MODES } from "../constructs/tls.ts";
import type { ConfigFile, RdsSecret, Retention, TaskSize, VerifySettings } from "./load-config.ts";

/**
 * The JSON schema of strongroom.config.json. Shapes only; what a schema cannot say
 * (recipients, schedule expressions, time zones, Fargate sizes, duplicate ids) is checked
 * in load-config.ts, and every problem is reported on its own line naming the field.
 *
 * The schema is typed `JSONSchemaType<ConfigFile>`: when it and the ConfigFile interface
 * disagree (a field missing from one, optional in one and required in the other, another
 * type), `npm run typecheck` fails. That cannot be a test: it is the compiler's to check.
 * What ajv's typings do not see is a required field left out of a `required` list (they
 * only refuse an optional one in it), or a value in an array's enum that the type lacks.
 */

/**
 * One of `values`, as a bare enum. A `type: "string"` beside it would add a second
 * problem line ("must be string") for a value that is not a string; the enum admits
 * strings only, so the `type: "string"` ajv's typings ask for holds without it.
 */
function stringEnum<const V extends string>(values: readonly V[]): { type: "string"; enum: readonly V[] } {
  return { enum: values } as { type: "string"; enum: readonly V[] };
}

/** The connection keys a secret may hold besides the credentials. */
export const CONNECTION_KEYS = ["host", "port", "dbname"] as const;

const id: JSONSchemaType<string> = { type: "string", pattern: DATABASE_ID_PATTERN };
const secretArn: JSONSchemaType<string> = {
  type: "string",
  pattern: "^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$",
};
const count: JSONSchemaType<number> = { type: "integer", minimum: 0, maximum: 10000 };

const retention: JSONSchemaType<Partial<Retention>> = {
  type: "object",
  additionalProperties: false,
  properties: { daily: optional(count), weekly: optional(count), monthly: optional(count) },
};

const task: JSONSchemaType<Partial<TaskSize>> = {
  type: "object",
  additionalProperties: false,
  properties: {
    cpu: optional({ type: "integer", enum: [256, 512, 1024, 2048, 4096, 8192, 16384] }),
    memoryMiB: optional({ type: "integer", minimum: 512, maximum: 122880 }),
    ephemeralGiB: optional({ type: "integer", minimum: 21, maximum: 200 }),
  },
};

const verify: JSONSchemaType<Partial<VerifySettings>> = {
  type: "object",
  additionalProperties: false,
  properties: {
    /** When VerifyFlow restores the newest backup into a scratch cluster and checks it. */
    schedule: optional({ type: "string", minLength: 1 }),
    /** Also run amcheck over every index and table. */
    deep: optional({ type: "boolean" }),
    /** Not ready (and the Unverified alarm) when the newest successful verification is older. */
    maxAgeDays: optional({ type: "integer", minimum: 1, maximum: 366 }),
    /**
     * Restore without these extensions and what the archive records as depending on them
     * (RDS's aws_s3, aws_commons, rds_tools): the result is "verified with exclusions".
     */
    skipExtensions: optional({
      type: "array",
      items: { type: "string", pattern: "^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$" },
      uniqueItems: true,
      maxItems: 64,
    }),
    /** An ECR image URI, built FROM the worker image, that verify tasks run instead (load-config checks its form). */
    image: optional({ type: "string", minLength: 1 }),
    /** `auto`: ephemeral storage up to 200 GiB, an EBS volume beyond; `ebs`: an EBS volume for every run. */
    storage: optional({ type: "string", enum: ["auto", "ebs"] }),
  },
};

/** The settings every database has, each overridable per database. */
const overridable = {
  schedule: optional({ type: "string", minLength: 1 }),
  timeZone: optional({ type: "string", minLength: 1 }),
  retention: optional(retention),
  task: optional(task),
  verify: optional(verify),
};

/**
 * Where a task connects. An RDS-managed master secret holds only `username` and
 * `password`, and Secrets Manager's RDS format makes `port` and `dbname` optional; ECS
 * refuses to start a task whose secret lacks a key its definition names. So host, port
 * and database name come from here, unless `secretHas` says the secret holds them.
 */
const connection = {
  /** How the server is authenticated: verify-full against the RDS bundle by default. */
  tls: optional(stringEnum(DATABASE_TLS_MODES)),
  host: optional({ type: "string", minLength: 1, maxLength: 253, pattern: "^[A-Za-z0-9.:_-]+$" }),
  port: optional({ type: "integer", minimum: 1, maximum: 65535 }),
  dbname: optional({ type: "string", minLength: 1, maxLength: 63 }),
  secretHas: optional({
    type: "array",
    uniqueItems: true,
    items: stringEnum(CONNECTION_KEYS),
  }),
};

/** A secret as AWS writes it: RDS-managed ones hold username and password only. */
const rdsSecret: JSONSchemaType<RdsSecret> = {
  type: "object",
  additionalProperties: false,
  required: ["username", "password"],
  properties: {
    host: optional({ type: "string" }),
    port: optional({ type: "integer" }),
    username: { type: "string" },
    password: { type: "string" },
    dbname: optional({ type: "string" }),
    engine: optional({ type: "string" }),
    dbInstanceIdentifier: optional({ type: "string" }),
  },
};

export const configSchema: JSONSchemaType<ConfigFile> = {
  type: "object",
  additionalProperties: false,
  required: ["name", "bucket", "recipients", "identitySecretArn", "network", "databases"],
  properties: {
    $schema: optional({ type: "string" }),
    name: { type: "string", pattern: "^[a-z][a-z0-9-]{0,23}$" },
    prefix: optional({ type: "string", pattern: "^([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)?$" }),
    bucket: {
      oneOf: [
        {
          type: "object",
          additionalProperties: false,
          required: ["create"],
          properties: {
            create: { type: "boolean", const: true },
            // The default retention of new object versions. Object Lock itself is always
            // enabled on a created bucket: enabling it later would replace the bucket.
            objectLock: optional({
              type: "object",
              additionalProperties: false,
              required: ["mode", "days"],
              properties: {
                mode: stringEnum(["GOVERNANCE", "COMPLIANCE"]),
                days: { type: "integer", minimum: 1, maximum: 36500 },
              },
            }),
          },
        },
        {
          type: "object",
          additionalProperties: false,
          required: ["name"],
          properties: { name: { type: "string", pattern: "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$" } },
        },
      ],
    },
    recipients: { type: "array", minItems: 1, items: { type: "string" } },
    identitySecretArn: secretArn,
    network: {
      oneOf: [
        {
          type: "object",
          additionalProperties: false,
          required: ["create"],
          properties: { create: { type: "boolean", const: true } },
        },
        {
          type: "object",
          additionalProperties: false,
          required: ["vpcId", "subnetIds"],
          properties: {
            vpcId: { type: "string", pattern: "^vpc-[0-9a-f]{8,17}$" },
            subnetIds: { type: "array", minItems: 1, items: { type: "string", pattern: "^subnet-[0-9a-f]{8,17}$" } },
            securityGroupIds: optional({ type: "array", items: { type: "string", pattern: "^sg-[0-9a-f]{8,17}$" } }),
            assignPublicIp: optional({ type: "boolean" }),
            // The VPC endpoints private subnets need without a NAT (infra/constructs/network.ts).
            createEndpoints: optional({ type: "boolean" }),
            routeTableIds: optional({ type: "array", items: { type: "string", pattern: "^rtb-[0-9a-f]{8,17}$" } }),
            endpointSubnetIds: optional({
              type: "array",
              items: { type: "string", pattern: "^subnet-[0-9a-f]{8,17}$" },
            }),
          },
        },
      ],
    },
    alarmEmail: optional({ type: "string", pattern: "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$" }),
    /** A CloudTrail trail of every write and delete of strongroom's objects, by anyone. @default true */
    objectTrail: optional({ type: "boolean" }),
    /** Customer-managed KMS keys the bucket or the secrets are encrypted with. */
    kmsKeyArns: optional({
      type: "array",
      uniqueItems: true,
      items: { type: "string", pattern: "^arn:aws[a-z-]*:kms:[a-z0-9-]+:\\d{12}:key/[0-9a-f-]{36}$" },
    }),
    /**
     * The customer-managed KMS key verify tasks' EBS volumes are encrypted with: name it
     * where the account encrypts EBS by default with such a key (ECS's role needs a grant).
     */
    ebsKmsKeyArn: optional({ type: "string", pattern: "^arn:aws[a-z-]*:kms:[a-z0-9-]+:\\d{12}:key/[0-9a-f-]{36}$" }),
    defaults: optional({ type: "object", additionalProperties: false, properties: overridable }),
    databases: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        additionalProperties: false,
        required: ["id", "secretArn"],
        properties: {
          id,
          secretArn,
          /** The secret RestoreFlow connects with: a role that may CREATE DATABASE. */
          restoreSecretArn: optional(secretArn),
          /** A self-run server that archives its WAL here: the stack gives its host a role that may only add WAL. */
          walArchiving: optional({ type: "boolean" }),
          /** The host's public signers (`srsigner1…`): the WAL and base backups the deployment trusts. Required with walArchiving. */
          // At most 16: what the retention function's input takes (functions/retention-prune).
          walSigners: optional({
            type: "array",
            minItems: 1,
            maxItems: 16,
            uniqueItems: true,
            items: { type: "string" },
          }),
          /** The archive-age alarm's limit: the newest archived WAL older than this alarms. @default no alarm (an idle server archives nothing) */
          maxWalAgeMinutes: optional({ type: "integer", minimum: 1, maximum: 10_080 }),
          /** logical (pg_dump, default), physical (base backups from a task, with walArchiving), or both. */
          mode: optional({ type: "string", enum: ["logical", "physical", "both"] }),
          ...connection,
          ...overridable,
        },
      },
    },
    restoreTargets: optional({
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["id", "secretArn"],
        properties: { id, secretArn, ...connection },
      },
    }),
    sim: optional({
      type: "object",
      additionalProperties: false,
      properties: {
        // Secret values for `npm run sim` only: an RDS-style object, or text (the identity).
        secrets: optional({
          type: "object",
          // Empty, and a no-op: ajv's typings ask a map's schema to say which keys it requires.
          required: [],
          additionalProperties: {
            anyOf: [{ type: "string" }, rdsSecret],
          },
        }),
      },
    }),
  },
};
