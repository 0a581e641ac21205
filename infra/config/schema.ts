import { DATABASE_ID_PATTERN } from "#core/keys.ts";
import { DATABASE_TLS_MODES } from "../constructs/tls.ts";

/**
 * The JSON schema of strongroom.config.json. Shapes only; what a schema cannot say
 * (recipients, schedule expressions, time zones, Fargate sizes, duplicate ids) is checked
 * in load-config.ts, and every problem is reported on its own line naming the field.
 */

const id = { type: "string", pattern: DATABASE_ID_PATTERN };
const secretArn = {
  type: "string",
  pattern: "^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$",
};
const count = { type: "integer", minimum: 0, maximum: 10000 };

const retention = {
  type: "object",
  additionalProperties: false,
  properties: { daily: count, weekly: count, monthly: count },
};

const task = {
  type: "object",
  additionalProperties: false,
  properties: {
    cpu: { type: "integer", enum: [256, 512, 1024, 2048, 4096, 8192, 16384] },
    memoryMiB: { type: "integer", minimum: 512, maximum: 122880 },
    ephemeralGiB: { type: "integer", minimum: 21, maximum: 200 },
  },
};

const verify = {
  type: "object",
  additionalProperties: false,
  properties: {
    /** When VerifyFlow restores the newest backup into a scratch cluster and checks it. */
    schedule: { type: "string", minLength: 1 },
    /** Also run amcheck over every index and table. */
    deep: { type: "boolean" },
    /** Not ready (and the Unverified alarm) when the newest successful verification is older. */
    maxAgeDays: { type: "integer", minimum: 1, maximum: 366 },
  },
};

/** The settings every database has, each overridable per database. */
const overridable = {
  schedule: { type: "string", minLength: 1 },
  timeZone: { type: "string", minLength: 1 },
  retention,
  task,
  verify,
};

/**
 * Where a task connects. An RDS-managed master secret holds only `username` and
 * `password`, and Secrets Manager's RDS format makes `port` and `dbname` optional; ECS
 * refuses to start a task whose secret lacks a key its definition names. So host, port
 * and database name come from here, unless `secretHas` says the secret holds them.
 */
const connection = {
  /** How the server is authenticated: verify-full against the RDS bundle by default. */
  tls: { enum: [...DATABASE_TLS_MODES] },
  host: { type: "string", minLength: 1, maxLength: 253, pattern: "^[A-Za-z0-9.:_-]+$" },
  port: { type: "integer", minimum: 1, maximum: 65535 },
  dbname: { type: "string", minLength: 1, maxLength: 63 },
  secretHas: {
    type: "array",
    uniqueItems: true,
    items: { enum: ["host", "port", "dbname"] },
  },
};

/** A secret as AWS writes it: RDS-managed ones hold username and password only. */
const rdsSecret = {
  type: "object",
  additionalProperties: false,
  required: ["username", "password"],
  properties: {
    host: { type: "string" },
    port: { type: "integer" },
    username: { type: "string" },
    password: { type: "string" },
    dbname: { type: "string" },
    engine: { type: "string" },
    dbInstanceIdentifier: { type: "string" },
  },
};

export const configSchema = {
  type: "object",
  additionalProperties: false,
  required: ["name", "bucket", "recipients", "identitySecretArn", "network", "databases"],
  properties: {
    $schema: { type: "string" },
    name: { type: "string", pattern: "^[a-z][a-z0-9-]{0,23}$" },
    prefix: { type: "string", pattern: "^([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)?$" },
    bucket: {
      oneOf: [
        {
          type: "object",
          additionalProperties: false,
          required: ["create"],
          properties: {
            create: { const: true },
            // The default retention of new object versions. Object Lock itself is always
            // enabled on a created bucket: enabling it later would replace the bucket.
            objectLock: {
              type: "object",
              additionalProperties: false,
              required: ["mode", "days"],
              properties: {
                mode: { enum: ["GOVERNANCE", "COMPLIANCE"] },
                days: { type: "integer", minimum: 1, maximum: 36500 },
              },
            },
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
          properties: { create: { const: true } },
        },
        {
          type: "object",
          additionalProperties: false,
          required: ["vpcId", "subnetIds"],
          properties: {
            vpcId: { type: "string", pattern: "^vpc-[0-9a-f]{8,17}$" },
            subnetIds: { type: "array", minItems: 1, items: { type: "string", pattern: "^subnet-[0-9a-f]{8,17}$" } },
            securityGroupIds: { type: "array", items: { type: "string", pattern: "^sg-[0-9a-f]{8,17}$" } },
            assignPublicIp: { type: "boolean" },
            // The VPC endpoints private subnets need without a NAT (infra/constructs/network.ts).
            createEndpoints: { type: "boolean" },
            routeTableIds: { type: "array", items: { type: "string", pattern: "^rtb-[0-9a-f]{8,17}$" } },
            endpointSubnetIds: { type: "array", items: { type: "string", pattern: "^subnet-[0-9a-f]{8,17}$" } },
          },
        },
      ],
    },
    alarmEmail: { type: "string", pattern: "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$" },
    /** A CloudTrail trail of every write and delete of strongroom's objects, by anyone. @default true */
    objectTrail: { type: "boolean" },
    /** Customer-managed KMS keys the bucket or the secrets are encrypted with. */
    kmsKeyArns: {
      type: "array",
      uniqueItems: true,
      items: { type: "string", pattern: "^arn:aws[a-z-]*:kms:[a-z0-9-]+:\\d{12}:key/[0-9a-f-]{36}$" },
    },
    defaults: { type: "object", additionalProperties: false, properties: overridable },
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
          restoreSecretArn: secretArn,
          ...connection,
          ...overridable,
        },
      },
    },
    restoreTargets: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["id", "secretArn"],
        properties: { id, secretArn, ...connection },
      },
    },
    sim: {
      type: "object",
      additionalProperties: false,
      properties: {
        // Secret values for `npm run sim` only: an RDS-style object, or text (the identity).
        secrets: {
          type: "object",
          additionalProperties: {
            anyOf: [{ type: "string" }, rdsSecret],
          },
        },
      },
    },
  },
} as const;
