import type { Readable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  ChecksumAlgorithm,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { AbortedError, InsufficientMemoryError, StrongroomError } from "../errors.ts";

export const MAX_PARTS = 10_000;

export interface MultipartTarget {
  Bucket: string;
  Key: string;
  ContentType: string;
}

/**
 * Streams `body` into one S3 object through a fixed set of part buffers: one being
 * filled and `queueSize` uploading, each reused once its part is stored. Memory is
 * exactly partSize × (queueSize + 1), allocated as the upload needs it, and nothing is
 * left for the GC. lib-storage, which this replaces, concatenated every part from its
 * pieces (a second copy) and held the previous part through the remainder's view:
 * measured 30 MiB more peak RSS for a backup to S3 (242–245 vs 210–216 MiB), at the
 * same speed.
 *
 * An object smaller than one part is a single PutObject. The first failed request stops
 * the upload (`body` is destroyed, so the writer upstream stops too), the multipart
 * upload is aborted once the parts in flight have settled, and the error is rethrown.
 * Until CompleteMultipartUpload succeeds no reader can see the object.
 */
export async function putMultipart(
  client: S3Client,
  target: MultipartTarget,
  body: Readable,
  options: { partSize: number; queueSize: number; signal?: AbortSignal | undefined; ifAbsent?: boolean | undefined },
): Promise<number> {
  const { partSize, queueSize, signal } = options;
  // On the requests that create the object only: CreateMultipartUpload and UploadPart take no condition.
  const condition = options.ifAbsent ? { IfNoneMatch: "*" } : {};
  const free: Buffer[] = [];
  let allocated = 0;
  const waiting: (() => void)[] = [];
  const inFlight = new Set<Promise<void>>();
  const parts: CompletedPart[] = [];
  let uploadId: string | undefined;
  let creating: Promise<string> | undefined;
  let failure: unknown;
  let bytes = 0;
  let partNumber = 0;
  const sendOptions = signal ? { abortSignal: signal } : {};

  const fail = (err: unknown) => {
    failure ??= err;
    if (!body.destroyed) body.destroy(err as Error);
    for (const wake of waiting.splice(0)) wake();
  };
  const onAbort = () => fail(new AbortedError(`upload of ${target.Key} aborted`));
  signal?.addEventListener("abort", onAbort, { once: true });

  /** A part buffer: a free one, a new one while under the limit, else the next one returned. */
  const acquire = async (): Promise<Buffer> => {
    for (;;) {
      if (failure !== undefined) throw failure;
      const buffer = free.pop();
      if (buffer) return buffer;
      if (allocated < queueSize + 1) {
        allocated++;
        return Buffer.allocUnsafe(partSize);
      }
      await new Promise<void>((resolve) => waiting.push(resolve));
    }
  };
  const release = (buffer: Buffer) => {
    free.push(buffer);
    waiting.shift()?.();
  };

  const startUpload = async (): Promise<string> => {
    // As lib-storage does: where the client sends checksums, each part's CRC32 (computed
    // by the SDK over the part buffer, natively) is checked by S3 and listed at completion.
    const checksums = (await client.config.requestChecksumCalculation()) === "WHEN_SUPPORTED";
    const created = await client.send(
      new CreateMultipartUploadCommand({
        ...target,
        ...(checksums ? { ChecksumAlgorithm: ChecksumAlgorithm.CRC32 } : {}),
      }),
      sendOptions,
    );
    if (!created.UploadId) throw new StrongroomError(`s3 gave no upload id for ${target.Key}`);
    uploadId = created.UploadId;
    return uploadId;
  };

  const uploadPart = (buffer: Buffer, length: number) => {
    const number = ++partNumber;
    if (number > MAX_PARTS) {
      throw new InsufficientMemoryError(
        `${target.Key} needs more than ${MAX_PARTS} parts of ${partSize} bytes, the most S3 takes`,
        { hint: "the database grew past what its size estimate planned parts for; run the backup again" },
      );
    }
    creating ??= startUpload();
    const data = buffer.subarray(0, length);
    const job = creating
      .then((id) =>
        client.send(
          new UploadPartCommand({
            Bucket: target.Bucket,
            Key: target.Key,
            UploadId: id,
            PartNumber: number,
            Body: data,
            ContentLength: length,
          }),
          sendOptions,
        ),
      )
      .then((out) => {
        if (!out.ETag) throw new StrongroomError(`s3 returned no ETag for part ${number} of ${target.Key}`);
        parts.push({
          PartNumber: number,
          ETag: out.ETag,
          ...(out.ChecksumCRC32 ? { ChecksumCRC32: out.ChecksumCRC32 } : {}),
        });
        release(buffer);
      })
      .catch(fail)
      .finally(() => inFlight.delete(job));
    inFlight.add(job);
  };

  try {
    if (signal?.aborted) onAbort();
    let current = await acquire();
    let filled = 0;
    for await (const chunk of body) {
      let offset = 0;
      const data = chunk as Buffer;
      while (offset < data.length) {
        const n = Math.min(partSize - filled, data.length - offset);
        data.copy(current, filled, offset, offset + n);
        filled += n;
        offset += n;
        bytes += n;
        if (filled === partSize) {
          uploadPart(current, filled);
          current = await acquire();
          filled = 0;
        }
      }
      if (failure !== undefined) throw failure;
    }
    if (failure !== undefined) throw failure;
    if (partNumber === 0) {
      // Smaller than one part: a single request, atomic by itself.
      const data = current.subarray(0, filled);
      await client.send(
        new PutObjectCommand({ ...target, ...condition, Body: data, ContentLength: filled }),
        sendOptions,
      );
      return bytes;
    }
    if (filled > 0) uploadPart(current, filled);
    while (inFlight.size > 0) await Promise.all([...inFlight]);
    if (failure !== undefined) throw failure;
    parts.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: target.Bucket,
        Key: target.Key,
        UploadId: uploadId,
        MultipartUpload: { Parts: parts },
        ...condition,
      }),
      sendOptions,
    );
    return bytes;
  } catch (err) {
    fail(err);
    // Parts still uploading would otherwise land after the abort.
    while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
    await creating?.catch(() => undefined);
    if (uploadId) {
      await client
        .send(new AbortMultipartUploadCommand({ Bucket: target.Bucket, Key: target.Key, UploadId: uploadId }))
        .catch(() => undefined);
    }
    throw failure;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}
