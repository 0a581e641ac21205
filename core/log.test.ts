import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createLogger, redact, registerSecret } from "./log.ts";

function capture(format: "json" | "text", level?: "debug" | "info" | "warn" | "error") {
  const lines: string[] = [];
  const log = createLogger({ format, ...(level ? { level } : {}), write: (l) => lines.push(l) });
  return { log, lines };
}

describe("the one logger (CLI and Lambdas)", () => {
  it("redacts URL passwords, password pairs and registered secrets in messages and fields, in both formats", () => {
    registerSecret("hunter2-canary");
    for (const format of ["json", "text"] as const) {
      const { log, lines } = capture(format, "info");
      log.warn("connect postgres://app:s3cr3t@db/x failed", {
        dsn: "host=db password=pw123 user=app",
        nested: { note: "the secret is hunter2-canary" },
        err: new Error("auth for postgres://u:topsecret@h/d"),
      });
      const out = lines.join("");
      for (const secret of ["s3cr3t", "pw123", "hunter2-canary", "topsecret"]) expect(out).not.toContain(secret);
      expect(out).toContain("***");
    }
  });

  it("writes Powertools JSON lines: level, message, timestamp, service, then the fields", () => {
    const { log, lines } = capture("json", "info");
    log.info("backup committed", { backupId: "b1", tables: 3 });
    const line = JSON.parse(lines[0] as string);
    expect(line).toMatchObject({ level: "INFO", message: "backup committed", service: "strongroom", backupId: "b1" });
    expect(Date.parse(line.timestamp)).not.toBeNaN();
  });

  it("writes text lines a person reads, errors as `strongroom: error: … [Name]` with the hint below", () => {
    const { log, lines } = capture("text", "info");
    log.info("backup started", { backupId: "b1" });
    log.warn("slow");
    log.error("no such bucket", { error: "BucketNotFoundError", hint: "create it" });
    expect(lines).toEqual([
      "backup started  backupId=b1\n",
      "warn: slow\n",
      "strongroom: error: no such bucket [BucketNotFoundError]\nHINT: create it\n",
    ]);
  });

  it("rounds fractions to two places in text, and durations to three in JSON, other numbers kept whole", () => {
    const text = capture("text", "info");
    text.log.info("done", { seconds: 0.31213849000000005, rows: 12 });
    expect(text.lines).toEqual(["done  seconds=0.31 rows=12\n"]);
    const json = capture("json", "info");
    json.log.info("done", {
      seconds: 8.385201150999999,
      rto: { restoreSeconds: 0.30000000000000004, checks: [{ latencyMs: 12.3456789 }] },
      ratio: 0.31213849000000005,
    });
    expect(JSON.parse(json.lines[0] as string)).toMatchObject({
      seconds: 8.385,
      rto: { restoreSeconds: 0.3, checks: [{ latencyMs: 12.346 }] },
      ratio: 0.31213849000000005,
    });
  });

  it("drops lines below its level", () => {
    const { log, lines } = capture("text", "warn");
    log.debug("d");
    log.info("i");
    log.warn("w");
    expect(lines).toEqual(["warn: w\n"]);
  });
});

describe("redact", () => {
  it("masks a URL password holding @, : and /, raw or percent-encoded", () => {
    expect(redact("connect postgres://app:p@ss@db/x failed")).toBe("connect postgres://app:***@db/x failed");
    expect(redact("postgres://app:a:b/c@db:5432/x?sslmode=require")).toBe(
      "postgres://app:***@db:5432/x?sslmode=require",
    );
    expect(redact("postgres://app:p%40ss%3A%2F@db/x")).toBe("postgres://app:***@db/x");
  });

  // Printable ASCII (fast-check's default string unit) and a little Unicode, with the
  // characters that end a URL's userinfo drawn often.
  const printable = fc.string({
    unit: fc.oneof(fc.constantFrom(..."@:/?#%ü✓"), fc.string({ minLength: 1, maxLength: 1 })),
    minLength: 3,
  });
  // Passwords as people write them into a URL: raw (a raw space would end the URL in any
  // shell word or log field, so raw ones have none), fully percent-encoded, or with only
  // the characters that break a URL encoded.
  const written = fc.oneof(
    printable.filter((p) => !/\s/.test(p)).map((p) => ({ password: p, inUrl: p })),
    printable.map((p) => ({ password: p, inUrl: encodeURIComponent(p) })),
    printable.map((p) => ({ password: p, inUrl: p.replace(/[%@:/?# ]/g, (c) => encodeURIComponent(c)) })),
  );

  it("never prints a URL's password, whatever printable characters it holds", () => {
    fc.assert(
      fc.property(
        written,
        fc.constantFrom("postgres", "postgresql", "s3", "https"),
        fc.constantFrom("app", "", "u-1"),
        fc.constantFrom("db", "db.internal:5432", "[::1]:6432"),
        fc.constantFrom("", "/x", "/shop?sslmode=verify-full", "/a%20b"),
        fc.constantFrom("", "cannot connect to ", "url="),
        fc.constantFrom("", " failed (ECONNREFUSED)", ": mail ops@example.com"),
        ({ password, inUrl }, scheme, user, host, path, before, after) => {
          const masked = `${before}${scheme}://${user}:***@${host}${path}${after}`;
          fc.pre(!masked.includes(password) && !masked.includes(inUrl));
          const out = redact(`${before}${scheme}://${user}:${inUrl}@${host}${path}${after}`);
          expect(out).not.toContain(password);
          expect(out).not.toContain(inUrl);
        },
      ),
    );
  });
});

describe("redact, signing keys", () => {
  it("never prints a signing key, wherever it appears", async () => {
    const { generateSigningKey } = await import("./audit/row-signature.ts");
    const { secret } = generateSigningKey();
    const out = redact(`could not parse ${secret} in /etc/key`);
    expect(out).not.toContain(secret.slice("SRSIGN-SECRET-1".length));
    expect(out).toContain("SRSIGN-SECRET-1***");
  });
});
