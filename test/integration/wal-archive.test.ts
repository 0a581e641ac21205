import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, chown, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import * as path from "node:path";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { pathToFileURL } from "node:url";
import { zstdCompressSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { generateSigningKey, parseSigningKey } from "#core/audit/row-signature.ts";
import { type BaseManifest, readBaseManifest } from "#core/pitr/base-manifest.ts";
import { parseLsn } from "#core/pitr/lsn.ts";
import { decodeWalHeader, encodeWalHeader, signWalRecord, WAL_FORMAT } from "#core/pitr/wal-record.ts";
import type { WalVerifyReport } from "#core/pitr/wal-verify.ts";
import { openStore } from "#core/store/open-store.ts";
import { type Cluster, serverUser, startCluster, systemBinDir } from "#worker/pg/scratch-cluster.ts";
import { freePort } from "#worker/service-process.ts";
import { ageEncrypt } from "#worker/stages/age-stream.ts";
import { CLI, runCli } from "../helpers/cli.ts";
import { identityFile } from "../helpers/fixture.ts";
import { sql } from "../helpers/pg.ts";
import { readAll } from "../helpers/streams.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * WAL archiving as PostgreSQL drives it: a real PostgreSQL 15 whose archive_command is
 * `strongroom wal-push %p`, and a cluster recovered from a base backup whose
 * restore_command is `strongroom wal-fetch %f %p`, both run by the server as its own OS
 * user. PostgreSQL's contracts (docs/pitr.md): wal-push exits 0 only once the file is
 * stored, never above 125; wal-fetch exits 1 only for a file not archived, and 126 for
 * anything else, so recovery stops instead of promoting.
 */
const DB = "shop";

let owner: { uid: number; gid: number } | undefined;
let work: string;
let storeDir: string;
let storeUrl: string;
let key: Awaited<ReturnType<typeof identityFile>>;
let signingKeyFile: string;
let signer: string;
let cluster: Cluster;

/** A file the server's own OS user may read (it runs archive_command and restore_command). */
async function forServer(file: string): Promise<void> {
  if (owner) await chown(file, owner.uid, owner.gid);
}

const pushArgs = () => [
  "--store",
  storeUrl,
  "--database-id",
  DB,
  "--recipient",
  key.recipient,
  "--signing-key",
  signingKeyFile,
];
const fetchArgs = (signers = [signer]) => [
  "--store",
  storeUrl,
  "--database-id",
  DB,
  "--identity",
  key.file,
  ...signers.flatMap((s) => ["--signer", s]),
];
/** A command line PostgreSQL runs through the shell: paths only, no secret in it. */
const commandLine = (args: string[]) => [process.execPath, CLI, ...args].map((a) => `'${a}'`).join(" ");

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const got = await probe();
    if (got !== undefined) return got;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Switches to a new segment in its own transaction and waits until the archiver has stored it. */
async function switchAndArchive(url: string): Promise<string> {
  const [{ name }] = (await sql<{ name: string }>(url, "select pg_walfile_name(pg_switch_wal()) as name")) as [
    { name: string },
  ];
  await waitFor(`${name} archived`, async () => {
    const [s] = await sql<{ last: string | null; failed: string | null }>(
      url,
      "select last_archived_wal as last, last_failed_wal as failed from pg_stat_archiver",
    );
    return s?.last !== null && (s?.last ?? "") >= name ? true : undefined;
  });
  return name;
}

beforeAll(async () => {
  owner = await serverUser();
  work = await tempDir("strongroom-wal-");
  await chmod(work, 0o755);
  storeDir = path.join(work, "store");
  await mkdir(storeDir, { mode: 0o700 });
  await forServer(storeDir);
  storeUrl = pathToFileURL(storeDir).href;
  key = await identityFile();
  await chmod(path.dirname(key.file), 0o755);
  await forServer(key.file);
  const signing = generateSigningKey();
  signer = signing.signer;
  signingKeyFile = path.join(work, "signing.key");
  await writeFile(signingKeyFile, `${signing.secret}\n`, { mode: 0o600 });
  await forServer(signingKeyFile);
  cluster = await startCluster(await systemBinDir(), "walsrc", {
    parentDir: work,
    settings: [
      "archive_mode=on",
      `archive_command=${commandLine(["wal-push", "%p", ...pushArgs()])}`,
      "wal_level=replica",
    ],
  });
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
});

describe("strongroom wal-push as archive_command", () => {
  it("archives each segment PostgreSQL switches from: signed, encrypted, with the cluster's system identifier, fetched back byte for byte", async () => {
    await sql(cluster.url, "create table t (n int); insert into t select generate_series(1, 1000)");
    const name = await switchAndArchive(cluster.url);
    const store = await openStore(storeUrl);
    const object = await readAll(await store.get(`${DB}/wal/${name}`));
    const { record, bodyOffset } = decodeWalHeader(object, name);
    const [control] = await sql<{ id: string }>(
      cluster.url,
      "select system_identifier::text as id from pg_control_system()",
    );
    expect(record).toMatchObject({
      format: WAL_FORMAT,
      databaseId: DB,
      name,
      kind: "segment",
      timeline: 1,
      systemIdentifier: control?.id,
      plainBytes: 16 * 1024 * 1024,
      signature: { signer },
    });
    // No plaintext in the store: the body is age, and a segment of zeros would compress to nothing.
    expect(object.subarray(bodyOffset, bodyOffset + 21).toString()).toBe("age-encryption.org/v1");
    const dest = path.join(work, "fetched");
    const r = await runCli(["wal-fetch", name, dest, ...fetchArgs()]);
    expect(r.code, r.stderr).toBe(0);
    const fetched = await readFile(dest);
    expect(createHash("sha256").update(fetched).digest("hex")).toBe(record.plainSha256);
    expect((await stat(dest)).mode & 0o777).toBe(0o600);
  }, 60_000);

  it("exits 0 for a file archived before with the same content, and 1, leaving the archive as it was, for one with other content", async () => {
    const store = await openStore(storeUrl);
    const [name] = (await store.list(`${DB}/wal/`)).objects.map((o) => path.posix.basename(o.key));
    const before = await readAll(await store.get(`${DB}/wal/${name}`));
    const dir = path.join(work, "again");
    await mkdir(dir, { recursive: true });
    const same = path.join(dir, name as string);
    expect((await runCli(["wal-fetch", name as string, same, ...fetchArgs()])).code).toBe(0);
    const again = await runCli(["wal-push", same, ...pushArgs()]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain("already archived with the same content");
    // The same segment with one byte past its header changed: another cluster's, or a replay.
    const bytes = await readFile(same);
    bytes[100] = (bytes[100] ?? 0) ^ 0xff;
    await writeFile(same, bytes);
    const other = await runCli(["wal-push", same, ...pushArgs()]);
    expect(other.code).toBe(1);
    expect(other.stderr).toContain("[WalConflictError]");
    expect(other.stderr).toContain("never overwritten");
    const after = await readAll(await store.get(`${DB}/wal/${name}`));
    expect(after.equals(before)).toBe(true);
  }, 60_000);

  it("never overwrites a timeline history file, and refuses a segment whose pages name another segment", async () => {
    const dir = path.join(work, "history");
    await mkdir(dir, { recursive: true });
    const history = path.join(dir, "00000007.history");
    await writeFile(history, "1\t0/3000000\tno recovery target specified\n");
    expect((await runCli(["wal-push", history, ...pushArgs()])).code).toBe(0);
    await writeFile(history, "1\t0/4000000\tanother history\n");
    const twice = await runCli(["wal-push", history, ...pushArgs()]);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toContain("[WalConflictError]");
    // A segment copied under another segment's name would be replayed in the wrong place.
    const store = await openStore(storeUrl);
    const [segment] = (await store.list(`${DB}/wal/0000000100`)).objects.map((o) => path.posix.basename(o.key));
    const renamed = path.join(dir, "0000000100000000000000FE");
    expect((await runCli(["wal-fetch", segment as string, renamed, ...fetchArgs()])).code).toBe(0);
    const refused = await runCli(["wal-push", renamed, ...pushArgs()]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/is not the WAL segment 0000000100000000000000FE \(its first page says 0000000100/);
    expect(await store.list(`${DB}/wal/0000000100000000000000FE`)).toMatchObject({ objects: [] });
  }, 60_000);

  it("refuses to archive without a signing key, and never exits above 125 (which would restart the archiver)", async () => {
    const dir = path.join(work, "nokey");
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, "00000009.history");
    await writeFile(file, "x\n");
    const unsigned = await runCli([
      "wal-push",
      file,
      "--store",
      storeUrl,
      "--database-id",
      DB,
      "--recipient",
      key.recipient,
    ]);
    expect(unsigned.code).toBe(2);
    expect(unsigned.stderr).toContain("no signing key was given");
    const typo = await runCli(["wal-push", file, ...pushArgs(), "--recipent", "x"]);
    expect(typo.code).toBe(2);
    const missing = await runCli(["wal-push", path.join(dir, "000000010000000000000042"), ...pushArgs()]);
    expect(missing.code).toBe(1);
  }, 60_000);
});

describe("strongroom wal-fetch as restore_command", () => {
  it("exits 1 only for a file the store says is not archived; a usage error, a store that is down or a planted file exit 126", async () => {
    const dest = path.join(work, "fetch-dest");
    const absent = await runCli(["wal-fetch", "0000000100000000000000AA", dest, ...fetchArgs()]);
    expect(absent.code).toBe(1);
    expect(absent.stderr).toContain("[WalFileMissingError]");
    const noSigner = await runCli(["wal-fetch", "0000000100000000000000AA", dest, ...fetchArgs([])]);
    expect(noSigner.code).toBe(126);
    const typo = await runCli(["wal-fetch", "0000000100000000000000AA", dest, ...fetchArgs(), "--signr", signer]);
    expect(typo.code).toBe(126);
    expect(typo.stderr).toContain("unknown option");
    // A wrong database id (or a store that is gone): an empty archive is no "not archived".
    const wrongId = await runCli([
      "wal-fetch",
      "0000000100000000000000AA",
      dest,
      ...fetchArgs().map((a) => (a === DB ? "shopp" : a)),
    ]);
    expect(wrongId.code).toBe(126);
    expect(wrongId.stderr).toContain("holds nothing");
    // A global option before the command does not hide it: still 126, never 2.
    const before = await runCli([
      "--log-format",
      "json",
      "wal-fetch",
      "0000000100000000000000AA",
      dest,
      ...fetchArgs(),
      "--signr",
      "x",
    ]);
    expect(before.code).toBe(126);
    const notAName = await runCli(["wal-fetch", "../../etc/passwd", dest, ...fetchArgs()]);
    expect(notAName.code).toBe(126);
    // An S3 endpoint that takes the connection and never answers: the timeout, not a hang.
    const silent = await silentServer();
    const downEnv = {
      AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${silent.port}`,
      AWS_ENDPOINT_URL: `http://127.0.0.1:${silent.port}`,
      AWS_ACCESS_KEY_ID: "x",
      AWS_SECRET_ACCESS_KEY: "x",
      AWS_REGION: "us-east-1",
    };
    const down = ["--store", "s3://wal-down/pg", "--database-id", DB, "--timeout", "2"];
    try {
      const fetchStarted = Date.now();
      const fetchDown = await runCli(
        ["wal-fetch", "0000000100000000000000AA", dest, ...down, "--identity", key.file, "--signer", signer],
        downEnv,
      );
      expect(fetchDown.code, fetchDown.stderr).toBe(126);
      expect(fetchDown.stderr).toContain("took longer than 2 s");
      expect(Date.now() - fetchStarted).toBeLessThan(30_000);
      // archive_command: the same store down is a failure PostgreSQL retries (1), never a hang or above 125.
      const file = path.join(work, "00000011.history");
      await writeFile(file, "1\t0/3000000\tx\n");
      const pushDown = await runCli(
        ["wal-push", file, ...down, "--recipient", key.recipient, "--signing-key", signingKeyFile],
        downEnv,
      );
      expect(pushDown.code, pushDown.stderr).toBe(1);
      expect(pushDown.stderr).toContain("took longer than 2 s");
    } finally {
      silent.server.close();
    }
    expect(await readdir(path.dirname(dest))).not.toContain("fetch-dest");
  }, 60_000);

  it("refuses, with 126, a file a store writer planted: signed by another key, copied from another database, or with its body replaced", async () => {
    const store = await openStore(storeUrl);
    const [name] = (await store.list(`${DB}/wal/0000000100`)).objects.map((o) => path.posix.basename(o.key)) as [
      string,
    ];
    const genuine = await readAll(await store.get(`${DB}/wal/${name}`));
    const { record, bodyOffset } = decodeWalHeader(genuine, name);
    const dest = path.join(work, "planted");
    const plant = async (target: string, bytes: Buffer) => {
      await store.delete(`${DB}/wal/${target}`);
      await store.putIfAbsent(`${DB}/wal/${target}`, bytes);
    };
    // 1. The writer's own key signs a header for a name the archive lacks.
    const forger = parseSigningKey(generateSigningKey().secret);
    const forgedName = "0000000100000000000000F0";
    await plant(
      forgedName,
      Buffer.concat([
        encodeWalHeader(signWalRecord({ ...record, name: forgedName }, forger)),
        genuine.subarray(bodyOffset),
      ]),
    );
    const foreign = await runCli(["wal-fetch", forgedName, dest, ...fetchArgs()]);
    expect(foreign.code).toBe(126);
    expect(foreign.stderr).toContain("is not signed by a trusted signer");
    // 2. A genuine object of this database put under another name (a replay).
    const replayName = "0000000100000000000000F1";
    await plant(replayName, genuine);
    const replayed = await runCli(["wal-fetch", replayName, dest, ...fetchArgs()]);
    expect(replayed.code).toBe(126);
    expect(replayed.stderr).toContain("not what its key says");
    // 2b. A genuine object of this database id that another cluster archived: not the one being recovered.
    const otherCluster = await runCli(["wal-fetch", name, dest, ...fetchArgs(), "--system-identifier", "1"]);
    expect(otherCluster.code).toBe(126);
    expect(otherCluster.stderr).toContain("not the one being recovered");
    // 3. The genuine signed header over another body, encrypted to the same public recipient.
    const otherBody: Buffer[] = [];
    await pipeline(
      // Twice the signed size: it must not expand past what the header allows (a bomb would).
      Readable.from([zstdCompressSync(Buffer.alloc(record.plainBytes * 2, 7))]),
      await ageEncrypt([key.recipient]),
      new Writable({
        write(chunk: Buffer, _e, done) {
          otherBody.push(chunk);
          done();
        },
      }),
    );
    await plant(name, Buffer.concat([genuine.subarray(0, bodyOffset), ...otherBody]));
    try {
      const swapped = await runCli(["wal-fetch", name, dest, ...fetchArgs()]);
      expect(swapped.code).toBe(126);
      expect(swapped.stderr).toMatch(/is not what its signed header says|larger than|maxOutputLength/i);
      await expect(stat(dest)).rejects.toMatchObject({ code: "ENOENT" });
    } finally {
      await plant(name, genuine);
    }
    expect((await runCli(["wal-fetch", name, dest, ...fetchArgs()])).code).toBe(0);
    expect((await readdir(work)).filter((f) => f.includes(".strongroom-"))).toEqual([]);
  }, 60_000);
});

/** Starts one of the cluster's programs as the server's OS user (initdb refuses root; so does a data directory). */
function spawnAsServer(program: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(path.join(cluster.binDir, program), args, {
    ...(owner ? { uid: owner.uid, gid: owner.gid } : {}),
    env: { PATH: process.env.PATH, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  for (const stream of [child.stdout, child.stderr]) {
    stream.on("data", (b: Buffer) => {
      output += b.toString();
    });
  }
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve(code));
  });
  return { child, output: () => output, exited };
}

/** Runs one of the cluster's programs as the server's OS user to its end. */
async function asServer(program: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const run = spawnAsServer(program, args, env);
  return { code: await run.exited, output: run.output() };
}

/** A plain base backup without WAL (-X none): everything after its start comes from the archive. */
async function baseBackup(name: string): Promise<string> {
  const dir = path.join(work, name);
  await mkdir(dir, { mode: 0o700 });
  await forServer(dir);
  const url = new URL(cluster.url);
  const r = await asServer(
    "pg_basebackup",
    ["-D", dir, "-X", "none", "--checkpoint=fast", "-h", "127.0.0.1", "-p", url.port, "-U", "postgres"],
    { PGPASSWORD: decodeURIComponent(url.password) },
  );
  expect(r.code, r.output).toBe(0);
  return dir;
}

/** Starts PostgreSQL on a recovered data directory: its log, and how it ended if it did. */
function startRecovery(dir: string, port: number) {
  const server = spawnAsServer("postgres", [
    "-D",
    dir,
    "-p",
    String(port),
    "-k",
    dir,
    "-c",
    "listen_addresses=127.0.0.1",
  ]);
  return {
    log: server.output,
    exited: server.exited,
    stop: async () => {
      if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill("SIGINT");
      await server.exited;
    },
  };
}

/** recovery.signal and the recovery settings, as `restore --pitr` writes them. */
async function configureRecovery(dir: string, restoreCommand: string, target: Record<string, string>): Promise<void> {
  const settings = { restore_command: restoreCommand, recovery_target_action: "promote", ...target };
  const lines = Object.entries(settings).map(([k, v]) => `${k} = '${v.replaceAll("'", "''")}'`);
  await writeFile(path.join(dir, "postgresql.auto.conf"), `${lines.join("\n")}\n`, { flag: "a" });
  await writeFile(path.join(dir, "recovery.signal"), "");
  for (const f of ["postgresql.auto.conf", "recovery.signal"]) await forServer(path.join(dir, f));
}

async function silentServer(): Promise<{ server: Server; port: number }> {
  const port = await freePort();
  const server = createServer(() => undefined);
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return { server, port };
}

describe("PostgreSQL's own recovery with wal-fetch as restore_command", () => {
  let base: string;
  let spare: string;

  beforeAll(async () => {
    base = await baseBackup("base");
    spare = await baseBackup("spare");
  }, 120_000);

  it("recovers to a time: only the row committed before it, PostgreSQL's 'recovery stopping' line, and a new timeline", async () => {
    await sql(cluster.url, "create table pitr (n int)");
    await sql(cluster.url, "insert into pitr values (1)");
    const [{ t }] = (await sql<{ t: string }>(cluster.url, "select now()::text as t")) as [{ t: string }];
    await new Promise((r) => setTimeout(r, 50));
    await sql(cluster.url, "insert into pitr values (2)");
    // In its own transaction: a switch inside the inserting one would leave row 2's commit unarchived.
    await switchAndArchive(cluster.url);
    await configureRecovery(base, commandLine(["wal-fetch", "%f", "%p", ...fetchArgs()]), { recovery_target_time: t });
    const port = await freePort();
    const server = startRecovery(base, port);
    try {
      const url = `postgres://postgres:${encodeURIComponent(decodeURIComponent(new URL(cluster.url).password))}@127.0.0.1:${port}/postgres`;
      await waitFor(
        "the recovered server to promote",
        async () => {
          try {
            const [r] = await sql<{ recovering: boolean }>(url, "select pg_is_in_recovery() as recovering");
            return r?.recovering === false ? true : undefined;
          } catch {
            return undefined;
          }
        },
        60_000,
      );
      expect(await sql(url, "select n from pitr order by n")).toEqual([{ n: 1 }]);
      const [{ wal }] = (await sql<{ wal: string }>(url, "select pg_walfile_name(pg_current_wal_lsn()) as wal")) as [
        { wal: string },
      ];
      expect(wal.slice(0, 8)).toBe("00000002");
      expect(server.log()).toMatch(/recovery stopping before commit of transaction \d+, time /);
    } finally {
      await server.stop();
    }
  }, 120_000);

  it("stops, and never promotes, when the store cannot be reached: wal-fetch's 126 is fatal to recovery", async () => {
    const unreachable = await freePort();
    const command = `AWS_ENDPOINT_URL_S3=http://127.0.0.1:${unreachable} AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 ${commandLine(
      [
        "wal-fetch",
        "%f",
        "%p",
        "--store",
        "s3://wal-down/pg",
        "--database-id",
        DB,
        "--identity",
        key.file,
        "--signer",
        signer,
        "--timeout",
        "5",
      ],
    )}`;
    await configureRecovery(spare, command, { recovery_target_timeline: "latest" });
    const server = startRecovery(spare, await freePort());
    const code = await Promise.race([
      server.exited,
      new Promise<"running">((r) => setTimeout(() => r("running"), 90_000)),
    ]);
    await server.stop();
    expect(code, server.log()).not.toBe("running");
    expect(code).not.toBe(0);
    // PostgreSQL words an exit of 126 as its shell's "command not executable": FATAL, never "not found".
    expect(server.log()).toMatch(
      /FATAL: +could not restore file "[0-9A-F]+\.history" from archive: command not executable/,
    );
    expect(server.log()).toContain("[StoreUnavailableError]");
    expect(server.log()).not.toContain("database system is ready to accept connections");
    expect(server.log()).not.toContain("selected new timeline ID");
  }, 120_000);
});

describe("strongroom basebackup", () => {
  const env = () => ({ DATABASE_URL: cluster.url });
  // As the server's OS user, as on the database host: the file store is shared with the
  // archiver, which runs as that user and must be able to write every directory in it.
  const asHost = () => (owner ? { user: owner } : {});

  it("streams pg_basebackup through zstd and age into the store, and commits it, signed, once the WAL from its start to its stop is archived", async () => {
    const r = await runCli(["basebackup", ...pushArgs(), "--json"], env(), asHost());
    expect(r.code, r.stderr).toBe(0);
    const manifest = JSON.parse(r.stdout) as BaseManifest;
    const store = await openStore(storeUrl);
    const text = (await readAll(await store.get(`${DB}/base/${manifest.baseId}/manifest.json`))).toString();
    const read = readBaseManifest(text, `${DB}/base/${manifest.baseId}/manifest.json`, new Set([signer]));
    const [control] = await sql<{ id: string }>(
      cluster.url,
      "select system_identifier::text as id from pg_control_system()",
    );
    expect(read).toMatchObject({
      databaseId: DB,
      timeline: 1,
      server: { major: 15, systemIdentifier: control?.id, walSegmentBytes: 16 * 1024 * 1024 },
      object: { key: `${DB}/base/${manifest.baseId}/base.tar.zst.age` },
    });
    expect(parseLsn(read.stopLsn)).toBeGreaterThan(parseLsn(read.startLsn));
    // Every segment the backup needs is in the archive before the manifest is.
    const archived = new Set((await store.list(`${DB}/wal/`)).objects.map((o) => path.posix.basename(o.key)));
    expect(archived.has(read.walSegments.first) && archived.has(read.walSegments.last)).toBe(true);
    // The stored object is the tar, encrypted: no plaintext in the store.
    const stored = await readAll(await store.get(read.object.key));
    expect(stored.length).toBe(read.object.storedBytes);
    expect(stored.subarray(0, 21).toString()).toBe("age-encryption.org/v1");
  }, 120_000);

  it("is not committed when the server does not archive under that database id: no manifest, and the segment it waited for named", async () => {
    const r = await runCli(
      ["basebackup", ...pushArgs().map((a) => (a === DB ? "elsewhere" : a)), "--wal-wait", "2"],
      env(),
      asHost(),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the WAL this base backup needs is not archived: [0-9A-F]{24}/);
    expect(r.stderr).toContain("--database-id elsewhere");
    const store = await openStore(storeUrl);
    const manifests = (await store.list("elsewhere/base/")).objects.filter((o) => o.key.endsWith("manifest.json"));
    expect(manifests).toEqual([]);
  }, 120_000);

  it("refuses a server that does not archive its WAL, before taking anything", async () => {
    const r = await runCli(["basebackup", ...pushArgs()], { DATABASE_URL: inject("pgUrl") });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("archive_mode = off");
  }, 60_000);
});

describe("strongroom restore --pitr", () => {
  const recovered: string[] = [];
  const pitrArgs = (pgdata: string) => [
    "restore",
    "--pitr",
    "--store",
    storeUrl,
    "--database-id",
    DB,
    "--identity",
    key.file,
    "--signer",
    signer,
    "--pgdata",
    pgdata,
  ];
  const password = () => decodeURIComponent(new URL(cluster.url).password);

  afterAll(async () => {
    for (const dir of recovered)
      await asServer("pg_ctl", ["stop", "-D", dir, "-m", "immediate"]).catch(() => undefined);
  });

  it("recovers to a time from its own base backup: only the row committed before it, on timeline 2, as PostgreSQL's log says", async () => {
    const b = await runCli(["basebackup", ...pushArgs()], { DATABASE_URL: cluster.url }, owner ? { user: owner } : {});
    expect(b.code, b.stderr).toBe(0);
    await sql(cluster.url, "create table recipe (n int)");
    await sql(cluster.url, "insert into recipe values (1)");
    const [{ t }] = (await sql<{ t: string }>(cluster.url, "select now()::text as t")) as [{ t: string }];
    await new Promise((r) => setTimeout(r, 50));
    await sql(cluster.url, "insert into recipe values (2)");
    await switchAndArchive(cluster.url);
    const dir = path.join(work, "pitr-time");
    recovered.push(dir);
    const r = await runCli([...pitrArgs(dir), "--to-time", t, "--start", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as { started: { port: number; timeline: number; stoppedAt: string } };
    expect(result.started).toMatchObject({
      timeline: 2,
      stoppedAt: expect.stringMatching(/^recovery stopping before commit of transaction \d+, time /),
    });
    const url = `postgres://postgres:${encodeURIComponent(password())}@127.0.0.1:${result.started.port}/postgres`;
    await waitFor("the recovered server to take connections", async () => {
      try {
        return await sql<{ n: number }>(url, "select n from recipe order by n");
      } catch {
        return undefined;
      }
    }).then((rows) => expect(rows).toEqual([{ n: 1 }]));
    // No secret in the configuration it wrote: paths and public signers only.
    const auto = await readFile(path.join(dir, "postgresql.auto.conf"), "utf8");
    expect(auto).toContain("wal-fetch");
    expect(auto).not.toMatch(/AGE-SECRET-KEY|SRSIGN-SECRET/);
    expect(auto).toContain("archive_mode = 'off'");
    // With --start, a read-ahead filled a spool beside the directory, taken by a shell client; gone once recovered.
    expect(auto).toContain("strongroom-wal-restore");
    expect(auto).toContain(`${dir}.strongroom-wal`);
    await expect(readdir(`${dir}.strongroom-wal`)).rejects.toMatchObject({ code: "ENOENT" });
  }, 180_000);

  it("recovers to an LSN, and to the end of the archive: each stops where it was asked, on a new timeline", async () => {
    await sql(cluster.url, "create table marks (n int)");
    await sql(cluster.url, "insert into marks values (1)");
    // The insert position: the write position lags it (the rig's server commits asynchronously).
    const [{ lsn }] = (await sql<{ lsn: string }>(cluster.url, "select pg_current_wal_insert_lsn()::text as lsn")) as [
      { lsn: string },
    ];
    await sql(cluster.url, "insert into marks values (2)");
    await switchAndArchive(cluster.url);
    let lastError = "";
    const query = async (port: number) => {
      const url = `postgres://postgres:${encodeURIComponent(password())}@127.0.0.1:${port}/postgres`;
      return waitFor("the recovered server", async () => {
        try {
          return (await sql<{ n: number }>(url, "select n from marks order by n")).map((r) => r.n);
        } catch (err) {
          lastError = (err as Error).message;
          return undefined;
        }
      });
    };
    const atLsn = path.join(work, "pitr-lsn");
    recovered.push(atLsn);
    const r1 = await runCli([...pitrArgs(atLsn), "--to-lsn", lsn, "--start", "--json"]);
    expect(r1.code, r1.stderr).toBe(0);
    const s1 = JSON.parse(r1.stdout) as { started: { port: number; timeline: number; stoppedAt: string } };
    expect(s1.started.stoppedAt).toMatch(/^recovery stopping after WAL location \(LSN\)/);
    expect(await query(s1.started.port).catch((e: Error) => `${e.message}: ${lastError}`)).toEqual([1]);
    const latest = path.join(work, "pitr-latest");
    recovered.push(latest);
    const r2 = await runCli([...pitrArgs(latest), "--to-latest", "--start", "--json"]);
    expect(r2.code, r2.stderr).toBe(0);
    const s2 = JSON.parse(r2.stdout) as {
      started: { port: number; timeline: number };
      wal: { lastContiguous: string };
    };
    expect(s2.started.timeline).toBe(2);
    expect(await query(s2.started.port).catch((e: Error) => `${e.message}: ${lastError}`)).toEqual([1, 2]);
    // An LSN past the archive's end is refused before anything is written.
    const far = path.join(work, "pitr-far");
    const r3 = await runCli([...pitrArgs(far), "--to-lsn", "FF/0"]);
    expect(r3.code).toBe(1);
    expect(r3.stderr).toContain("the archive cannot reach FF/0");
    await expect(readdir(far)).rejects.toMatchObject({ code: "ENOENT" });
  }, 240_000);

  it("fails with PostgreSQL's own FATAL, never a success, when the target lies past the archived WAL", async () => {
    const dir = path.join(work, "pitr-future");
    recovered.push(dir);
    // In ISO 8601 with T and Z, which PostgreSQL's recovery_target_time refuses and the CLI rewrites.
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const r = await runCli([...pitrArgs(dir), "--to-time", future, "--start"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("recovery ended before configured recovery target was reached");
    expect(r.stderr).toContain("[RestoreFailedError]");
  }, 180_000);

  it("refuses before writing anything: no target or two, a directory that is not empty, no signer, an xid without --base", async () => {
    const dir = path.join(work, "pitr-refused");
    const none = await runCli(pitrArgs(dir));
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("exactly one of --to-time");
    const two = await runCli([...pitrArgs(dir), "--to-latest", "--to-lsn", "0/3000000"]);
    expect(two.code).toBe(2);
    const xid = await runCli([...pitrArgs(dir), "--to-xid", "1234"]);
    expect(xid.code).toBe(2);
    expect(xid.stderr).toContain("needs --base");
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, "PG_VERSION"), "15\n");
    const busy = await runCli([...pitrArgs(dir), "--to-latest"]);
    expect(busy.code).toBe(2);
    expect(busy.stderr).toContain("is not empty");
    const unsigned = await runCli([...pitrArgs(dir).filter((a) => a !== "--signer" && a !== signer), "--to-latest"]);
    expect(unsigned.code).toBe(2);
    expect(await readdir(dir)).toEqual(["PG_VERSION"]);
  }, 60_000);
});

describe("strongroom wal verify", () => {
  const verifyArgs = () => ["wal", "verify", "--store", storeUrl, "--database-id", DB, "--signer", signer, "--json"];

  it("reports each signed base backup's recoverable window, the archive's age, and every gap by name (last: it deletes a segment)", async () => {
    await switchAndArchive(cluster.url);
    const ok = await runCli(verifyArgs());
    expect(ok.code, ok.stderr).toBe(0);
    const report = JSON.parse(ok.stdout) as WalVerifyReport;
    expect(report.ok).toBe(true);
    expect(report.bases.length).toBeGreaterThanOrEqual(1);
    expect(report.bases.every((b) => b.recoverable && b.gap === undefined)).toBe(true);
    expect(report.newest?.ageSeconds).toBeLessThan(120);
    // The objects the writer planted above are named, and counted for nothing.
    expect(report.untrusted).toEqual(expect.arrayContaining(["0000000100000000000000F0", "0000000100000000000000F1"]));
    // Older than allowed: the RPO gate.
    await new Promise((r) => setTimeout(r, 2100));
    const stale = await runCli([...verifyArgs(), "--max-wal-age", "1s"]);
    expect(stale.code, `${stale.stdout} ${stale.stderr}`).toBe(1);
    expect(stale.stderr).toContain("older than 1s");
    // A segment gone from the middle: named, and recovery past it impossible.
    // (pg_switch_wal() switches only from a segment that holds something.)
    await sql(cluster.url, "create table filler (n int); insert into filler values (1)");
    const victim = await switchAndArchive(cluster.url);
    await sql(cluster.url, "insert into filler values (2)");
    await switchAndArchive(cluster.url);
    const store = await openStore(storeUrl);
    await store.delete(`${DB}/wal/${victim}`);
    const gapped = await runCli(verifyArgs());
    expect(gapped.code).toBe(1);
    const after = JSON.parse(gapped.stdout) as WalVerifyReport;
    expect(after.ok).toBe(false);
    expect(JSON.stringify(after.bases)).toContain(victim as string);
  }, 120_000);
});
