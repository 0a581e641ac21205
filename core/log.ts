import { type LogItem, Logger as PowertoolsLogger } from "@aws-lambda-powertools/logger";

/**
 * One logger for the CLI, the worker and the Lambdas: the Powertools Logger, with
 * redaction applied to every line it prints, whatever its format. Every string that
 * reaches a log line, an error message or stderr goes through `redact`: URL passwords,
 * `password=` pairs and any registered secret value are replaced.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "json" | "text";
export type LogFields = Record<string, unknown>;

/** What code logs through: a message, then at most one object of fields. */
export type Logger = Pick<PowertoolsLogger, "debug" | "info" | "warn" | "error">;

const secrets = new Set<string>();

/** Registers a value (a password) that must never be printed. */
export function registerSecret(value: string | undefined): void {
  if (value && value.length >= 3) secrets.add(value);
}

export function redact(text: string): string {
  let out = text
    // user:password@ after a scheme, also in a mistyped URL (`s3:/user:pw@…`). The
    // password runs to the LAST @ before whitespace: people write `@`, `:` and `/` into
    // passwords unencoded, and stopping at the first @ printed the rest of it. A URL
    // followed by more text with an @ and no space between loses that text too: too
    // much hidden is a worse message, too little is a leaked password.
    .replace(/(\b[a-z][a-z0-9+.-]*:\/{0,2}[^:/@\s]*:)\S*@/gi, "$1***@")
    .replace(/\b(password|passwd|pwd|PGPASSWORD)(\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s&;]+)/gi, "$1$2***")
    // An age identity anywhere (an error quoting input, a tool's stderr): never printed.
    .replace(/AGE-SECRET-KEY-1[0-9A-Z]+/gi, "AGE-SECRET-KEY-1***")
    // A signing key likewise (core/audit/row-signature.ts).
    .replace(/SRSIGN-SECRET-1[A-Za-z0-9_-]+/g, "SRSIGN-SECRET-1***");
  for (const secret of secrets) out = out.split(secret).join("***");
  return out;
}

export function redactValue(value: unknown): unknown {
  if (typeof value === "string") return redact(value);
  if (value instanceof Error) return { name: value.name, message: redact(value.message) };
  if (Array.isArray(value)) return value.map(redactValue);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactValue(v)]));
  }
  return value;
}

/** Keys Powertools adds to every line; text output shows only the caller's fields. */
const ENVELOPE = new Set([
  "level",
  "message",
  "timestamp",
  "service",
  "sampling_rate",
  "xray_trace_id",
  "cold_start",
  "function_arn",
  "function_memory_size",
  "function_name",
  "function_request_id",
  "tenant_id",
]);

/** People read `seconds=0.31`, not `seconds=0.31213849000000005`. */
const roundFloats = (_key: string, value: unknown) =>
  typeof value === "number" && !Number.isInteger(value) ? Number(value.toFixed(2)) : value;

/** A field holding a duration, by its name: `seconds`, `restoreSeconds`, `latencyMs`. */
const DURATION_KEY = /(?:^s|S)econds$|(?:^ms|Ms)$/;

/**
 * Durations to the millisecond (seconds) or microsecond (ms) in everything strongroom
 * prints as JSON, the CLI's --json documents and JSON log lines: `8.385`, not the clock's
 * `8.385201150999999`. Only fields named as durations; other numbers keep every digit.
 * The one place this is decided; what is stored or hashed (audit rows) is never rounded.
 */
export function roundDurations(value: unknown, key = ""): unknown {
  if (typeof value === "number") {
    return !Number.isInteger(value) && DURATION_KEY.test(key) ? Math.round(value * 1000) / 1000 : value;
  }
  if (Array.isArray(value)) return value.map((v) => roundDurations(v, key));
  // An object with its own JSON form (a Date) is printed as that form says.
  if (value && typeof value === "object" && typeof (value as { toJSON?: unknown }).toJSON !== "function") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, roundDurations(v, k)]));
  }
  return value;
}

/**
 * A human line: `warn: message  key=value`; errors as `strongroom: error: message [Name]`
 * with the hint on its own `HINT:` line, the form the CLI's users (and its tests) read.
 */
export function textLine(attributes: LogFields): string {
  const level = String(attributes.level ?? "INFO").toLowerCase();
  const { error, hint } = attributes;
  const extra = Object.entries(attributes)
    .filter(([k]) => !ENVELOPE.has(k) && !(level === "error" && (k === "error" || k === "hint")))
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v, roundFloats)}`)
    .join(" ");
  const message = `${attributes.message ?? ""}${extra ? `  ${extra}` : ""}`;
  if (level === "error" || level === "critical") {
    const name = typeof error === "string" ? ` [${error}]` : "";
    return `strongroom: error: ${message}${name}\n${typeof hint === "string" ? `HINT: ${hint}\n` : ""}`;
  }
  return `${level === "info" ? "" : `${level}: `}${message}\n`;
}

export interface LoggerOptions {
  /** @default "json" */
  format?: LogFormat;
  /** @default POWERTOOLS_LOG_LEVEL, else "info" */
  level?: LogLevel;
  /** Where lines go. @default stderr for text; Powertools' console (stdout) for json, as Lambda expects */
  write?: (line: string) => void;
}

class RedactingLogger extends PowertoolsLogger {
  // Set after super(): Powertools may print (its own warnings) while constructing, and
  // those lines then take the defaults.
  private format: LogFormat = "json";
  private write: ((line: string) => void) | undefined;

  configure(format: LogFormat, write: ((line: string) => void) | undefined): this {
    this.format = format;
    this.write = write;
    return this;
  }

  protected override printLog(logLevel: number, log: LogItem): void {
    log.prepareForPrint();
    const redacted = redactValue(log.getAttributes()) as LogFields;
    const attributes = this.format === "json" ? (roundDurations(redacted) as LogFields) : redacted;
    if (this.format === "text") {
      (this.write ?? ((line) => process.stderr.write(line)))(textLine(attributes));
    } else if (this.write) {
      this.write(`${JSON.stringify(attributes)}\n`);
    } else {
      log.setAttributes(attributes as Parameters<LogItem["setAttributes"]>[0]);
      super.printLog(logLevel, log);
    }
  }
}

export function createLogger(options: LoggerOptions = {}): RedactingLogger {
  return new RedactingLogger({
    serviceName: "strongroom",
    // Without a level, Powertools reads POWERTOOLS_LOG_LEVEL (then the Lambda's own setting), default INFO.
    ...(options.level ? { logLevel: options.level.toUpperCase() as "INFO" } : {}),
  }).configure(options.format ?? "json", options.write);
}
