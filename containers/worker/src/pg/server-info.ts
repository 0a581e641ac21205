import type pg from "pg";

/** What strongroom records about a server (backup source or restore target). */
export interface ServerInfo {
  version: string;
  versionNum: number;
  major: number;
  systemIdentifier: string | null;
  database: string;
  databaseBytes: number;
}

export async function serverInfo(client: pg.Client): Promise<ServerInfo> {
  const { rows } = await client.query<{ v: string; n: string; db: string; size: string }>(
    `select current_setting('server_version') as v, current_setting('server_version_num') as n,
            current_database() as db, pg_database_size(current_database())::text as size`,
  );
  const row = rows[0] as { v: string; n: string; db: string; size: string };
  let systemIdentifier: string | null = null;
  try {
    // Superusers and pg_monitor-like roles only; a least-privilege role goes without.
    const id = await client.query<{ id: string }>("select system_identifier::text as id from pg_control_system()");
    systemIdentifier = id.rows[0]?.id ?? null;
  } catch {
    systemIdentifier = null;
  }
  const versionNum = Number(row.n);
  return {
    version: row.v.split(" ")[0] as string,
    versionNum,
    major: Math.floor(versionNum / 10000),
    systemIdentifier,
    database: row.db,
    databaseBytes: Number(row.size),
  };
}
