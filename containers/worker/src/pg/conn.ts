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
    return client;
  } catch (err) {
    await client.end().catch(() => undefined);
    throw mapConnectError(err, conn);
  }
}

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
