import { createServer, type IncomingMessage, request, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/**
 * An HTTP proxy in front of the rig's S3 stand-in (moto) that injects faults a real
 * endpoint produces mid-operation: an error answer, a lost response, a dead endpoint,
 * a server that ignores a header. Moto itself cannot be told to do any of these.
 */
export type FaultAction =
  | { kind: "forward"; stripHeaders?: string[] }
  /** Answer with an S3 error document instead of forwarding. */
  | { kind: "error"; status: number; code: string }
  /** Forward, let the server act on it, then cut the connection before the answer reaches the client. */
  | { kind: "lose-response" }
  /** Forward, send the answer's headers and its first `afterBytes` body bytes, then reset the connection. */
  | { kind: "cut-response"; afterBytes: number }
  /** Stop listening and cut every connection: the endpoint is gone. */
  | { kind: "die" };

export interface S3Request {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
}

export interface S3Proxy {
  url: string;
  requests: S3Request[];
  close(): Promise<void>;
}

const FORWARD: FaultAction = { kind: "forward" };

export async function startS3Proxy(
  target: string,
  fault: (req: S3Request, index: number) => FaultAction = () => FORWARD,
): Promise<S3Proxy> {
  const upstream = new URL(target);
  const sockets = new Set<Socket>();
  const requests: S3Request[] = [];
  let dead = false;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const seen: S3Request = { method: req.method ?? "GET", url: req.url ?? "/", headers: req.headers };
    const action = dead ? ({ kind: "die" } as const) : fault(seen, requests.length);
    requests.push(seen);
    if (action.kind === "die") {
      dead = true;
      server.close();
      for (const s of sockets) s.destroy();
      return;
    }
    if (action.kind === "error") {
      req.resume();
      res.writeHead(action.status, { "content-type": "application/xml" });
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${action.code}</Code><Message>injected by the test proxy</Message><RequestId>proxy</RequestId></Error>`,
      );
      return;
    }
    const headers = { ...req.headers };
    if (action.kind === "forward") for (const h of action.stripHeaders ?? []) delete headers[h.toLowerCase()];
    const out = request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
      (answer) => {
        if (action.kind === "lose-response") {
          answer.resume();
          answer.once("end", () => req.socket.destroy());
          return;
        }
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        if (action.kind === "cut-response") {
          let sent = 0;
          answer.on("data", (chunk: Buffer) => {
            if (sent >= action.afterBytes) return;
            const part = chunk.subarray(0, action.afterBytes - sent);
            sent += part.length;
            res.write(part);
            if (sent >= action.afterBytes) {
              answer.destroy();
              // A reset, as a load balancer or a NAT that drops the flow sends.
              req.socket.resetAndDestroy();
            }
          });
          return;
        }
        answer.pipe(res);
      },
    );
    out.once("error", () => req.socket.destroy());
    req.pipe(out);
  });
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: async () => {
      dead = true;
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** S3 UploadPart requests carry `partNumber` in the query. */
export function partNumber(req: S3Request): number | undefined {
  const n = new URL(req.url, "http://x").searchParams.get("partNumber");
  return n === null ? undefined : Number(n);
}
