import { randomUUID } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import {
  AbortedError,
  AccessDeniedError,
  AlreadyExistsError,
  BucketNotFoundError,
  InvalidKeyError,
  NotFoundError,
  StoreFullError,
  UsageError,
} from "../errors.ts";
import { syncNewPath } from "../fsync-dir.ts";
import { DurableFileWriter } from "./durable-file.ts";
import {
  assertValidKey,
  assertValidPrefix,
  type Creatable,
  type GetOptions,
  type ListOptions,
  type ListPage,
  type ObjectInfo,
  type ObjectStore,
  type PartialUpload,
  type PartialUploads,
  type PutOptions,
  type PutResult,
  sameBytes,
} from "./object-store.ts";

/**
 * Writes land here first and are renamed (or hard-linked) into place, so a crash
 * never leaves a half-written object under its final name. Being inside the root
 * keeps the rename on one filesystem; it is reserved, never a key, never listed.
 */
const PARTIAL_DIR = ".strongroom-partial";

/**
 * Directories the store makes are private, as its files are (0600): the names alone say
 * which databases are backed up and when, and other local users include the scratch
 * server's, which runs code from the backups it restores.
 */
const DIR_MODE = 0o700;

/**
 * An ObjectStore on a local directory: `file:///abs/dir`. Like a bucket, the directory
 * must exist to be read: listing a missing one is BucketNotFoundError, not an empty
 * store, so a mistyped path never reads as "no backups". `create()` makes it (backup).
 */
export class FileStore implements ObjectStore, PartialUploads, Creatable {
  readonly url: string;
  readonly root: string;

  constructor(url: string) {
    if (!url.startsWith("file://")) throw new UsageError(`not a file store url: ${url}`);
    this.root = fileURLToPath(url);
    if (!path.isAbsolute(this.root)) {
      throw new UsageError(`file store path must be absolute: ${url}`, { hint: "use file:///abs/path" });
    }
    this.url = url;
  }

  async put(key: string, body: Readable, options: PutOptions = {}): Promise<PutResult> {
    const final = this.pathOf(key);
    const partial = await this.partialPath().catch((err: unknown) => {
      throw this.mapFsError(err);
    });
    try {
      const signal = options.signal;
      // Synced before the rename, so a rename after a crash never points at lost data.
      const out = new DurableFileWriter(await fs.open(partial, "wx", 0o600));
      await pipeline(body, out, signal ? { signal } : {});
      const created = await fs.mkdir(path.dirname(final), { recursive: true, mode: DIR_MODE });
      if (options.ifAbsent) {
        // link(2) fails with EEXIST atomically, unlike rename, which would replace.
        await fs.link(partial, final);
        await fs.rm(partial, { force: true });
      } else {
        await fs.rename(partial, final);
      }
      await syncNewPath(path.dirname(final), created);
      return { key, bytes: out.bytesWritten };
    } catch (err) {
      await fs.rm(partial, { force: true });
      if (options.signal?.aborted) throw new AbortedError(`upload of ${key} aborted`, { cause: err });
      if (isCode(err, "EEXIST")) throw new AlreadyExistsError(`object already exists: ${key}`, { cause: err });
      throw this.mapFsError(err);
    }
  }

  async putIfAbsent(key: string, body: Uint8Array | string): Promise<PutResult> {
    const final = this.pathOf(key);
    const partial = await this.partialPath().catch((err: unknown) => {
      throw this.mapFsError(err);
    });
    const data = typeof body === "string" ? Buffer.from(body) : body;
    try {
      await fs.writeFile(partial, data, { flush: true, mode: 0o600 });
      const created = await fs.mkdir(path.dirname(final), { recursive: true, mode: DIR_MODE });
      // link(2) fails with EEXIST atomically, unlike rename, which would replace.
      await fs.link(partial, final);
      // The commit point of manifests and audit rows: the new name must survive a power loss.
      await syncNewPath(path.dirname(final), created);
      return { key, bytes: data.length };
    } catch (err) {
      if (isCode(err, "EEXIST")) {
        if (await sameBytes(this, key, data)) return { key, bytes: data.length };
        throw new AlreadyExistsError(`object already exists: ${key}`, { cause: err });
      }
      throw this.mapFsError(err);
    } finally {
      await fs.rm(partial, { force: true });
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    const file = this.pathOf(key);
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(file, "r");
      if (!(await handle.stat()).isFile()) {
        await handle.close();
        throw Object.assign(new Error("not a file"), { code: "ENOENT" });
      }
    } catch (err) {
      throw this.mapNotFound(err, key);
    }
    const range = options.range;
    const stream = handle.createReadStream({
      ...(range ? { start: range.start, ...(range.end === undefined ? {} : { end: range.end }) } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return stream;
  }

  async stat(key: string): Promise<ObjectInfo> {
    try {
      const st = await fs.stat(this.pathOf(key));
      if (!st.isFile()) throw Object.assign(new Error("not a file"), { code: "ENOENT" });
      return { key, bytes: st.size, lastModified: st.mtime };
    } catch (err) {
      throw this.mapNotFound(err, key);
    }
  }

  async create(): Promise<void> {
    await fs.mkdir(this.root, { recursive: true, mode: DIR_MODE }).catch((err: unknown) => {
      throw this.mapFsError(err);
    });
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    assertValidPrefix(prefix);
    await fs.stat(this.root).catch((err: unknown) => {
      if (isCode(err, "ENOENT") || isCode(err, "ENOTDIR")) {
        throw new BucketNotFoundError(`no file store at ${this.root}: the directory does not exist`, {
          cause: err,
          hint: "check the --store path; `strongroom backup` creates the directory on its first backup",
        });
      }
      throw this.mapFsError(err);
    });
    const pageSize = options.pageSize ?? 1000;
    // Walk only the deepest directory that can hold matches.
    const dirKey = prefix.includes("/") ? prefix.slice(0, prefix.lastIndexOf("/") + 1) : "";
    const keys: string[] = [];
    await this.walk(path.join(this.root, dirKey), dirKey, prefix, keys);
    keys.sort();
    const after = options.pageToken;
    const start = after === undefined ? 0 : keys.findIndex((k) => k > after);
    const slice = start < 0 ? [] : keys.slice(start, start + pageSize);
    const objects = await Promise.all(slice.map((k) => this.stat(k).catch(() => undefined)));
    const page: ListPage = { objects: objects.filter((o): o is ObjectInfo => o !== undefined) };
    const last = slice.at(-1);
    if (start >= 0 && start + pageSize < keys.length && last !== undefined) page.nextToken = last;
    return page;
  }

  async delete(key: string): Promise<void> {
    const file = this.pathOf(key);
    await fs.rm(file, { force: true });
    // Remove now-empty parent directories so deleted backups leave no husks.
    let dir = path.dirname(file);
    while (dir.startsWith(this.root) && dir !== this.root) {
      try {
        await fs.rmdir(dir);
      } catch {
        break;
      }
      dir = path.dirname(dir);
    }
  }

  async listPartials(): Promise<PartialUpload[]> {
    const dir = path.join(this.root, PARTIAL_DIR);
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch (err) {
      if (isCode(err, "ENOENT")) return [];
      throw err;
    }
    const out: PartialUpload[] = [];
    for (const name of names) {
      const st = await fs.stat(path.join(dir, name)).catch(() => undefined);
      if (st?.isFile()) out.push({ id: name, startedAt: st.mtime, bytes: st.size });
    }
    return out;
  }

  async deletePartial(partial: PartialUpload): Promise<void> {
    if (partial.id.includes("/") || partial.id.startsWith("."))
      throw new InvalidKeyError(`not a partial file: ${partial.id}`);
    await fs.rm(path.join(this.root, PARTIAL_DIR, partial.id), { force: true });
  }

  private pathOf(key: string): string {
    assertValidKey(key);
    if (key.split("/")[0] === PARTIAL_DIR) {
      throw new InvalidKeyError(`invalid object key ${JSON.stringify(key)}: ${PARTIAL_DIR} is reserved`);
    }
    return path.join(this.root, key);
  }

  private async partialPath(): Promise<string> {
    const dir = path.join(this.root, PARTIAL_DIR);
    await fs.mkdir(dir, { recursive: true, mode: DIR_MODE });
    return path.join(dir, randomUUID());
  }

  private async walk(dir: string, dirKey: string, prefix: string, out: string[]): Promise<void> {
    let entries: import("node:fs").Dirent[];
    try {
      entries = await fs.readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (isCode(err, "ENOENT") || isCode(err, "ENOTDIR")) return;
      throw this.mapFsError(err);
    }
    for (const entry of entries) {
      const key = dirKey + entry.name;
      if (dirKey === "" && entry.name === PARTIAL_DIR) continue;
      if (entry.isDirectory()) {
        const sub = `${key}/`;
        // Descend only where the prefix can still match.
        if (sub.startsWith(prefix) || prefix.startsWith(sub))
          await this.walk(path.join(dir, entry.name), sub, prefix, out);
      } else if (entry.isFile() && key.startsWith(prefix)) {
        out.push(key);
      }
    }
  }

  private mapNotFound(err: unknown, key: string): unknown {
    if (isCode(err, "ENOENT") || isCode(err, "ENOTDIR") || isCode(err, "EISDIR")) {
      return new NotFoundError(`no such object: ${key}`, { cause: err });
    }
    return this.mapFsError(err);
  }

  /** Filesystem failures as the typed errors every store raises (their names are API). */
  private mapFsError(err: unknown): unknown {
    const code = (err as { code?: string } | undefined)?.code;
    if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
      return new AccessDeniedError(`permission denied in the file store at ${this.root} (${code})`, {
        cause: err,
        hint: "check that the directory is on a writable filesystem and that this user may write to it",
      });
    }
    if (code === "ENOSPC" || code === "EDQUOT") {
      return new StoreFullError(`the file store at ${this.root} is full (${code}); nothing was committed`, {
        cause: err,
        hint: "free space there or use another store",
      });
    }
    return err;
  }
}

function isCode(err: unknown, code: string): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === code;
}
