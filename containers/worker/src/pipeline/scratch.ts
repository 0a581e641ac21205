import { randomBytes } from "node:crypto";
import type { Manifest } from "#core/manifest.ts";
import { connect, type PgConn, parsePgUrl } from "../pg/conn.ts";
import { type Cluster, findServerBin, startCluster } from "../pg/scratch-cluster.ts";
import { serverInfo } from "../pg/server-info.ts";

/**
 * A database to restore a backup into that nobody else uses: on a throwaway cluster of
 * the backup's own server major (`auto`), or a fresh database on a given server. verify
 * restores into one to check it; export-schema to re-dump a schema from it.
 */
export interface Scratch {
  target: PgConn;
  serverVersion: string;
  /** How to reach what --keep leaves (no password). */
  describe: string;
  dispose: () => Promise<void>;
}

export interface ScratchOptions {
  scratch: "auto" | PgConn;
  /** Names the database: strongroom_<purpose>_<random>. */
  purpose: string;
  /** Where an auto cluster's directory goes. @default os.tmpdir() */
  scratchDir?: string;
  env?: NodeJS.ProcessEnv;
}

export async function openScratch(manifest: Manifest, options: ScratchOptions): Promise<Scratch> {
  const database = `strongroom_${options.purpose}_${randomBytes(4).toString("hex")}`;
  if (options.scratch !== "auto") {
    const server = options.scratch;
    const target: PgConn = { ...server, database };
    return {
      target,
      serverVersion: await versionOf(server),
      describe: `database ${database} on ${server.host}:${server.port}`,
      dispose: async () => {
        const client = await connect(server, "strongroom-scratch");
        try {
          await client.query(`drop database if exists ${client.escapeIdentifier(database)} with (force)`);
        } finally {
          await client.end().catch(() => undefined);
        }
      },
    };
  }
  const major =
    manifest.server.versionNum >= 100000
      ? Math.floor(manifest.server.versionNum / 10000)
      : Math.floor(manifest.server.versionNum / 100);
  const binDir = await findServerBin(major, options.env);
  const cluster: Cluster = await startCluster(
    binDir,
    "scratch",
    options.scratchDir ? { parentDir: options.scratchDir } : {},
  );
  const server = parsePgUrl(cluster.url, "scratch cluster");
  return {
    target: { ...server, database },
    serverVersion: await versionOf(server),
    describe: `${cluster.dir} (PostgreSQL ${major}, database ${database}; start it with ${binDir}/pg_ctl -D ${cluster.dir}/data start)`,
    dispose: cluster.stop,
  };
}

async function versionOf(conn: PgConn): Promise<string> {
  const client = await connect(conn, "strongroom-scratch");
  try {
    return (await serverInfo(client)).version;
  } finally {
    await client.end().catch(() => undefined);
  }
}
