import type { IncomingHttpHeaders } from "node:http";
import type { IamRequest } from "./iam-authorizer.ts";
import type { Place } from "./template.ts";

/**
 * What IAM is asked when an SDK request reaches AWS: the action, the resource ARN and
 * the service's condition keys that the request itself carries, per the Service
 * Authorization Reference. One HTTP request can be several questions (CopyObject reads
 * one object and writes another). `undefined` means the sim does not know the request,
 * and the gateway refuses it rather than let it pass unchecked.
 */

export type Service = "s3" | "dynamodb" | "sns" | "secretsmanager" | "ssm";

export const SERVICES: readonly Service[] = ["s3", "dynamodb", "sns", "secretsmanager", "ssm"];

export interface SignedRequest {
  method: string;
  /** Path and query, as on the request line. */
  url: string;
  headers: IncomingHttpHeaders;
  /** The body, for the services whose action or resource is in it (all but S3's object calls). */
  body?: Buffer;
}

/** What the JSON services need from the deployment to name their resources. */
export interface ResourceNames {
  place: Place;
  /** A table's partition key attribute, for `dynamodb:LeadingKeys`. */
  hashKeyOf(table: string): string | undefined;
  /** A secret's full ARN (with AWS's 6-character suffix) from its name, where the deployment knows it. */
  secretArnOf(nameOrArn: string): string;
}

export function iamRequests(service: Service, req: SignedRequest, names: ResourceNames): IamRequest[] | undefined {
  switch (service) {
    case "s3":
      return s3Requests(req);
    case "dynamodb":
      return dynamoDbRequests(req, names);
    case "sns":
      return snsRequests(req, names.place);
    case "secretsmanager":
      return secretsManagerRequests(req, names);
    case "ssm":
      return ssmRequests(req, names.place);
  }
}

/** Whether the gateway must read the body before it can decide (a JSON or query API, S3's batch delete). */
export function needsBody(service: Service, req: Pick<SignedRequest, "method" | "url">): boolean {
  if (service !== "s3") return true;
  return req.method === "POST" && new URL(req.url, "http://x").searchParams.has("delete");
}

// ---- S3 (REST, path-style) ---------------------------------------------------------------

/** S3 bucket subresources and the action a GET/PUT/DELETE of each is authorized as. */
const BUCKET_SUBRESOURCES: Record<string, { GET?: string; PUT?: string; DELETE?: string }> = {
  versioning: { GET: "s3:GetBucketVersioning", PUT: "s3:PutBucketVersioning" },
  "object-lock": { GET: "s3:GetBucketObjectLockConfiguration", PUT: "s3:PutBucketObjectLockConfiguration" },
  location: { GET: "s3:GetBucketLocation" },
  policy: { GET: "s3:GetBucketPolicy", PUT: "s3:PutBucketPolicy", DELETE: "s3:DeleteBucketPolicy" },
  lifecycle: {
    GET: "s3:GetLifecycleConfiguration",
    PUT: "s3:PutLifecycleConfiguration",
    DELETE: "s3:PutLifecycleConfiguration",
  },
  encryption: { GET: "s3:GetEncryptionConfiguration", PUT: "s3:PutEncryptionConfiguration" },
  tagging: { GET: "s3:GetBucketTagging", PUT: "s3:PutBucketTagging", DELETE: "s3:PutBucketTagging" },
  acl: { GET: "s3:GetBucketAcl", PUT: "s3:PutBucketAcl" },
  cors: { GET: "s3:GetBucketCORS", PUT: "s3:PutBucketCORS", DELETE: "s3:PutBucketCORS" },
  publicAccessBlock: {
    GET: "s3:GetBucketPublicAccessBlock",
    PUT: "s3:PutBucketPublicAccessBlock",
    DELETE: "s3:PutBucketPublicAccessBlock",
  },
  ownershipControls: { GET: "s3:GetBucketOwnershipControls", PUT: "s3:PutBucketOwnershipControls" },
  notification: { GET: "s3:GetBucketNotification", PUT: "s3:PutBucketNotification" },
};

const OBJECT_SUBRESOURCES: Record<string, { GET?: string; PUT?: string; DELETE?: string }> = {
  tagging: { GET: "s3:GetObjectTagging", PUT: "s3:PutObjectTagging", DELETE: "s3:DeleteObjectTagging" },
  retention: { GET: "s3:GetObjectRetention", PUT: "s3:PutObjectRetention" },
  "legal-hold": { GET: "s3:GetObjectLegalHold", PUT: "s3:PutObjectLegalHold" },
  acl: { GET: "s3:GetObjectAcl", PUT: "s3:PutObjectAcl" },
  attributes: { GET: "s3:GetObjectAttributes" },
};

/**
 * S3's own condition keys a put carries in its headers. `s3:if-none-match` is what the
 * bucket policy's NoManifestOverwrite tests (a negated operator, true when the key is absent), so its absence must stay absent.
 */
function putContext(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  const copy: Array<[string, string]> = [
    ["if-none-match", "s3:if-none-match"],
    ["if-match", "s3:if-match"],
    ["x-amz-server-side-encryption", "s3:x-amz-server-side-encryption"],
    ["x-amz-server-side-encryption-aws-kms-key-id", "s3:x-amz-server-side-encryption-aws-kms-key-id"],
    ["x-amz-acl", "s3:x-amz-acl"],
    ["x-amz-storage-class", "s3:x-amz-storage-class"],
    ["x-amz-object-lock-mode", "s3:object-lock-mode"],
    ["x-amz-object-lock-retain-until-date", "s3:object-lock-retain-until-date"],
    ["x-amz-object-lock-legal-hold", "s3:object-lock-legal-hold"],
  ];
  for (const [header, key] of copy) {
    const v = headers[header];
    if (typeof v === "string") out[key] = v;
  }
  return out;
}

function s3Requests(req: SignedRequest): IamRequest[] | undefined {
  const url = new URL(req.url, "http://x");
  // Path-style: /bucket/key (the sim's clients set forcePathStyle). The key is as encoded
  // on the wire; IAM matches the decoded key.
  const [, bucket = "", ...rest] = url.pathname.split("/");
  const key = rest.map((p) => decodeURIComponent(p)).join("/");
  const q = url.searchParams;
  const method = req.method;
  if (bucket === "") return method === "GET" ? [{ action: "s3:ListAllMyBuckets", resource: "*" }] : undefined;
  const bucketArn = `arn:aws:s3:::${decodeURIComponent(bucket)}`;
  const objectArn = `${bucketArn}/${key}`;
  const versioned = q.has("versionId");

  if (rest.length === 0 || key === "") {
    if (method === "POST" && q.has("delete")) return deleteObjects(bucketArn, req.body);
    for (const [sub, actions] of Object.entries(BUCKET_SUBRESOURCES)) {
      if (!q.has(sub)) continue;
      const action = actions[method as "GET"];
      return action ? [{ action, resource: bucketArn }] : undefined;
    }
    if (method === "GET" && q.has("uploads")) return [{ action: "s3:ListBucketMultipartUploads", resource: bucketArn }];
    if (method === "GET" && q.has("versions")) {
      return [{ action: "s3:ListBucketVersions", resource: bucketArn, context: listContext(q) }];
    }
    if (method === "GET") return [{ action: "s3:ListBucket", resource: bucketArn, context: listContext(q) }];
    // HeadBucket is authorized as ListBucket.
    if (method === "HEAD") return [{ action: "s3:ListBucket", resource: bucketArn }];
    if (method === "PUT") return [{ action: "s3:CreateBucket", resource: bucketArn }];
    if (method === "DELETE") return [{ action: "s3:DeleteBucket", resource: bucketArn }];
    return undefined;
  }

  for (const [sub, actions] of Object.entries(OBJECT_SUBRESOURCES)) {
    if (!q.has(sub)) continue;
    const action = actions[method as "GET"];
    // A version's tags, ACL and attributes have actions of their own; its retention and legal hold do not.
    const ofVersion = versioned && ["tagging", "acl", "attributes"].includes(sub);
    return action
      ? [{ action: ofVersion ? action.replace(/Object/, "ObjectVersion") : action, resource: objectArn }]
      : undefined;
  }
  const put = putContext(req.headers);
  switch (method) {
    case "GET":
      if (q.has("uploadId")) return [{ action: "s3:ListMultipartUploadParts", resource: objectArn }];
      return [{ action: versioned ? "s3:GetObjectVersion" : "s3:GetObject", resource: objectArn }];
    // HeadObject is authorized as GetObject.
    case "HEAD":
      return [{ action: versioned ? "s3:GetObjectVersion" : "s3:GetObject", resource: objectArn }];
    case "PUT": {
      // UploadPart is authorized as PutObject, CopyObject (and UploadPartCopy) as
      // PutObject on the target and GetObject on the source.
      const source = req.headers["x-amz-copy-source"];
      // s3:ObjectCreationOperation is true for a request that creates the object (PutObject,
      // CopyObject), false for a part: a bucket policy that requires If-None-Match exempts
      // the requests that cannot carry it by this key.
      const part = q.has("partNumber") && q.has("uploadId");
      const context = { ...put, "s3:ObjectCreationOperation": part ? "false" : "true" };
      const out: IamRequest[] = [{ action: "s3:PutObject", resource: objectArn, context }];
      if (typeof source === "string") {
        const [path = "", query] = decodeURIComponent(source).replace(/^\//, "").split("?");
        out.push({
          action: query?.includes("versionId=") ? "s3:GetObjectVersion" : "s3:GetObject",
          resource: `arn:aws:s3:::${path}`,
        });
      }
      return out;
    }
    case "POST":
      // CreateMultipartUpload and CompleteMultipartUpload are authorized as PutObject;
      // Complete carries If-None-Match where the upload must not overwrite.
      if (q.has("uploads") || q.has("uploadId")) {
        // Only the completion creates the object.
        const context = { ...put, "s3:ObjectCreationOperation": q.has("uploadId") ? "true" : "false" };
        return [{ action: "s3:PutObject", resource: objectArn, context }];
      }
      if (q.has("restore")) return [{ action: "s3:RestoreObject", resource: objectArn }];
      if (q.has("select")) return [{ action: "s3:GetObject", resource: objectArn }];
      return undefined;
    case "DELETE":
      if (q.has("uploadId")) return [{ action: "s3:AbortMultipartUpload", resource: objectArn }];
      return [{ action: versioned ? "s3:DeleteObjectVersion" : "s3:DeleteObject", resource: objectArn }];
    default:
      return undefined;
  }
}

/** ListBucket's condition keys: the prefix (an absent one is the empty prefix), delimiter and max-keys. */
function listContext(q: URLSearchParams): Record<string, string> {
  return {
    "s3:prefix": q.get("prefix") ?? "",
    ...(q.has("delimiter") ? { "s3:delimiter": q.get("delimiter") as string } : {}),
    ...(q.has("max-keys") ? { "s3:max-keys": q.get("max-keys") as string } : {}),
  };
}

/** DeleteObjects is authorized per key, as DeleteObject (or DeleteObjectVersion). */
function deleteObjects(bucketArn: string, body: Buffer | undefined): IamRequest[] | undefined {
  if (!body) return undefined;
  const out: IamRequest[] = [];
  for (const m of body.toString("utf8").matchAll(/<Object>([\s\S]*?)<\/Object>/g)) {
    const object = m[1] ?? "";
    const key = unescapeXml(/<Key>([\s\S]*?)<\/Key>/.exec(object)?.[1] ?? "");
    const versioned = /<VersionId>/.test(object);
    out.push({ action: versioned ? "s3:DeleteObjectVersion" : "s3:DeleteObject", resource: `${bucketArn}/${key}` });
  }
  return out.length > 0 ? out : undefined;
}

function unescapeXml(s: string): string {
  return s
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&#(\d+);/g, (_, n: string) => String.fromCodePoint(Number(n)))
    .replace(/&amp;/g, "&");
}

// ---- JSON protocols --------------------------------------------------------------------

/** The operation of a JSON-protocol request: `DynamoDB_20120810.PutItem` → `PutItem`. */
function operationOf(req: SignedRequest): string | undefined {
  const target = req.headers["x-amz-target"];
  return typeof target === "string" ? target.split(".").pop() : undefined;
}

function jsonBody(req: SignedRequest): Record<string, unknown> {
  try {
    return JSON.parse(req.body?.toString("utf8") || "{}") as Record<string, unknown>;
  } catch {
    return {};
  }
}

type AttributeValue = Record<string, unknown>;

function dynamoDbRequests(req: SignedRequest, names: ResourceNames): IamRequest[] | undefined {
  const op = operationOf(req);
  if (!op) return undefined;
  const body = jsonBody(req);
  const { region, account } = names.place;
  const tableArn = (table: string) =>
    table.startsWith("arn:") ? table : `arn:aws:dynamodb:${region}:${account}:table/${table}`;
  const tableName = (table: string) => table.split("/").pop() ?? table;
  const action = `dynamodb:${op}`;
  const one = (table: unknown, context: Record<string, string | string[]> = {}, index?: unknown): IamRequest => ({
    action,
    resource: `${tableArn(String(table))}${typeof index === "string" ? `/index/${index}` : ""}`,
    context,
  });
  const leading = (table: string, item: unknown): Record<string, string[]> => {
    const hashKey = names.hashKeyOf(tableName(table));
    const value = hashKey ? scalar((item as Record<string, AttributeValue> | undefined)?.[hashKey]) : undefined;
    return value === undefined ? {} : { "dynamodb:LeadingKeys": [value] };
  };
  const options = (): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const [field, key] of [
      ["Select", "dynamodb:Select"],
      ["ReturnValues", "dynamodb:ReturnValues"],
      ["ReturnConsumedCapacity", "dynamodb:ReturnConsumedCapacity"],
    ] as const) {
      if (typeof body[field] === "string") out[key] = body[field] as string;
    }
    return out;
  };
  const table = String(body.TableName ?? "");
  switch (op) {
    case "PutItem":
      return [one(table, { ...leading(table, body.Item), ...options() })];
    case "GetItem":
    case "DeleteItem":
    case "UpdateItem":
      return [one(table, { ...leading(table, body.Key), ...options() })];
    case "Query":
      return [one(table, { ...queryLeadingKeys(table, body, names), ...options() }, body.IndexName)];
    case "Scan":
      return [one(table, options(), body.IndexName)];
    case "DescribeTable":
    case "CreateTable":
    case "DeleteTable":
    case "UpdateTable":
    case "DescribeTimeToLive":
    case "DescribeContinuousBackups":
      return [one(table)];
    case "ListTables":
      return [{ action, resource: "*" }];
    case "BatchGetItem":
    case "BatchWriteItem":
      return Object.keys((body.RequestItems ?? {}) as object).map((t) => one(t));
    case "TransactGetItems":
    case "TransactWriteItems": {
      const ops: Record<string, string> = {
        Get: "GetItem",
        Put: "PutItem",
        Update: "UpdateItem",
        Delete: "DeleteItem",
        ConditionCheck: "ConditionCheckItem",
      };
      const out: IamRequest[] = [];
      for (const item of (body.TransactItems ?? []) as Array<Record<string, { TableName?: string }>>) {
        for (const [kind, spec] of Object.entries(item)) {
          const t = String(spec.TableName ?? "");
          out.push({ action: `dynamodb:${ops[kind] ?? kind}`, resource: tableArn(t) });
        }
      }
      return out;
    }
    case "ExecuteStatement":
      return partiQl(String(body.Statement ?? ""), tableArn);
    default:
      return undefined;
  }
}

/** A scalar attribute value (`{S: "x"}`, `{N: "1"}`) as text. */
function scalar(value: AttributeValue | undefined): string | undefined {
  if (!value) return undefined;
  const v = value.S ?? value.N ?? value.B;
  return typeof v === "string" ? v : undefined;
}

/** The partition key value of a Query whose key condition is `<hash key> = :value`. */
function queryLeadingKeys(
  table: string,
  body: Record<string, unknown>,
  names: ResourceNames,
): Record<string, string[]> {
  const hashKey = names.hashKeyOf(table.split("/").pop() ?? table);
  const expression = typeof body.KeyConditionExpression === "string" ? body.KeyConditionExpression : "";
  if (!hashKey) return {};
  const aliases = (body.ExpressionAttributeNames ?? {}) as Record<string, string>;
  const values = (body.ExpressionAttributeValues ?? {}) as Record<string, AttributeValue>;
  for (const m of expression.matchAll(/([#\w]+)\s*=\s*(:\w+)/g)) {
    const name = m[1]?.startsWith("#") ? aliases[m[1]] : m[1];
    const value = scalar(values[m[2] as string]);
    if (name === hashKey && value !== undefined) return { "dynamodb:LeadingKeys": [value] };
  }
  return {};
}

/** PartiQL's statement kind decides the action (dynamodb:PartiQLSelect, …Insert, …Update, …Delete). */
function partiQl(statement: string, tableArn: (t: string) => string): IamRequest[] | undefined {
  const kind = /^\s*(select|insert|update|delete)\b/i.exec(statement)?.[1]?.toLowerCase();
  const table = /(?:from|into|update)\s+"?([A-Za-z0-9_.-]+)"?/i.exec(statement)?.[1];
  if (!kind || !table) return undefined;
  const action = `dynamodb:PartiQL${kind[0]?.toUpperCase()}${kind.slice(1)}`;
  return [{ action, resource: tableArn(table) }];
}

function secretsManagerRequests(req: SignedRequest, names: ResourceNames): IamRequest[] | undefined {
  const op = operationOf(req);
  if (!op) return undefined;
  const body = jsonBody(req);
  if (op === "ListSecrets" || op === "GetRandomPassword" || op === "BatchGetSecretValue") {
    return [{ action: `secretsmanager:${op}`, resource: "*" }];
  }
  const id = body.SecretId ?? body.Name;
  if (typeof id !== "string") return undefined;
  const context: Record<string, string> = { "secretsmanager:SecretId": names.secretArnOf(id) };
  if (typeof body.VersionStage === "string") context["secretsmanager:VersionStage"] = body.VersionStage;
  if (typeof body.VersionId === "string") context["secretsmanager:VersionId"] = body.VersionId;
  return [{ action: `secretsmanager:${op}`, resource: names.secretArnOf(id), context }];
}

function ssmRequests(req: SignedRequest, place: Place): IamRequest[] | undefined {
  const op = operationOf(req);
  if (!op) return undefined;
  const body = jsonBody(req);
  // A parameter's ARN joins `parameter` and its name, which may start with a slash.
  const arn = (name: string) =>
    `arn:aws:ssm:${place.region}:${place.account}:parameter${name.startsWith("/") ? "" : "/"}${name}`;
  switch (op) {
    case "GetParameter":
    case "PutParameter":
    case "DeleteParameter":
    case "GetParameterHistory":
    case "LabelParameterVersion":
      return typeof body.Name === "string"
        ? [
            {
              action: `ssm:${op}`,
              resource: arn(body.Name),
              ...(op === "PutParameter" && typeof body.Overwrite === "boolean"
                ? { context: { "ssm:Overwrite": String(body.Overwrite) } }
                : {}),
            },
          ]
        : undefined;
    case "GetParameters":
    case "DeleteParameters":
      return ((body.Names ?? []) as string[]).map((n) => ({ action: `ssm:${op}`, resource: arn(n) }));
    case "GetParametersByPath":
      return typeof body.Path === "string"
        ? [
            {
              action: "ssm:GetParametersByPath",
              resource: arn(body.Path),
              context: { "ssm:Recursive": String(body.Recursive === true) },
            },
          ]
        : undefined;
    case "DescribeParameters":
      return [{ action: "ssm:DescribeParameters", resource: "*" }];
    default:
      return undefined;
  }
}

// ---- SNS (query protocol) -------------------------------------------------------------

function snsRequests(req: SignedRequest, place: Place): IamRequest[] | undefined {
  const form = new URLSearchParams(req.body?.toString("utf8") ?? "");
  const op = form.get("Action");
  if (!op) return undefined;
  const topic = form.get("TopicArn") ?? form.get("TargetArn");
  if (op === "ListTopics") return [{ action: "sns:ListTopics", resource: "*" }];
  if (op === "CreateTopic") {
    return [
      { action: "sns:CreateTopic", resource: `arn:aws:sns:${place.region}:${place.account}:${form.get("Name")}` },
    ];
  }
  if (op === "Unsubscribe" || op === "GetSubscriptionAttributes" || op === "SetSubscriptionAttributes") {
    const sub = form.get("SubscriptionArn") ?? "";
    return [{ action: `sns:${op}`, resource: sub.split(":").slice(0, 6).join(":") }];
  }
  if (!topic) return undefined;
  const context: Record<string, string> = {};
  if (op === "Subscribe") {
    for (const [field, key] of [
      ["Protocol", "sns:Protocol"],
      ["Endpoint", "sns:Endpoint"],
    ] as const) {
      const v = form.get(field);
      if (v !== null) context[key] = v;
    }
  }
  return [{ action: `sns:${op}`, resource: topic, context }];
}
