import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import * as path from "node:path";
import { UsageError } from "#core/errors.ts";

/** The connection settings a service may give; the names are libpq's keywords. */
export const SERVICE_KEYS = [
  "host",
  "port",
  "dbname",
  "user",
  "password",
  "sslmode",
  "sslrootcert",
  "sslcert",
  "sslkey",
  "options",
  // strongroom names its own sessions (so they can be told apart in pg_stat_activity).
  "application_name",
] as const;
export type ServiceSettings = Partial<Record<(typeof SERVICE_KEYS)[number], string>>;

/**
 * Debian's libpq is built with sysconfdir /etc/postgresql-common; PGSYSCONFDIR overrides
 * it, as for libpq.
 */
const DEFAULT_SYSCONFDIR = "/etc/postgresql-common";

/**
 * The settings of a connection service, found where libpq looks: PGSERVICEFILE (else
 * ~/.pg_service.conf), then pg_service.conf in PGSYSCONFDIR. strongroom resolves the
 * service itself and hands the child tools the resulting settings, not the service name:
 * libpq lets a service override the PG* variables, which would undo a URL's host or port.
 */
export function loadService(name: string, env: NodeJS.ProcessEnv = process.env): ServiceSettings {
  const files = [
    env.PGSERVICEFILE || path.join(env.HOME || homedir(), ".pg_service.conf"),
    path.join(env.PGSYSCONFDIR || DEFAULT_SYSCONFDIR, "pg_service.conf"),
  ];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    const found = parseServiceFile(text, name, file);
    if (found !== undefined) return found;
  }
  throw new UsageError(`the connection service ${JSON.stringify(name)} is not defined`, {
    hint: `define [${name}] in ${files.join(" or ")} (PGSERVICEFILE names another file)`,
  });
}

/**
 * The settings of `[name]` in a pg_service.conf text, or undefined when it has no such
 * section. The syntax is libpq's: `#` comments, `[section]` headers and `key=value` lines,
 * with no quoting; surrounding white space of a line is dropped, the value keeps the rest.
 */
export function parseServiceFile(text: string, name: string, file = "pg_service.conf"): ServiceSettings | undefined {
  let inSection = false;
  let found = false;
  const settings: ServiceSettings = {};
  const lines = text.split("\n");
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const where = `${file} line ${index + 1}`;
    if (line.startsWith("[")) {
      if (found && inSection) break;
      inSection = line.slice(1, line.indexOf("]")) === name && line.includes("]");
      found ||= inSection;
      continue;
    }
    if (!inSection) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new UsageError(`syntax error in ${where}: expected key=value`);
    const key = line.slice(0, eq);
    if (key === "service") throw new UsageError(`${where}: a service cannot name another service`);
    if (!(SERVICE_KEYS as readonly string[]).includes(key)) {
      throw new UsageError(`${where} sets ${JSON.stringify(key)}, which strongroom does not support in a service`, {
        hint: `use only ${SERVICE_KEYS.join(", ")}`,
      });
    }
    settings[key as keyof ServiceSettings] = line.slice(eq + 1);
  }
  return found ? settings : undefined;
}
