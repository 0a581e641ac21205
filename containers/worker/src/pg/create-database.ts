import pg from "pg";
import { RestoreFailedError } from "#core/errors.ts";
import type { Logger } from "#core/log.ts";
import { connect, describeConn, type PgConn } from "./conn.ts";

/**
 * `restore --create`: creates the target database when it does not exist, connected to
 * the server's maintenance database (postgres, else template1) as the target's user.
 * An existing database is left as it is; the restore's own emptiness check still applies.
 */
export async function createDatabaseIfMissing(target: PgConn, log: Logger): Promise<boolean> {
  let client: pg.Client | undefined;
  let lastError: unknown;
  for (const database of ["postgres", "template1"]) {
    try {
      client = await connect({ ...target, database }, "strongroom-restore");
      break;
    } catch (err) {
      lastError = err;
    }
  }
  if (!client) throw lastError;
  try {
    const { rowCount } = await client.query("select 1 from pg_database where datname = $1", [target.database]);
    if (rowCount) return false;
    try {
      await client.query(`create database ${pg.escapeIdentifier(target.database)}`);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "42P04") return false; // created meanwhile by someone else: it exists, as asked
      throw new RestoreFailedError(`cannot create database ${describeConn(target)}: ${(err as Error).message}`, {
        cause: err,
        hint:
          code === "42501"
            ? "grant CREATEDB to the restore role, or create the database first"
            : "create the database first, then restore without --create",
      });
    }
    log.info("created the target database", { target: describeConn(target) });
    return true;
  } finally {
    await client.end().catch(() => undefined);
  }
}
