import { UsageError } from "../errors.ts";
import { FileStore } from "./file-store.ts";
import type { ObjectStore } from "./object-store.ts";
import { S3Store, type S3StoreOptions } from "./s3-store.ts";

/** The store named by a `--store` URL: `file:///abs/dir` or `s3://bucket/prefix`. */
export function openStore(url: string, s3Options: S3StoreOptions = {}): ObjectStore {
  if (url.startsWith("file://")) return new FileStore(url);
  if (url.startsWith("s3://")) return new S3Store(url, s3Options);
  throw new UsageError(`unsupported store url: ${url}`, {
    hint: "use file:///abs/path or s3://bucket/prefix",
  });
}
