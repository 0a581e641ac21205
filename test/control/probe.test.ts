import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import { CreateAccessKeyCommand, CreateUserCommand, IAMClient, PutUserPolicyCommand } from "@aws-sdk/client-iam";
import { CreateBucketCommand, PutBucketVersioningCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { probeStore } from "#core/probe.ts";
import { S3Store, s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import { freePort } from "#worker/service-process.ts";
import { type Endpoint, startMoto } from "../../infra/sim/stand-ins.ts";
import { runCli } from "../helpers/cli.ts";
import { allKeys, newStore } from "../helpers/fixture.ts";
import { startS3Proxy } from "../helpers/s3-proxy.ts";

const deps = () => ({ clock: () => performance.now(), probeId: randomUUID(), payload: randomBytes(512) });
const client = (endpoint?: string, credentials?: { accessKeyId: string; secretAccessKey: string }) =>
  new S3Client({
    ...s3ClientConfigFromEnv(),
    ...(endpoint ? { endpoint } : {}),
    ...(credentials ? { credentials } : {}),
    maxAttempts: 1,
  });

describe("destination probe", () => {
  it("walks list, write, read, compare, delete and reports versioning and Object Lock", async () => {
    const s3 = client();
    const bucket = `probe-${randomUUID()}`;
    await s3.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
    await s3.send(new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: "Enabled" } }));
    const store = new S3Store(`s3://${bucket}/team`, { client: s3 });
    const report = await probeStore(store, deps());
    expect(report.ok).toBe(true);
    expect(report.steps.map((s) => s.step)).toEqual([
      "list",
      "write",
      "conditional",
      "read",
      "compare",
      "delete",
      "protection",
    ]);
    for (const s of report.steps) expect(s.latencyMs).toBeGreaterThanOrEqual(0);
    expect(report.protection).toEqual({ versioning: "Enabled", objectLock: "Enabled" });
    expect(await allKeys(store)).toEqual([]);
  });

  it("fails a store that ignores If-None-Match, whose commits a second writer could replace", async () => {
    const s3 = client();
    const bucket = `probe-${randomUUID()}`;
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const proxy = await startS3Proxy(inject("s3Endpoint"), () => ({
      kind: "forward",
      stripHeaders: ["if-none-match"],
    }));
    try {
      const report = await probeStore(new S3Store(`s3://${bucket}/team`, { client: client(proxy.url) }), deps());
      expect(report.ok).toBe(false);
      expect(report.failure).toContain(
        "probe failed at conditional: unexpected error (the store accepted a second put-if-absent of the same key: it ignores If-None-Match",
      );
      expect(await allKeys(new S3Store(`s3://${bucket}/team`, { client: s3 }))).toEqual([]);
    } finally {
      await proxy.close();
    }
  });

  it("names a bucket that does not exist", async () => {
    const report = await probeStore(new S3Store("s3://strongroom-probe-missing/x", { client: client() }), deps());
    expect(report.ok).toBe(false);
    expect(report.failure).toBe(
      "probe failed at list: no such bucket (bucket strongroom-probe-missing does not exist)",
    );
  });

  it("names an unreachable endpoint", async () => {
    const report = await probeStore(new S3Store("s3://any-bucket/x", { client: client("http://127.0.0.1:1") }), deps());
    expect(report.failure).toMatch(
      /^probe failed at list: endpoint unreachable \(cannot reach s3 endpoint for bucket any-bucket \(ECONNREFUSED\)\)$/,
    );
  });

  describe("against an S3 endpoint that answers PermanentRedirect", () => {
    let server: Server;
    let url: string;
    beforeAll(async () => {
      // A stand-in for S3 in another region: it answers every request as AWS does then.
      server = createServer((req, res) => {
        req.resume();
        res.writeHead(301, { "content-type": "application/xml", "x-amz-bucket-region": "eu-west-1" });
        res.end(
          '<?xml version="1.0" encoding="UTF-8"?><Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message><Bucket>far-bucket</Bucket><Endpoint>far-bucket.s3.eu-west-1.amazonaws.com</Endpoint></Error>',
        );
      });
      const port = await freePort();
      await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
      url = `http://127.0.0.1:${port}`;
    });
    afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

    it("names the wrong region and the right one", async () => {
      const report = await probeStore(new S3Store("s3://far-bucket/x", { client: client(url) }), deps());
      expect(report.failure).toBe(
        "probe failed at list: wrong region (bucket far-bucket is not in region us-east-1 but in eu-west-1)",
      );
    });
  });

  describe("with credentials that may not write or read", () => {
    let moto: Endpoint;
    let bucket: string;
    const keys: Record<string, { accessKeyId: string; secretAccessKey: string }> = {};
    beforeAll(async () => {
      // A moto of its own, which enforces IAM once the setup below is done.
      moto = await startMoto();
      const setup = {
        region: "us-east-1",
        endpoint: moto.url,
        credentials: { accessKeyId: "test", secretAccessKey: "test" },
      };
      const iam = new IAMClient(setup);
      const policies = {
        "no-write": ["s3:List*", "s3:GetObject"],
        "no-read": ["s3:List*", "s3:PutObject", "s3:DeleteObject"],
      };
      for (const [user, actions] of Object.entries(policies)) {
        await iam.send(new CreateUserCommand({ UserName: user }));
        const k = await iam.send(new CreateAccessKeyCommand({ UserName: user }));
        keys[user] = {
          accessKeyId: k.AccessKey?.AccessKeyId ?? "",
          secretAccessKey: k.AccessKey?.SecretAccessKey ?? "",
        };
        await iam.send(
          new PutUserPolicyCommand({
            UserName: user,
            PolicyName: "probe",
            PolicyDocument: JSON.stringify({
              Version: "2012-10-17",
              Statement: [{ Effect: "Allow", Action: actions, Resource: "*" }],
            }),
          }),
        );
      }
      bucket = `denied-${randomUUID()}`;
      await new S3Client({ ...setup, forcePathStyle: true }).send(new CreateBucketCommand({ Bucket: bucket }));
      const reset = await fetch(`${moto.url}/moto-api/reset-auth`, { method: "POST", body: "0" });
      expect(reset.ok).toBe(true);
    });
    afterAll(() => moto?.stop());

    it("names access denied at the write", async () => {
      const store = new S3Store(`s3://${bucket}`, { client: client(moto.url, keys["no-write"]) });
      const report = await probeStore(store, deps());
      expect(report.failure).toMatch(
        /^probe failed at write: access denied \(access denied to s3:\/\/denied-[^/]+\/\.strongroom\/probe\//,
      );
      expect(await allKeys(store)).toEqual([]);
    });

    it("leaves no probe object behind when a later step fails and the delete is permitted", async () => {
      const store = new S3Store(`s3://${bucket}`, { client: client(moto.url, keys["no-read"]) });
      const report = await probeStore(store, deps());
      expect(report.failure).toMatch(/^probe failed at read: access denied/);
      expect(report.steps.map((s) => `${s.step}:${s.ok}`)).toEqual([
        "list:true",
        "write:true",
        "conditional:true",
        "read:false",
      ]);
      expect(await allKeys(store)).toEqual([]);
    });
  });

  it("runs from the CLI with one line per step, and exits 1 naming the cause on failure", async () => {
    const { url } = await newStore("file");
    const ok = await runCli(["probe"], { STRONGROOM_STORE: url });
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^ok {3}list\s+\d+\.\d ms$/m);
    expect(ok.stdout).toMatch(/^ok {3}delete\s+\d+\.\d ms$/m);
    const bad = await runCli(["probe"], { STRONGROOM_STORE: "s3://strongroom-cli-missing/x" });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("strongroom: error: probe failed at list: no such bucket");
  });

  it("lines up its columns, the longest step (conditional) included", async () => {
    const { url } = await newStore("file");
    const r = await runCli(["probe"], { STRONGROOM_STORE: url });
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n").filter((l) => / ms$/.test(l));
    expect(lines.map((l) => l.split(/\s+/)[1])).toContain("conditional");
    expect(new Set(lines.map((l) => l.length)).size).toBe(1);
  });

  it("prints durations in its --json document to three places, not the clock's float noise", async () => {
    const { url } = await newStore("file");
    const r = await runCli(["probe", "--json"], { STRONGROOM_STORE: url });
    expect(r.code).toBe(0);
    const latencies = (JSON.parse(r.stdout) as { steps: Array<{ latencyMs: number }> }).steps.map((s) => s.latencyMs);
    expect(latencies.length).toBeGreaterThan(4);
    for (const ms of latencies) expect(String(ms)).toMatch(/^\d+(\.\d{1,3})?$/);
  });
});
