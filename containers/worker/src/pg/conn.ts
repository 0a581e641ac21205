import { readFile } from "node:fs/promises";
import type { ConnectionOptions } from "node:tls";
import pg from "pg";
import { parse } from "pg-connection-string";
import { DatabaseAuthError, DatabaseConnectionError, fileProblem, UsageError } from "#core/errors.ts";
import { registerSecret } from "#core/log.ts";
import { lookupPgpass, pgpassPath } from "./pgpass.ts";
import { loadService, type ServiceSettings } from "./service-file.ts";

/** A parsed connection URL. The password stays in memory: never in argv, logs or files. */
export interface PgConn {
  host: string;
  port: number;
  user: string;
  password: string | undefined;
  database: string;
  /** libpq's sslmode; undefined means libpq's default, prefer. */
  sslmode: SslMode | undefined;
  /** File paths, as libpq takes them (URL parameters, else PGSSLROOTCERT / PGSSLCERT / PGSSLKEY). */
  sslrootcert: string | undefined;
  sslcert: string | undefined;
  sslkey: string | undefined;
  /** Server options (`-c name=value …`), libpq's `options` / PGOPTIONS. */
  options: string | undefined;
  /** The password file, read when no password is given (libpq's PGPASSFILE, else ~/.pgpass). */
  passfile: string;
}

export const SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] as const;
export type SslMode = (typeof SSL_MODES)[number];

/**
 * Resolves a connection as libpq does, so that a URL, a connection service, the PG*
 * variables and ~/.pgpass mean here what they mean to psql: each setting comes from the
 * URL, else the service (`?service=` or PGSERVICE), else its PG* variable, else the
 * default. The password file is read when connecting (see `connect`).
 *
 * `database`, when given, is the database named apart from the URL (restore's
 * --target-database): it is taken as it is, never parsed, and wins over the service and
 * PGDATABASE; a URL naming another database contradicts it.
 */
export function parsePgUrl(
  url: string,
  flag = "--db",
  env: NodeJS.ProcessEnv = process.env,
  database?: { name: string; flag: string },
): PgConn {
  if (!/^postgres(ql)?:\/\//.test(url)) {
    throw new UsageError(`${flag} must be a postgres:// URL`, {
      hint: "e.g. postgres://user@host:5432/dbname (put the password in PGPASSWORD, ~/.pgpass or the URL)",
    });
  }
  let parsed: ReturnType<typeof parse>;
  let params: URLSearchParams;
  try {
    // pg-connection-string would read the certificate files itself (and fail as "not a
    // valid URL" on a missing one); TLS settings are read below, with their own errors.
    const bare = new URL(url);
    params = new URL(url).searchParams;
    for (const name of [...URL_ONLY_PARAMS, "ssl"]) bare.searchParams.delete(name);
    // The database is read from the text by urlDatabase; the parser would only mangle it.
    bare.pathname = "";
    parsed = parse(bare.toString());
  } catch (err) {
    throw new UsageError(`${flag} is not a valid postgres URL`, { cause: err });
  }
  const serviceName = params.get("service") ?? (env.PGSERVICE || undefined);
  const service: ServiceSettings = serviceName === undefined ? {} : loadService(serviceName, env);
  const fromEnv = (name: string) => env[name] || undefined;
  const setting = (name: "sslmode" | "sslrootcert" | "sslcert" | "sslkey" | "options", envName: string) =>
    params.get(name) ?? service[name] ?? fromEnv(envName);

  const password = parsed.password || service.password || fromEnv("PGPASSWORD");
  registerSecret(password);
  const inUrl = urlDatabase(url, flag);
  if (database !== undefined && inUrl !== undefined && inUrl !== database.name) {
    throw new UsageError(
      `${flag} names database ${JSON.stringify(inUrl)} and ${database.flag} names ${JSON.stringify(database.name)}`,
      { hint: `name the database once: drop the path from ${flag}, or leave out ${database.flag}` },
    );
  }
  const dbname = database?.name ?? inUrl ?? (service.dbname || fromEnv("PGDATABASE") || "");
  if (dbname === "") throw new UsageError(`${flag} names no database`, { hint: "append /dbname to the URL" });
  const sslmode = setting("sslmode", "PGSSLMODE");
  if (sslmode !== undefined && !(SSL_MODES as readonly string[]).includes(sslmode)) {
    throw new UsageError(`${flag} has sslmode=${sslmode}, which libpq does not know`, {
      hint: `use one of ${SSL_MODES.join(", ")}`,
    });
  }
  const portText = parsed.port || service.port || fromEnv("PGPORT") || "5432";
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UsageError(`${flag} has port ${JSON.stringify(portText)}, which is not a TCP port`);
  }
  return {
    host: parsed.host || service.host || fromEnv("PGHOST") || "localhost",
    port,
    user: parsed.user || service.user || fromEnv("PGUSER") || env.USER || "postgres",
    password,
    database: dbname,
    sslmode: sslmode as SslMode | undefined,
    sslrootcert: setting("sslrootcert", "PGSSLROOTCERT"),
    sslcert: setting("sslcert", "PGSSLCERT"),
    sslkey: setting("sslkey", "PGSSLKEY"),
    options: setting("options", "PGOPTIONS"),
    passfile: pgpassPath(env),
  };
}

/**
 * The database in a URL, read from the text as libpq reads it: everything after the
 * authority's `/` up to `?` (or `#`, which WHATWG URL parsing, used for the rest, takes as
 * the end), every %XX decoded. Not from the parsed URL: WHATWG resolves dot segments (a
 * database `..` became no database at all, so PGDATABASE's), and pg-connection-string
 * decodes with decodeURI, which leaves %2F, %3D, %3F, %23, %26 … as they are.
 * Undefined when the URL has no path.
 */
function urlDatabase(url: string, flag: string): string | undefined {
  const raw = /^postgres(?:ql)?:\/\/[^/?#]*\/([^?#]*)/.exec(url)?.[1];
  if (!raw) return undefined;
  let name: string;
  try {
    name = decodeURIComponent(raw);
  } catch (err) {
    throw new UsageError(`${flag} has a database name that is not percent-encoded UTF-8`, {
      cause: err,
      hint: "write % as %25, and percent-encode other bytes as UTF-8 (e.g. %2F for /)",
    });
  }
  if (name.includes("\0")) {
    throw new UsageError(`${flag} has a database name holding %00`, { hint: "no PostgreSQL name can hold NUL" });
  }
  return name;
}

/** URL parameters read here rather than by pg-connection-string. */
const URL_ONLY_PARAMS = ["sslmode", "sslrootcert", "sslcert", "sslkey", "options", "service"] as const;

/** `user@host:port/db`, safe to print. */
export function describeConn(conn: PgConn): string {
  return `${conn.user}@${conn.host}:${conn.port}/${conn.database}`;
}

/**
 * libpq settings strongroom does not resolve itself and passes to the child tools as they
 * are, so pg_dump connects the way psql would from the same shell. Left out: the ones
 * resolved above (host, port, user, database, password, service, TLS files), and those
 * that would change the dump itself rather than the connection (PGCLIENTENCODING, PGTZ,
 * PGDATESTYLE).
 */
const PASSED_THROUGH = [
  "PGSSLCRL",
  "PGSSLCRLDIR",
  "PGSSLSNI",
  "PGSSLCERTMODE",
  "PGSSLNEGOTIATION",
  "PGSSLMINPROTOCOLVERSION",
  "PGSSLMAXPROTOCOLVERSION",
  "PGREQUIREPEER",
  "PGREQUIREAUTH",
  "PGCHANNELBINDING",
  "PGGSSENCMODE",
  "PGGSSDELEGATION",
  "PGKRBSRVNAME",
  "PGGSSLIB",
  "PGSYSCONFDIR",
] as const;

/**
 * A tool's `--dbname` for a database name: a conninfo string holding only dbname, quoted
 * as libpq quotes conninfo values. libpq reads a bare --dbname holding `=` (or starting
 * postgres://) as a connection string, so a database `a=b` failed, and a database named
 * `host=elsewhere dbname=x` would have connected elsewhere. The rest of the connection
 * still comes from libpqEnv's variables.
 */
export function dbnameArg(database: string): string {
  return `--dbname=dbname='${database.replace(/[\\']/g, (c) => `\\${c}`)}'`;
}

/**
 * Environment for libpq tools (pg_dump, pg_restore): the password travels
 * here, never in argv, where any user of the machine could read it from /proc. The
 * password file goes too, named explicitly, so the tools find the password strongroom's
 * own session found there.
 */
export function libpqEnv(conn: PgConn, appName: string, from: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: from.PATH,
    LANG: "C.UTF-8",
    PGHOST: conn.host,
    PGPORT: String(conn.port),
    PGUSER: conn.user,
    PGDATABASE: conn.database,
    PGAPPNAME: appName,
    PGCONNECT_TIMEOUT: "10",
    PGPASSFILE: conn.passfile,
  };
  // libpq looks in HOME for ~/.postgresql/root.crt and the client certificate.
  if (from.HOME) env.HOME = from.HOME;
  for (const name of PASSED_THROUGH) if (from[name]) env[name] = from[name];
  if (conn.password !== undefined) env.PGPASSWORD = conn.password;
  if (conn.options !== undefined) env.PGOPTIONS = conn.options;
  if (conn.sslmode !== undefined) env.PGSSLMODE = conn.sslmode;
  if (conn.sslrootcert !== undefined) env.PGSSLROOTCERT = conn.sslrootcert;
  if (conn.sslcert !== undefined) env.PGSSLCERT = conn.sslcert;
  if (conn.sslkey !== undefined) env.PGSSLKEY = conn.sslkey;
  return env;
}

/**
 * Node TLS options with libpq's meaning for each sslmode:
 * - require encrypts without verifying, unless a root certificate is given, when (like
 *   libpq) it verifies the chain as verify-ca does;
 * - verify-ca checks the chain against sslrootcert, not the host name;
 * - verify-full checks the chain and that the certificate names the host.
 * sslrootcert=system (PostgreSQL 16+) trusts the system's CAs. Client certificates
 * (sslcert, sslkey) are sent when given.
 */
export async function tlsOptions(conn: PgConn, mode: SslMode): Promise<ConnectionOptions | false> {
  if (mode === "disable") return false;
  const read = async (file: string, what: string) => {
    try {
      return await readFile(file);
    } catch (err) {
      throw new UsageError(`cannot read ${what} ${file}: ${fileProblem(err)}`, {
        cause: err,
        hint: `check the ${what} path in the URL or the PG${what.toUpperCase()} variable`,
      });
    }
  };
  const options: ConnectionOptions = {};
  if (conn.sslcert) options.cert = await read(conn.sslcert, "sslcert");
  if (conn.sslkey) options.key = await read(conn.sslkey, "sslkey");
  const verify =
    mode === "verify-ca" || mode === "verify-full" || (mode === "require" && conn.sslrootcert !== undefined);
  if (!verify) return { ...options, rejectUnauthorized: false };
  if (conn.sslrootcert === undefined) {
    throw new UsageError(`sslmode=${mode} needs a root certificate to verify the server against`, {
      hint: "add sslrootcert=/path/to/root.crt to the URL (or set PGSSLROOTCERT), or sslrootcert=system for the system's CAs",
    });
  }
  if (conn.sslrootcert !== "system") options.ca = await read(conn.sslrootcert, "sslrootcert");
  options.rejectUnauthorized = true;
  if (mode === "verify-full") options.servername = conn.host;
  else options.checkServerIdentity = () => undefined;
  return options;
}

/** Connects with `pg`, turning its failures into one clear typed error. */
export async function connect(conn: PgConn, appName = "strongroom"): Promise<pg.Client> {
  const mode = conn.sslmode ?? "prefer";
  // prefer tries TLS first and falls back to plain text; allow does the reverse.
  const attempts: SslMode[] =
    mode === "prefer" ? ["prefer", "disable"] : mode === "allow" ? ["disable", "prefer"] : [mode];
  let lastError: unknown;
  for (const attempt of attempts) {
    const ssl = await tlsOptions(conn, attempt);
    const client = new pg.Client({
      host: conn.host,
      port: conn.port,
      user: conn.user,
      database: conn.database,
      application_name: appName,
      connectionTimeoutMillis: 10_000,
      // Called only when the server asks for a password. Given always, so that pg never
      // falls back to its own (deprecated, stderr-printing) .pgpass reader.
      password: () => passwordFor(conn),
      // Given always: left undefined, pg would read PGSSLMODE itself, with its own meaning.
      ssl,
      ...(conn.options !== undefined ? { options: conn.options } : {}),
    });
    client.on("error", () => undefined); // a dropped idle connection surfaces on the next query instead
    try {
      await client.connect();
    } catch (err) {
      await client.end().catch(() => undefined);
      lastError = err;
      if (attempts.length > 1 && !isAuthFailure(err)) continue;
      throw mapConnectError(err, conn);
    }
    try {
      await client.query(SESSION_SETTINGS);
      return client;
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
  }
  throw mapConnectError(lastError, conn);
}

/** The password: given, else from the password file, else a clear error. */
async function passwordFor(conn: PgConn): Promise<string> {
  if (conn.password !== undefined) return conn.password;
  const found = await lookupPgpass(conn.passfile, conn);
  if (found.password !== undefined) {
    registerSecret(found.password);
    return found.password;
  }
  throw new DatabaseAuthError(`no password was supplied for ${describeConn(conn)}, and the server asks for one`, {
    hint: `set PGPASSWORD, ~/.pgpass, or the URL${found.ignored ? ` (${found.ignored}, so it was ignored)` : ""}`,
  });
}

function isAuthFailure(err: unknown): boolean {
  if (err instanceof DatabaseAuthError) return true;
  const code = (err as { code?: string }).code;
  return code === "28P01" || code === "3D000";
}

/**
 * Settings for the sessions strongroom holds open. The backup's session exports the
 * snapshot and then sits idle in its transaction for the whole dump. The restore's
 * session sits idle while pg_restore runs. Managed servers often set
 * idle_in_transaction_session_timeout, idle_session_timeout, statement_timeout and (17+)
 * transaction_timeout, any of which would kill such a session, so they are off here.
 * Only the settings this server has are set, so one statement serves every version.
 * row_security is off so that a count is never silently filtered by a policy: where a
 * policy would apply, the query fails instead.
 */
const SESSION_SETTINGS = `select set_config(name, case when name = 'row_security' then 'off' else '0' end, false)
  from pg_settings
 where name in ('statement_timeout', 'idle_in_transaction_session_timeout', 'idle_session_timeout',
                'transaction_timeout', 'row_security')`;

const TLS_ERRORS = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_UNTRUSTED",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

function mapConnectError(err: unknown, conn: PgConn): Error {
  if (err instanceof DatabaseAuthError) return err;
  const code = (err as { code?: string }).code;
  const where = describeConn(conn);
  // PostgreSQL answers a role that does not exist as it answers a wrong password (28P01)
  // wherever it asks for one, so as not to tell a stranger which roles exist; it says so
  // (28000) only where it asks for nothing (trust, peer). The message says what it can.
  const serverSaid = String((err as Error).message ?? "");
  if (code === "28000" && /^role ".*" does not exist$/.test(serverSaid)) {
    return new DatabaseAuthError(`role ${conn.user} does not exist on ${conn.host}:${conn.port}`, {
      cause: err,
      hint: "check the user name in the URL (or PGUSER), or create the role",
    });
  }
  if (code === "28P01") {
    return new DatabaseAuthError(
      `authentication failed for ${where}: the password is wrong, or role ${conn.user} does not exist (the server does not say which)`,
      { cause: err, hint: "check the user name and the password (in the URL, PGPASSWORD or ~/.pgpass)" },
    );
  }
  if (code === "28000") {
    return new DatabaseAuthError(`the server refused ${where}: ${serverSaid}`, {
      cause: err,
      hint: "the server's pg_hba.conf must let this user connect to this database from here; check the user name and pg_hba.conf",
    });
  }
  if (code === "3D000") {
    return new DatabaseConnectionError(`database ${conn.database} does not exist on ${conn.host}:${conn.port}`, {
      cause: err,
      hint: "check the database name at the end of the URL",
    });
  }
  if (typeof code === "string" && TLS_ERRORS.has(code)) {
    return new DatabaseConnectionError(`the server's certificate for ${where} failed verification (${code})`, {
      cause: err,
      hint:
        code === "ERR_TLS_CERT_ALTNAME_INVALID"
          ? "sslmode=verify-full needs the certificate to name the host in the URL; connect by that name, or use verify-ca"
          : `check sslrootcert (${conn.sslrootcert ?? "none"}, from the URL or PGSSLROOTCERT): it must hold the CA that signed the server's certificate`,
    });
  }
  if (/does not support SSL/i.test((err as Error).message ?? "")) {
    return new DatabaseConnectionError(
      `${where} does not accept TLS connections, and sslmode=${conn.sslmode} requires it`,
      {
        cause: err,
        hint: "enable ssl on the server, or use sslmode=prefer where plain text is acceptable",
      },
    );
  }
  const reason = code ?? (err as Error).message;
  return new DatabaseConnectionError(`cannot connect to ${where} (${reason})`, {
    cause: err,
    hint: "check that the server is running and reachable from here, and the host and port in the URL",
  });
}
