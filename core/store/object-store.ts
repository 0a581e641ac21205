import type { Readable } from "node:stream";
import { AccessDeniedError, InvalidKeyError, NotFoundError } from "../errors.ts";

/**
 * Where strongroom keeps backups: a flat key space of immutable objects.
 *
 * Keys are `/`-separated relative paths (no leading `/`, no empty, `.` or `..`
 * segments); each implementation maps them under its own root (bucket prefix or
 * directory). Every implementation must pass test/contract/object-store.contract.ts.
 */
export interface ObjectStore {
  /** `file:///abs/dir` or `s3://bucket/prefix`, without credentials. */
  readonly url: string;

  /**
   * Streams `body` into `key`, replacing any object there (unless `ifAbsent`).
   *
   * Must be atomic: until it resolves, no reader sees a partial object under `key`.
   * On any error, or when `signal` aborts, it must reject (AbortedError for the
   * signal) and leave no object and no unfinished multipart upload behind.
   * `expectedBytes` is a sizing hint (S3 part size), never a limit.
   */
  put(key: string, body: Readable, options?: PutOptions): Promise<PutResult>;

  /**
   * Writes `body` to `key` only if no object exists there. This is the commit
   * primitive (manifests, audit rows). Must reject with AlreadyExistsError when
   * the key holds other bytes, and then must not have changed the existing object.
   * Must succeed when the key already holds exactly these bytes: a retried request
   * whose first attempt landed but whose answer was lost has committed.
   */
  putIfAbsent(key: string, body: Uint8Array | string): Promise<PutResult>;

  /**
   * Opens the object for reading, optionally only bytes [start, end] (inclusive,
   * like HTTP Range). Must reject with NotFoundError when `key` does not exist.
   */
  get(key: string, options?: GetOptions): Promise<Readable>;

  /** Must reject with NotFoundError when `key` does not exist. */
  stat(key: string): Promise<ObjectInfo>;

  /**
   * One page of the objects whose keys start with `prefix`, in ascending key
   * order. Pass the returned `nextToken` back to get the next page; it is absent
   * on the last page. Objects still being written never appear.
   */
  list(prefix: string, options?: ListOptions): Promise<ListPage>;

  /** Deletes `key`. Deleting a key that does not exist succeeds (S3 semantics). */
  delete(key: string): Promise<void>;
}

/**
 * Leftovers of writes that never finished: partial files after a crash (file store),
 * multipart uploads never completed or aborted (S3). `strongroom gc` removes old ones.
 */
export interface PartialUploads {
  listPartials(): Promise<PartialUpload[]>;
  deletePartial(partial: PartialUpload): Promise<void>;
}

export interface PartialUpload {
  /** Opaque to callers: a partial file's name, or `<key> <uploadId>`. */
  id: string;
  startedAt: Date;
  bytes: number;
}

/** Stores that can bring their root into being (a file store's directory); S3 buckets are made by infra. */
export interface Creatable {
  create(): Promise<void>;
}

export function isCreatable(store: ObjectStore): store is ObjectStore & Creatable {
  return typeof (store as Partial<Creatable>).create === "function";
}

export function hasPartials(store: ObjectStore): store is ObjectStore & PartialUploads {
  return typeof (store as Partial<PartialUploads>).listPartials === "function";
}

export interface PutOptions {
  expectedBytes?: number;
  signal?: AbortSignal;
  contentType?: string;
  /**
   * Never replace an object: reject with AlreadyExistsError when `key` exists when the
   * write would land, leaving it unchanged (S3: If-None-Match on the PutObject or the
   * CompleteMultipartUpload). For objects a commit names by digest, so that a second
   * writer with our permissions cannot swap them afterwards (a bucket policy can then
   * require it). @default false
   */
  ifAbsent?: boolean;
}

export interface PutResult {
  key: string;
  bytes: number;
}

export interface GetOptions {
  range?: { start: number; end?: number };
  signal?: AbortSignal;
}

export interface ObjectInfo {
  key: string;
  bytes: number;
  lastModified: Date;
}

export interface ListOptions {
  pageToken?: string;
  /** @default 1000 */
  pageSize?: number;
}

export interface ListPage {
  objects: ObjectInfo[];
  nextToken?: string;
}

/** Every object under `prefix`, following pagination. */
export async function* listAll(store: ObjectStore, prefix: string): AsyncGenerator<ObjectInfo> {
  let pageToken: string | undefined;
  do {
    const page = await store.list(prefix, pageToken === undefined ? {} : { pageToken });
    yield* page.objects;
    pageToken = page.nextToken;
  } while (pageToken !== undefined);
}

/** Reads a whole (small) object into memory: manifests, stats, audit rows. */
export async function getBytes(store: ObjectStore, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await store.get(key)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export function assertValidKey(key: string): void {
  const bad =
    key.length === 0 ||
    key.length > 1024 ||
    key.startsWith("/") ||
    key.includes("\\") ||
    key.includes("\0") ||
    key.split("/").some((seg) => seg === "" || seg === "." || seg === "..");
  if (bad) {
    throw new InvalidKeyError(`invalid object key ${JSON.stringify(key)}`, {
      hint: "keys are relative /-separated paths without empty, '.' or '..' segments",
    });
  }
}

/** Prefixes may be empty or end in `/`; a non-empty prefix must otherwise be a valid key. */
export function assertValidPrefix(prefix: string): void {
  if (prefix === "") return;
  assertValidKey(prefix.endsWith("/") ? prefix.slice(0, -1) : prefix);
}

/**
 * Whether `key` holds exactly `data` (put-if-absent's retry check). A credential that
 * may write but not read cannot tell: the key is then taken, as far as it knows.
 */
export async function sameBytes(store: ObjectStore, key: string, data: Uint8Array): Promise<boolean> {
  try {
    return (await getBytes(store, key)).equals(data);
  } catch (err) {
    if (err instanceof NotFoundError || err instanceof AccessDeniedError) return false;
    throw err;
  }
}
