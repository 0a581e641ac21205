import { randomUUID } from "node:crypto";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { CreateBucketCommand, ListMultipartUploadsCommand, S3Client } from "@aws-sdk/client-s3";
import { FileStore } from "#core/store/file-store.ts";
import { S3Store, s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import { tempDir } from "../helpers/temp.ts";
import { objectStoreContract } from "./object-store.contract.ts";

objectStoreContract("file store (temp dir)", async () => {
  const dir = await tempDir("strongroom-store-");
  return {
    store: new FileStore(pathToFileURL(dir).href),
    openUploads: async () => 0,
    missing: new FileStore(pathToFileURL(path.join(dir, "no-such-dir")).href),
  };
});

objectStoreContract("s3 store (moto)", async () => {
  const client = new S3Client(s3ClientConfigFromEnv());
  const bucket = `contract-${randomUUID()}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return {
    store: new S3Store(`s3://${bucket}/some/prefix`, { client }),
    openUploads: async () =>
      (await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads?.length ?? 0,
    missing: new S3Store(`s3://no-such-${randomUUID()}/some/prefix`, { client }),
  };
});
