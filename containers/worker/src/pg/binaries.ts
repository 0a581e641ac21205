import { execFile } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { NoSuitablePgDumpError } from "#core/errors.ts";

const run = promisify(execFile);

export type PgTool = "pg_dump" | "pg_dumpall" | "pg_restore" | "pg_basebackup";

export interface PgBinDir {
  dir: string;
  major: number;
  version: string;
}

/** Bin directories to search: PG_BIN_DIRS (colon-separated) first, then /usr/lib/postgresql/<major>/bin, newest first. */
export function candidateDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const fromEnv = (env.PG_BIN_DIRS ?? "").split(":").filter((d) => d !== "");
  const root = "/usr/lib/postgresql";
  const system = existsSync(root)
    ? readdirSync(root)
        .filter((d) => /^\d+$/.test(d))
        .sort((a, b) => Number(b) - Number(a))
        .map((d) => path.join(root, d, "bin"))
    : [];
  return [...new Set([...fromEnv, ...system])];
}

const versions = new Map<string, Promise<PgBinDir | undefined>>();

/** The version of the tool in `dir`, or undefined when it is not there or does not run. */
function probe(dir: string, tool: PgTool): Promise<PgBinDir | undefined> {
  const key = `${dir}/${tool}`;
  let found = versions.get(key);
  if (!found) {
    found = run(path.join(dir, tool), ["--version"], { timeout: 10_000 }).then(
      ({ stdout }) => {
        const m = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(stdout);
        return m ? { dir, major: Number(m[1]), version: `${m[1]}.${m[2] ?? 0}` } : undefined;
      },
      () => undefined,
    );
    versions.set(key, found);
  }
  return found;
}

/**
 * Starts the `--version` probes of every candidate directory now, so that a later
 * findPgBin, once the server's major is known, finds them done: the probes overlap the
 * connection instead of following it.
 */
export function warmPgBins(tools: PgTool[], env: NodeJS.ProcessEnv = process.env): void {
  for (const dir of candidateDirs(env)) for (const tool of tools) void probe(dir, tool);
}

/**
 * The bin directory whose `tools` can work with a server (or archive) of
 * `requiredMajor`: the same major if installed, else the lowest newer one.
 * pg_dump refuses servers newer than itself, so older majors never qualify.
 */
export async function findPgBin(
  tools: PgTool[],
  requiredMajor: number,
  what: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<PgBinDir> {
  // Every directory at once: each probe is a process start, and a backup waits for them.
  const found = (
    await Promise.all(
      candidateDirs(env).map(async (dir) => {
        const probes = await Promise.all(tools.map((t) => probe(dir, t)));
        const first = probes[0];
        return first && probes.every((p) => p?.major === first.major) ? first : undefined;
      }),
    )
  ).filter((f): f is PgBinDir => f !== undefined);
  const fit = found.filter((f) => f.major >= requiredMajor).sort((a, b) => a.major - b.major)[0];
  if (fit) return fit;
  const have = found.length ? found.map((f) => `${tools[0]} ${f.major} in ${f.dir}`).join(", ") : "none";
  throw new NoSuitablePgDumpError(`no suitable ${tools[0]} for ${what} (PostgreSQL ${requiredMajor}): found ${have}`, {
    hint: `install postgresql-client-${requiredMajor} (from apt.postgresql.org) or point PG_BIN_DIRS at a PostgreSQL ${requiredMajor}+ bin directory`,
  });
}

/**
 * The pg_restore that can read an archive written by `pgDumpVersion` into a server of
 * `server.major`: pg_restore reads archives of its own and older pg_dumps only.
 */
export function findPgRestoreFor(
  server: { major: number; version: string },
  pgDumpVersion: string,
  env?: NodeJS.ProcessEnv,
): Promise<PgBinDir> {
  const pgDumpMajor = Number(pgDumpVersion.split(".")[0]);
  return findPgBin(
    ["pg_restore"],
    Math.max(pgDumpMajor, server.major),
    `a PostgreSQL ${server.version} target and a pg_dump ${pgDumpVersion} archive`,
    env,
  );
}
