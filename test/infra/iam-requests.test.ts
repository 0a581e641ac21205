import { describe, expect, it } from "vitest";
import { iamRequests, type ResourceNames, type SignedRequest } from "../../infra/sim/iam-requests.ts";

/**
 * What the IAM gateway asks IAM for each SDK request: the action, resource and condition
 * keys of the Service Authorization Reference, read from the request as it is on the wire.
 */
const names: ResourceNames = {
  place: { account: "123456789012", region: "us-east-1" },
  hashKeyOf: (table) => (table === "audit" ? "pk" : undefined),
  secretArnOf: (id) =>
    id.startsWith("arn:") ? id : `arn:aws:secretsmanager:us-east-1:123456789012:secret:${id}-AbCdEf`,
};
const TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/audit";

const s3 = (method: string, url: string, headers: SignedRequest["headers"] = {}, body?: string) =>
  iamRequests("s3", { method, url, headers, ...(body ? { body: Buffer.from(body) } : {}) }, names);
const json = (service: "dynamodb" | "ssm" | "secretsmanager", target: string, body: unknown) =>
  iamRequests(
    service,
    { method: "POST", url: "/", headers: { "x-amz-target": target }, body: Buffer.from(JSON.stringify(body)) },
    names,
  );

describe("S3 requests", () => {
  it.each([
    ["GET", "/b/pg/shop/backups/x/manifest.json", "s3:GetObject"],
    ["HEAD", "/b/pg/k", "s3:GetObject"],
    ["GET", "/b/pg/k?versionId=3", "s3:GetObjectVersion"],
    ["PUT", "/b/pg/k?partNumber=1&uploadId=u", "s3:PutObject"],
    ["POST", "/b/pg/k?uploads", "s3:PutObject"],
    ["POST", "/b/pg/k?uploadId=u", "s3:PutObject"],
    ["DELETE", "/b/pg/k?uploadId=u", "s3:AbortMultipartUpload"],
    ["DELETE", "/b/pg/k", "s3:DeleteObject"],
    ["DELETE", "/b/pg/k?versionId=3", "s3:DeleteObjectVersion"],
    ["GET", "/b/pg/k?retention&versionId=3", "s3:GetObjectRetention"],
    ["GET", "/b/pg/k?tagging&versionId=3", "s3:GetObjectVersionTagging"],
    ["GET", "/b?versioning", "s3:GetBucketVersioning"],
    ["GET", "/b?object-lock", "s3:GetBucketObjectLockConfiguration"],
    ["GET", "/b?uploads", "s3:ListBucketMultipartUploads"],
    ["HEAD", "/b", "s3:ListBucket"],
  ])("%s %s is %s", (method, url, action) => {
    expect(s3(method, url)?.map((r) => r.action)).toEqual([action]);
  });

  it("names the object by its decoded key", () => {
    expect(s3("GET", "/b/pg/a%20b/%C3%BC")?.[0]?.resource).toBe("arn:aws:s3:::b/pg/a b/ü");
  });

  it("lists with s3:prefix, the empty prefix when none is given", () => {
    expect(s3("GET", "/b?list-type=2&prefix=pg%2Fshop%2F&max-keys=1")).toEqual([
      { action: "s3:ListBucket", resource: "arn:aws:s3:::b", context: { "s3:prefix": "pg/shop/", "s3:max-keys": "1" } },
    ]);
    expect(s3("GET", "/b?list-type=2")?.[0]?.context).toEqual({ "s3:prefix": "" });
  });

  it("carries If-None-Match as s3:if-none-match, and leaves it absent when the header is", () => {
    expect(s3("PUT", "/b/m.json", { "if-none-match": "*" })?.[0]?.context).toMatchObject({ "s3:if-none-match": "*" });
    expect(s3("PUT", "/b/m.json")?.[0]?.context).not.toHaveProperty("s3:if-none-match");
  });

  it("says which requests create the object (s3:ObjectCreationOperation): a put, a copy and a multipart completion, never its creation or parts", () => {
    const creates = (method: string, url: string, headers = {}) =>
      s3(method, url, headers)?.[0]?.context?.["s3:ObjectCreationOperation"];
    expect(creates("PUT", "/b/t.tar")).toBe("true");
    expect(creates("PUT", "/b/t.tar", { "x-amz-copy-source": "/b/other" })).toBe("true");
    expect(creates("POST", "/b/t.tar?uploadId=u1", { "if-none-match": "*" })).toBe("true");
    expect(creates("POST", "/b/t.tar?uploads")).toBe("false");
    expect(creates("PUT", "/b/t.tar?partNumber=1&uploadId=u1")).toBe("false");
    expect(creates("PUT", "/b/t.tar?partNumber=2&uploadId=u1", { "x-amz-copy-source": "/b/other" })).toBe("false");
  });

  it("asks for PutObject on the target and GetObject on the source of a copy", () => {
    expect(
      s3("PUT", "/b/pg/to", { "x-amz-copy-source": "/b/pg/from%20x" })?.map((r) => [r.action, r.resource]),
    ).toEqual([
      ["s3:PutObject", "arn:aws:s3:::b/pg/to"],
      ["s3:GetObject", "arn:aws:s3:::b/pg/from x"],
    ]);
  });

  it("asks for DeleteObject per key of a batch delete", () => {
    const body =
      "<Delete><Object><Key>pg/a&amp;b</Key></Object><Object><Key>pg/c</Key><VersionId>1</VersionId></Object></Delete>";
    expect(s3("POST", "/b?delete", {}, body)?.map((r) => [r.action, r.resource])).toEqual([
      ["s3:DeleteObject", "arn:aws:s3:::b/pg/a&b"],
      ["s3:DeleteObjectVersion", "arn:aws:s3:::b/pg/c"],
    ]);
  });

  it("does not know an unknown subresource, so the gateway refuses it", () => {
    expect(s3("POST", "/b/pg/k?something")).toBeUndefined();
  });
});

describe("JSON requests", () => {
  it("DynamoDB: the table ARN, and dynamodb:LeadingKeys from an item, a key or a Query's key condition", () => {
    expect(
      json("dynamodb", "DynamoDB_20120810.PutItem", { TableName: "audit", Item: { pk: { S: "db#shop" } } }),
    ).toEqual([{ action: "dynamodb:PutItem", resource: TABLE, context: { "dynamodb:LeadingKeys": ["db#shop"] } }]);
    const query = json("dynamodb", "DynamoDB_20120810.Query", {
      TableName: "audit",
      KeyConditionExpression: "#p = :pk AND sk > :s",
      ExpressionAttributeNames: { "#p": "pk" },
      ExpressionAttributeValues: { ":pk": { S: "org" }, ":s": { S: "0" } },
      Select: "COUNT",
    });
    expect(query?.[0]?.context).toEqual({ "dynamodb:LeadingKeys": ["org"], "dynamodb:Select": "COUNT" });
    expect(json("dynamodb", "DynamoDB_20120810.Query", { TableName: "audit", IndexName: "byAt" })?.[0]?.resource).toBe(
      `${TABLE}/index/byAt`,
    );
  });

  it("DynamoDB: one question per table of a batch, per item of a transaction", () => {
    expect(
      json("dynamodb", "DynamoDB_20120810.BatchWriteItem", { RequestItems: { audit: [], catalog: [] } })?.map(
        (r) => r.resource,
      ),
    ).toEqual([TABLE, TABLE.replace("audit", "catalog")]);
    expect(
      json("dynamodb", "DynamoDB_20120810.TransactWriteItems", {
        TransactItems: [{ Put: { TableName: "audit" } }, { ConditionCheck: { TableName: "audit" } }],
      })?.map((r) => r.action),
    ).toEqual(["dynamodb:PutItem", "dynamodb:ConditionCheckItem"]);
    expect(
      json("dynamodb", "DynamoDB_20120810.ExecuteStatement", { Statement: 'UPDATE "audit" SET a = 1' })?.[0]?.action,
    ).toBe("dynamodb:PartiQLUpdate");
  });

  it("Secrets Manager: a secret by name is named by its full ARN", () => {
    expect(json("secretsmanager", "secretsmanager.GetSecretValue", { SecretId: "rds/shop" })).toEqual([
      {
        action: "secretsmanager:GetSecretValue",
        resource: "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds/shop-AbCdEf",
        context: { "secretsmanager:SecretId": "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds/shop-AbCdEf" },
      },
    ]);
  });

  it("SSM: a parameter's ARN joins `parameter` and its name, with or without a leading slash", () => {
    expect(
      json("ssm", "AmazonSSM.GetParameters", { Names: ["/strongroom/shop", "plain"] })?.map((r) => r.resource),
    ).toEqual([
      "arn:aws:ssm:us-east-1:123456789012:parameter/strongroom/shop",
      "arn:aws:ssm:us-east-1:123456789012:parameter/plain",
    ]);
  });

  it("SNS (query protocol): Publish on the topic", () => {
    const body = Buffer.from("Action=Publish&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A123456789012%3Aalarms&Message=x");
    expect(iamRequests("sns", { method: "POST", url: "/", headers: {}, body }, names)).toEqual([
      { action: "sns:Publish", resource: "arn:aws:sns:us-east-1:123456789012:alarms", context: {} },
    ]);
  });
});
