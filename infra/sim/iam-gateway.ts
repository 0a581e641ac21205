import { randomUUID } from "node:crypto";
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Authorizer, Credentials, IamCall } from "./iam-authorizer.ts";
import { iamRequests, needsBody, type ResourceNames, SERVICES, type Service } from "./iam-requests.ts";

/**
 * The IAM gateway: an HTTP proxy on 127.0.0.1 in front of each stand-in (moto, DynamoDB
 * Local), one port per service, as AWS has an endpoint per service. A principal's SDK
 * clients are pointed at it (AWS_ENDPOINT_URL_<SERVICE>) and sign with that principal's
 * made-up access key. For each request the gateway reads the key from the SigV4
 * Authorization header, asks the Authorizer what IAM would decide for the request's
 * action, resource and condition keys, and either answers as the service answers a
 * denied call (S3's 403 AccessDenied, the JSON services' AccessDeniedException, SNS's
 * AuthorizationError) or forwards the request unchanged, its body streamed.
 *
 * The stand-ins check no signature. DynamoDB Local keeps a database per access key,
 * though, so the gateway forwards every request under one key (`upstreamAccessKeyId`),
 * and the stand-ins see one account, as they did without it.
 */

export interface IamGatewayOptions {
  authorizer: Authorizer;
  /** Each service's stand-in. A service without one gets no endpoint. */
  upstreams: Partial<Record<Service, string>>;
  names: ResourceNames;
  /** The key the stand-ins see on every forwarded request. */
  upstreamAccessKeyId: string;
}

/** The most of a request body the gateway reads to decide (JSON APIs, S3's batch delete). */
const MAX_DECIDING_BODY_BYTES = 16 * 1024 * 1024;

/** The environment variable the SDK reads a service's endpoint from. */
const ENDPOINT_VARIABLE: Record<Service, string> = {
  s3: "AWS_ENDPOINT_URL_S3",
  dynamodb: "AWS_ENDPOINT_URL_DYNAMODB",
  sns: "AWS_ENDPOINT_URL_SNS",
  secretsmanager: "AWS_ENDPOINT_URL_SECRETS_MANAGER",
  ssm: "AWS_ENDPOINT_URL_SSM",
};

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "trailer",
  "expect",
  "host",
]);

export class IamGateway {
  /** The gateway's endpoint per service. */
  readonly endpoints: Partial<Record<Service, string>>;
  private readonly servers: Server[];
  private readonly sockets: Set<Socket>;

  private constructor(endpoints: Partial<Record<Service, string>>, servers: Server[], sockets: Set<Socket>) {
    this.endpoints = endpoints;
    this.servers = servers;
    this.sockets = sockets;
  }

  static async start(options: IamGatewayOptions): Promise<IamGateway> {
    const endpoints: Partial<Record<Service, string>> = {};
    const servers: Server[] = [];
    const sockets = new Set<Socket>();
    for (const service of SERVICES) {
      const upstream = options.upstreams[service];
      if (!upstream) continue;
      const proxy = new ServiceProxy(service, new URL(upstream), options);
      const server = createServer((req, res) => proxy.handle(req, res, false));
      // S3 clients send `Expect: 100-continue` with large bodies: the answer to a denied
      // put comes before its body, as S3's does.
      server.on("checkContinue", (req, res) => proxy.handle(req, res, true));
      server.on("connection", (s: Socket) => {
        sockets.add(s);
        s.once("close", () => sockets.delete(s));
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      servers.push(server);
      endpoints[service] = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    }
    return new IamGateway(endpoints, servers, sockets);
  }

  /**
   * The environment a principal's SDK clients read: every service's endpoint at the
   * gateway, and the principal's key (and no session token or profile of the caller's).
   */
  envFor(credentials: Credentials): Record<string, string> {
    const env: Record<string, string> = {
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      AWS_SESSION_TOKEN: "",
    };
    for (const [service, url] of Object.entries(this.endpoints)) env[ENDPOINT_VARIABLE[service as Service]] = url;
    return env;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

/** The SigV4 access key of a request (header or presigned query), or undefined when unsigned. */
export function accessKeyOf(req: Pick<IncomingMessage, "headers" | "url">): string | undefined {
  const auth = req.headers.authorization;
  const fromHeader = typeof auth === "string" ? /Credential=([^/,\s]+)\//.exec(auth)?.[1] : undefined;
  if (fromHeader) return fromHeader;
  const credential = new URL(req.url ?? "/", "http://x").searchParams.get("X-Amz-Credential");
  return credential ? credential.split("/")[0] : undefined;
}

class ServiceProxy {
  private readonly service: Service;
  private readonly upstream: URL;
  private readonly o: IamGatewayOptions;

  constructor(service: Service, upstream: URL, options: IamGatewayOptions) {
    this.service = service;
    this.upstream = upstream;
    this.o = options;
  }

  handle(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void {
    this.decideAndForward(req, res, expectsContinue).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
      res.end(`iam gateway: ${(err as Error).message}`);
    });
  }

  private async decideAndForward(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): Promise<void> {
    const method = req.method ?? "GET";
    const url = req.url ?? "/";
    let body: Buffer | undefined;
    if (needsBody(this.service, { method, url })) {
      // The decision needs the body, so the client may send it now.
      if (expectsContinue) res.writeContinue();
      body = await readBody(req);
    }
    const key = accessKeyOf(req);
    const principal = key === undefined ? undefined : this.o.authorizer.principalOfKey(key);
    const requests = iamRequests(
      this.service,
      { method, url, headers: req.headers, ...(body ? { body } : {}) },
      this.o.names,
    );
    if (key !== undefined && !principal) {
      const call = this.o.authorizer.refuse(
        `unknown access key ${key}`,
        requests?.[0] ?? { action: `${this.service}:Unknown`, resource: "*" },
        "The security token included in the request is invalid.",
      );
      return this.refuse(req, res, body, "unknown-key", call);
    }
    if (!principal && this.service !== "s3") {
      // Only S3 evaluates an unsigned request (against the bucket policy); the JSON and
      // query APIs refuse it outright.
      const call = this.o.authorizer.refuse(
        "anonymous",
        requests?.[0] ?? { action: `${this.service}:Unknown`, resource: "*" },
        "Request is missing Authentication Token",
      );
      return this.refuse(req, res, body, "unsigned", call);
    }
    if (!requests) {
      const call = this.o.authorizer.refuse(
        principal?.arn ?? "anonymous",
        { action: `${this.service}:Unknown`, resource: `${method} ${url.split("?")[0]}` },
        `the sim's IAM gateway does not know ${method} ${url} for ${this.service}, so it cannot authorize it`,
      );
      return this.refuse(req, res, body, "denied", call);
    }
    for (const r of requests) {
      const call = await this.o.authorizer.authorize(principal, r);
      if (call.decision !== "Allowed") return this.refuse(req, res, body, "denied", call);
    }
    if (expectsContinue && !body) res.writeContinue();
    this.forward(req, res, body);
  }

  private forward(req: IncomingMessage, res: ServerResponse, body: Buffer | undefined): void {
    const headers: IncomingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (!HOP_BY_HOP.has(name) && name !== "x-amz-security-token") headers[name] = value;
    }
    headers.host = this.upstream.host;
    if (typeof headers.authorization === "string") {
      headers.authorization = headers.authorization.replace(
        /Credential=[^/,\s]+\//,
        `Credential=${this.o.upstreamAccessKeyId}/`,
      );
    }
    if (body) headers["content-length"] = String(body.length);
    const out = request(
      {
        host: this.upstream.hostname,
        port: this.upstream.port,
        method: req.method,
        path: req.url,
        headers,
      },
      (answer) => {
        const back: Record<string, string | string[]> = {};
        for (const [name, value] of Object.entries(answer.headers)) {
          if (value !== undefined && !HOP_BY_HOP.has(name)) back[name] = value;
        }
        res.writeHead(answer.statusCode ?? 502, answer.statusMessage, back);
        answer.pipe(res);
      },
    );
    out.once("error", (err) => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
      res.end(`iam gateway: the stand-in for ${this.service} did not answer: ${err.message}`);
    });
    if (body) out.end(body);
    else req.pipe(out);
  }

  /** Answers as the service answers a refused call; a body not read is drained. */
  private refuse(
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer | undefined,
    why: "denied" | "unknown-key" | "unsigned",
    call: IamCall,
  ): void {
    if (!body) req.resume();
    const requestId = randomUUID();
    const message = call.message ?? "Access Denied";
    const shape = ERROR_SHAPES[this.service][why];
    res.setHeader("x-amzn-requestid", requestId);
    if (this.service === "s3") {
      res.setHeader("x-amz-request-id", requestId);
      res.writeHead(shape.status, { "content-type": "application/xml" });
      // A HEAD's answer has no body; the SDK reads the status alone.
      if (req.method === "HEAD") return void res.end();
      return void res.end(
        `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${shape.code}</Code><Message>${xml(message)}</Message><RequestId>${requestId}</RequestId><HostId>${requestId}</HostId></Error>`,
      );
    }
    if (this.service === "sns") {
      res.writeHead(shape.status, { "content-type": "text/xml" });
      return void res.end(
        `<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type><Code>${shape.code}</Code><Message>${xml(message)}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
      );
    }
    const json = this.service === "dynamodb" ? "application/x-amz-json-1.0" : "application/x-amz-json-1.1";
    res.writeHead(shape.status, { "content-type": json });
    res.end(JSON.stringify({ __type: `com.amazon.coral.service#${shape.code}`, Message: message }));
  }
}

/** How each service answers a call IAM denied, a key it does not know, and an unsigned call. */
const ERROR_SHAPES: Record<Service, Record<"denied" | "unknown-key" | "unsigned", { status: number; code: string }>> = {
  s3: {
    denied: { status: 403, code: "AccessDenied" },
    "unknown-key": { status: 403, code: "InvalidAccessKeyId" },
    unsigned: { status: 403, code: "AccessDenied" },
  },
  sns: {
    denied: { status: 403, code: "AuthorizationError" },
    "unknown-key": { status: 403, code: "InvalidClientTokenId" },
    unsigned: { status: 403, code: "MissingAuthenticationToken" },
  },
  dynamodb: jsonShapes(),
  secretsmanager: jsonShapes(),
  ssm: jsonShapes(),
};

function jsonShapes(): Record<"denied" | "unknown-key" | "unsigned", { status: number; code: string }> {
  return {
    denied: { status: 400, code: "AccessDeniedException" },
    "unknown-key": { status: 400, code: "UnrecognizedClientException" },
    unsigned: { status: 400, code: "MissingAuthenticationTokenException" },
  };
}

function xml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bytes > MAX_DECIDING_BODY_BYTES) throw new Error("request body too large to authorize");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
