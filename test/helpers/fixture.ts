import { randomUUID } from "node:crypto";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { CreateBucketCommand, ListMultipartUploadsCommand, S3Client } from "@aws-sdk/client-s3";
import { listBackupRefs } from "#core/backup-index.ts";
import { listAll, type ObjectStore } from "#core/store/object-store.ts";
import { openStore } from "#core/store/open-store.ts";
import { s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import { keyPair } from "./age.ts";
import { runCli } from "./cli.ts";
import { createDatabase, sql } from "./pg.ts";
import { tempDir } from "./temp.ts";

export interface StoreUnderTest {
  kind: "file" | "s3";
  url: string;
  store: ObjectStore;
  /** Open multipart uploads (0 for the file store). */
  openUploads: () => Promise<number>;
}

export async function newStore(kind: "file" | "s3"): Promise<StoreUnderTest> {
  if (kind === "file") {
    // A store exists before it is used, as a bucket does: reading a missing one is an error.
    const dir = path.join(await tempDir(), "store");
    await mkdir(dir);
    const url = pathToFileURL(dir).href;
    return { kind, url, store: await openStore(url), openUploads: async () => 0 };
  }
  const client = new S3Client(s3ClientConfigFromEnv());
  const bucket = `it-${randomUUID()}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  const url = `s3://${bucket}/team/pg`;
  return {
    kind,
    url,
    store: await openStore(url),
    openUploads: async () =>
      (await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads?.length ?? 0,
  };
}

export async function allKeys(store: ObjectStore, prefix = ""): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of listAll(store, prefix)) keys.push(o.key);
  return keys;
}

export async function committedBackups(store: ObjectStore): Promise<number> {
  return (await listBackupRefs(store)).length;
}

/** A key pair with the identity written to a 0600 file. */
export async function identityFile(): Promise<{ recipient: string; identity: string; file: string }> {
  const pair = await keyPair();
  const file = path.join(await tempDir(), "identity.txt");
  await writeFile(file, `${pair.identity}\n`, { mode: 0o600 });
  return { ...pair, file };
}

/**
 * A database made from `setup` on the rig's server, backed up once by the CLI into a
 * new file store under a new key pair: what a restore test starts from.
 */
export async function backedUpByCli(
  serverUrl: string,
  name: string,
  setup: string,
): Promise<{
  db: { url: string; name: string };
  store: StoreUnderTest;
  key: Awaited<ReturnType<typeof identityFile>>;
}> {
  const db = await createDatabase(serverUrl, name);
  await sql(db.url, setup);
  const store = await newStore("file");
  const key = await identityFile();
  const r = await runCli(["backup", "--recipient", key.recipient], {
    DATABASE_URL: db.url,
    STRONGROOM_STORE: store.url,
  });
  if (r.code !== 0) throw new Error(`the setup backup failed: ${r.stderr}`);
  return { db, store, key };
}

/**
 * A PG_BIN_DIRS directory whose pg_dump / pg_dumpall / pg_restore record their argv
 * to `log` and then run the real tool. `pgDumpBody` / `pgRestoreBody` replace those tools' bodies.
 */
export async function wrappedBinDir(
  realBinDir: string,
  options: { pgDumpBody?: string; pgRestoreBody?: string } = {},
): Promise<{ dir: string; log: string }> {
  const dir = path.join(await tempDir(), "bin");
  await mkdir(dir);
  const log = path.join(dir, "argv.log");
  for (const tool of ["pg_dump", "pg_dumpall", "pg_restore"]) {
    const real = path.join(realBinDir, tool);
    const custom = tool === "pg_dump" ? options.pgDumpBody : tool === "pg_restore" ? options.pgRestoreBody : undefined;
    const body = custom
      ? `if [ "$1" = "--version" ]; then exec "${real}" "$@"; fi\n${custom.replaceAll("$REAL", real)}`
      : `exec "${real}" "$@"`;
    const file = path.join(dir, tool);
    await writeFile(file, `#!/bin/sh\nprintf '%s\\n' "${tool} $*" >> "${log}"\n${body}\n`);
    await chmod(file, 0o755);
  }
  await writeFile(log, "");
  return { dir, log };
}
