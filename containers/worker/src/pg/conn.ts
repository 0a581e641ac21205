import pg from "pg";
import { parse } from "pg-connection-string";
import { DatabaseAuthError, DatabaseConnectionError, UsageError } from "../../../../core/errors.ts";
import { registerSecret } from "../../../../core/log.ts";

/** A parsed connection URL. The password stays in memory: never in argv, logs or files. */
export interface PgConn {
  host: string;
  port: number;
  user: string;
  password: string | undefined;
  database: string;
  sslmode: string | undefined;
}

export function parsePgUrl(url: string, flag = "--db"): PgConn {
  if (!/^postgres(ql)?:\/\//.test(url)) {
    throw new UsageError(`${flag} must be a postgres:// URL`, {
      hint: "e.g. postgres://user@host:5432/dbname (put the password in PGPASSWORD or the URL)",
    });
  }
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(url);
  } catch (err) {
    throw new UsageError(`${flag} is not a valid postgres URL`, { cause: err });
  }
  const password = parsed.password || process.env.PGPASSWORD || undefined;
  registerSecret(password);
  const database = parsed.database || process.env.PGDATABASE || "";
  if (database === "") throw new UsageError(`${flag} names no database`, { hint: "append /dbname to the URL" });
  const sslmode = typeof parsed.ssl === "string" ? parsed.ssl : (new URL(url).searchParams.get("sslmode") ?? undefined);
  return {
    host: parsed.host || process.env.PGHOST || "localhost",
    port: Number(parsed.port || process.env.PGPORT || 5432),
    user: parsed.user || process.env.PGUSER || process.env.USER || "postgres",
    password,
    database,
    sslmode: sslmode ?? undefined,
  };
}

/** `user@host:port/db`, safe to print. */
export function describeConn(conn: PgConn): string {
  return `${conn.user}@${conn.host}:${conn.port}/${conn.database}`;
}

/**
 * Environment for libpq tools (pg_dump, pg_restore, pg_dumpall): the password travels
 * here, never in argv, where any user of the machine could read it from /proc.
 */
export function libpqEnv(conn: PgConn, appName: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    LANG: "C.UTF-8",
    PGHOST: conn.host,
    PGPORT: String(conn.port),
    PGUSER: conn.user,
    PGDATABASE: conn.database,
    PGAPPNAME: appName,
    PGCONNECT_TIMEOUT: "10",
  };
  if (conn.password !== undefined) env.PGPASSWORD = conn.password;
  if (conn.sslmode !== undefined) env.PGSSLMODE = conn.sslmode;
  return env;
}

/** Connects with `pg`, turning its failures into one clear typed error. */
export async function connect(conn: PgConn, appName = "strongroom"): Promise<pg.Client> {
  const client = new pg.Client({
    host: conn.host,
    port: conn.port,
    user: conn.user,
    database: conn.database,
    application_name: appName,
    connectionTimeoutMillis: 10_000,
    ...(conn.password !== undefined ? { password: conn.password } : {}),
    ...(conn.sslmode && conn.sslmode !== "disable"
      ? { ssl: { rejectUnauthorized: conn.sslmode === "verify-full" } }
      : {}),
  });
  client.on("error", () => undefined); // a dropped idle connection surfaces on the next query instead
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
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

function mapConnectError(err: unknown, conn: PgConn): Error {
  const code = (err as { code?: string }).code;
  const where = describeConn(conn);
  if (code === "28P01" || code === "28000") {
    return new DatabaseAuthError(`authentication failed for ${where}`, {
      cause: err,
      hint: "check the user and password (in the URL or PGPASSWORD) and pg_hba.conf",
    });
  }
  if (code === "3D000") {
    return new DatabaseConnectionError(`database ${conn.database} does not exist on ${conn.host}:${conn.port}`, {
      cause: err,
      hint: "check the database name at the end of the URL",
    });
  }
  const reason = code ?? (err as Error).message;
  return new DatabaseConnectionError(`cannot connect to ${where} (${reason})`, {
    cause: err,
    hint: "check that the server is running and reachable from here, and the host and port in the URL",
  });
}
