import { totalmem } from "node:os";
import { Readable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import { credentialsFromEnv } from "../aws-env.ts";
import {
  AbortedError,
  AccessDeniedError,
  AlreadyExistsError,
  BucketNotFoundError,
  InsufficientMemoryError,
  NotFoundError,
  StoreUnavailableError,
  StrongroomError,
  UsageError,
  WrongRegionError,
} from "../errors.ts";
import {
  assertValidKey,
  assertValidPrefix,
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
import { MAX_PARTS, putMultipart } from "./s3-multipart.ts";

const MiB = 1024 * 1024;
/**
 * Parts of 8 MiB (78 GiB at 10,000 parts, for an upload of unknown length). 16 MiB
 * part buffers set off a storm of V8 mark-compacts (about 50 per 827 MB backup, where
 * 8 MiB ones caused 1): 1 core-s and 0.5–0.7 s more per backup, measured side by side.
 */
export const MIN_PART_SIZE_BYTES = 8 * MiB;
const MAX_PART_SIZE_BYTES = 5 * 1024 * MiB;
/** What an upload's part buffers may hold: 4 parts of 8 MiB, fewer of larger ones. */
export const UPLOAD_BUFFER_BUDGET_BYTES = 32 * MiB;

/**
 * The multipart part size for an object of about `expectedBytes`: the minimum, or
 * larger where 10,000 parts would not cover it, with 50% headroom because the hint
 * (pg_database_size) is not the size of the stored (compressed) dump.
 */
export function partSizeFor(expectedBytes: number | undefined): number {
  if (expectedBytes === undefined || expectedBytes <= 0) return MIN_PART_SIZE_BYTES;
  const needed = Math.ceil((expectedBytes * 1.5) / MAX_PARTS / MiB) * MiB;
  return Math.min(MAX_PART_SIZE_BYTES, Math.max(MIN_PART_SIZE_BYTES, needed));
}

/**
 * Parts uploading at once for parts of `partSizeBytes`: what the buffer budget holds
 * besides the part being filled, at least one.
 */
export function queueSizeFor(partSizeBytes: number): number {
  return Math.max(1, Math.floor(UPLOAD_BUFFER_BUDGET_BYTES / partSizeBytes) - 1);
}

/** The memory this process may use: its cgroup limit where there is one, else the machine's. */
export function memoryLimitBytes(): number {
  const constrained = process.constrainedMemory?.() ?? 0;
  return constrained > 0 && constrained < totalmem() ? constrained : totalmem();
}

/**
 * An upload holds about partSize × (queueSize + 1) bytes. Refuse at the start, rather
 * than be OOM-killed hours in, when that exceeds half of what the process may use.
 */
export function assertUploadFits(partSizeBytes: number, queueSize: number, limitBytes: number): void {
  const needBytes = partSizeBytes * (queueSize + 1);
  if (needBytes > limitBytes / 2) {
    const mib = (n: number) => `${Math.round(n / MiB)} MiB`;
    throw new InsufficientMemoryError(
      `an upload of this size needs ${mib(needBytes)} of buffers (${queueSize + 1} parts of ${mib(partSizeBytes)}), more than half of the ${mib(limitBytes)} available`,
      { hint: "give the task more memory; parts grow with the database size so that 10,000 parts cover the dump" },
    );
  }
}

export interface S3StoreOptions {
  client?: S3Client;
  /** Parts uploaded at once; memory is partSize × (queueSize + 1). @default from the buffer budget */
  queueSize?: number;
}

/**
 * Client config from the standard environment. AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL
 * are read by the SDK itself; when either is set we also force path-style
 * addressing, which moto and LocalStack on 127.0.0.1 need.
 */
export function regionFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  return env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? "us-east-1";
}

export function s3ClientConfigFromEnv(env: NodeJS.ProcessEnv = process.env): S3ClientConfig {
  const endpoint = env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  return {
    region: regionFromEnv(env),
    // Adaptive retry backs off on 503 SlowDown bursts.
    retryMode: "adaptive",
    maxAttempts: 6,
    ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
    ...credentialsFromEnv(env),
  };
}

/** An ObjectStore on S3 (or any S3 protocol server): `s3://bucket/prefix`. */
export class S3Store implements ObjectStore, PartialUploads {
  readonly url: string;
  readonly bucket: string;
  /** Empty, or ends with `/`. */
  readonly prefix: string;
  readonly client: S3Client;
  private readonly queueSize: number | undefined;

  constructor(url: string, options: S3StoreOptions = {}) {
    const match = /^s3:\/\/([^/]+)\/?(.*)$/.exec(url);
    if (!match?.[1]) throw new UsageError(`not an s3 store url: ${url}`, { hint: "use s3://bucket/optional/prefix" });
    this.bucket = match[1];
    const prefix = (match[2] ?? "").replace(/\/+$/, "");
    if (prefix !== "") assertValidKey(prefix);
    this.prefix = prefix === "" ? "" : `${prefix}/`;
    this.url = `s3://${this.bucket}/${prefix}`;
    this.client = options.client ?? new S3Client(s3ClientConfigFromEnv());
    this.queueSize = options.queueSize;
  }

  async put(key: string, body: Readable, options: PutOptions = {}): Promise<PutResult> {
    const Key = this.keyOf(key);
    const partSize = partSizeFor(options.expectedBytes);
    const queueSize = this.queueSize ?? queueSizeFor(partSize);
    assertUploadFits(partSize, queueSize, memoryLimitBytes());
    try {
      const bytes = await putMultipart(
        this.client,
        { Bucket: this.bucket, Key, ContentType: options.contentType ?? "application/octet-stream" },
        body,
        { partSize, queueSize, signal: options.signal, ifAbsent: options.ifAbsent },
      );
      return { key, bytes };
    } catch (err) {
      if (options.signal?.aborted) throw new AbortedError(`upload of ${key} aborted`, { cause: err });
      if (options.ifAbsent && (errorName(err) === "PreconditionFailed" || httpStatus(err) === 412)) {
        // Unlike putIfAbsent's, a stream cannot be compared: a completion retried after its
        // answer was lost also lands here, and the caller writes under a new key instead.
        throw new AlreadyExistsError(`object already exists: ${key}`, { cause: err });
      }
      throw this.mapError(err, key);
    }
  }

  async putIfAbsent(key: string, body: Uint8Array | string): Promise<PutResult> {
    const data = typeof body === "string" ? Buffer.from(body) : body;
    try {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: this.keyOf(key), Body: data, IfNoneMatch: "*" }),
      );
      return { key, bytes: data.length };
    } catch (err) {
      const name = errorName(err);
      const status = httpStatus(err);
      if (name === "PreconditionFailed" || status === 412 || name === "ConditionalRequestConflict" || status === 409) {
        // Our own first attempt may have landed and only its answer been lost: the SDK's
        // retry then meets our object. Identical bytes mean the put succeeded.
        if (await sameBytes(this, key, data)) return { key, bytes: data.length };
        throw new AlreadyExistsError(`object already exists: ${key}`, { cause: err });
      }
      throw this.mapError(err, key);
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    const range = options.range;
    try {
      const out = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.keyOf(key),
          ...(range ? { Range: `bytes=${range.start}-${range.end ?? ""}` } : {}),
        }),
        options.signal ? { abortSignal: options.signal } : {},
      );
      if (!(out.Body instanceof Readable)) throw new StrongroomError(`s3 returned no body for ${key}`);
      return out.Body;
    } catch (err) {
      throw this.mapError(err, key);
    }
  }

  async stat(key: string): Promise<ObjectInfo> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.keyOf(key) }));
      return { key, bytes: out.ContentLength ?? 0, lastModified: out.LastModified ?? new Date(0) };
    } catch (err) {
      throw this.mapError(err, key);
    }
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    assertValidPrefix(prefix);
    try {
      const out = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: this.prefix + prefix,
          MaxKeys: options.pageSize ?? 1000,
          ...(options.pageToken ? { ContinuationToken: options.pageToken } : {}),
        }),
      );
      const page: ListPage = {
        objects: (out.Contents ?? []).map((o) => ({
          key: (o.Key ?? "").slice(this.prefix.length),
          bytes: o.Size ?? 0,
          lastModified: o.LastModified ?? new Date(0),
        })),
      };
      if (out.IsTruncated && out.NextContinuationToken) page.nextToken = out.NextContinuationToken;
      return page;
    } catch (err) {
      throw this.mapError(err, prefix);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.keyOf(key) }));
    } catch (err) {
      throw this.mapError(err, key);
    }
  }

  async listPartials(): Promise<PartialUpload[]> {
    const out: PartialUpload[] = [];
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    try {
      do {
        const page = await this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.bucket,
            Prefix: this.prefix,
            ...(keyMarker ? { KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker } : {}),
          }),
        );
        for (const u of page.Uploads ?? []) {
          if (u.Key && u.UploadId)
            out.push({ id: `${u.Key} ${u.UploadId}`, startedAt: u.Initiated ?? new Date(0), bytes: 0 });
        }
        keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
        uploadIdMarker = page.NextUploadIdMarker;
      } while (keyMarker);
    } catch (err) {
      throw this.mapError(err, "");
    }
    return out;
  }

  async deletePartial(partial: PartialUpload): Promise<void> {
    const space = partial.id.lastIndexOf(" ");
    const Key = partial.id.slice(0, space);
    if (space < 0 || !Key.startsWith(this.prefix))
      throw new UsageError(`not an upload under this store: ${partial.id}`);
    try {
      await this.client.send(
        new AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId: partial.id.slice(space + 1) }),
      );
    } catch (err) {
      throw this.mapError(err, Key);
    }
  }

  /** Bucket versioning and Object Lock status (for the destination probe). */
  async protection(): Promise<{ versioning: string; objectLock: string }> {
    try {
      const v = await this.client.send(new GetBucketVersioningCommand({ Bucket: this.bucket }));
      let objectLock = "Disabled";
      try {
        const lock = await this.client.send(new GetObjectLockConfigurationCommand({ Bucket: this.bucket }));
        const rule = lock.ObjectLockConfiguration?.Rule?.DefaultRetention;
        objectLock =
          lock.ObjectLockConfiguration?.ObjectLockEnabled === "Enabled"
            ? `Enabled${rule ? ` (${rule.Mode} ${rule.Days ?? rule.Years} ${rule.Days ? "days" : "years"})` : ""}`
            : "Disabled";
      } catch (err) {
        if (errorName(err) !== "ObjectLockConfigurationNotFoundError") throw err;
      }
      return { versioning: v.Status ?? "Unversioned", objectLock };
    } catch (err) {
      throw this.mapError(err, "");
    }
  }

  private keyOf(key: string): string {
    assertValidKey(key);
    return this.prefix + key;
  }

  /** SDK errors to typed ones; the original stays as `cause`. */
  private mapError(err: unknown, key: string): unknown {
    if (err instanceof StrongroomError) return err;
    const name = errorName(err);
    const status = httpStatus(err);
    const code = (err as { code?: string } | undefined)?.code;
    if (name === "NoSuchBucket") {
      return new BucketNotFoundError(`bucket ${this.bucket} does not exist`, {
        cause: err,
        hint: "check the bucket name in --store, and the region (AWS_REGION)",
      });
    }
    if (
      name === "PermanentRedirect" ||
      name === "AuthorizationHeaderMalformed" ||
      name === "IllegalLocationConstraintException" ||
      status === 301
    ) {
      const region =
        (err as { Region?: string }).Region ??
        (err as { $response?: { headers?: Record<string, string> } }).$response?.headers?.["x-amz-bucket-region"];
      return new WrongRegionError(
        `bucket ${this.bucket} is not in region ${regionFromEnv()}${region ? ` but in ${region}` : ""}`,
        {
          cause: err,
          hint: `set AWS_REGION${region ? `=${region}` : " to the bucket's region"}`,
        },
      );
    }
    if (name === "NoSuchKey" || name === "NotFound" || status === 404) {
      return new NotFoundError(`no such object: ${key}`, { cause: err });
    }
    // The SDK found no credentials at all (no env keys, profile, task or instance role).
    if (name === "CredentialsProviderError" || /Could not load credentials/i.test((err as Error).message ?? "")) {
      return new AccessDeniedError(`no AWS credentials to reach bucket ${this.bucket}`, {
        cause: err,
        hint: "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run where a task or instance role applies",
      });
    }
    if (name === "SignatureDoesNotMatch" || name === "InvalidAccessKeyId") {
      return new AccessDeniedError(`s3 rejected the credentials for bucket ${this.bucket} (${name})`, {
        cause: err,
        hint: "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the task role) and the clock",
      });
    }
    if (name === "AccessDenied" || name === "Forbidden" || status === 403) {
      return new AccessDeniedError(`access denied to s3://${this.bucket}/${this.prefix}${key}`, {
        cause: err,
        hint: "check the credentials and the bucket policy",
      });
    }
    if (
      code === "ECONNREFUSED" ||
      code === "ENOTFOUND" ||
      code === "ETIMEDOUT" ||
      code === "ECONNRESET" ||
      name === "TimeoutError"
    ) {
      return new StoreUnavailableError(`cannot reach s3 endpoint for bucket ${this.bucket} (${code ?? name})`, {
        cause: err,
        hint: "check AWS_ENDPOINT_URL_S3 / network access to the endpoint",
      });
    }
    return err;
  }
}

function errorName(err: unknown): string | undefined {
  return typeof err === "object" && err !== null ? (err as { name?: string }).name : undefined;
}

function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}
