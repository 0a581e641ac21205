/**
 * npm run bench:archive-index — how long reading a WAL archive's signed headers takes
 * (what `wal verify`, `status --signer`, `verify --pitr` and the deployed readiness do
 * first): BENCH_WAL_FILES (default 3000, two days of a segment a minute) objects in moto,
 * read one GET at a time (the baseline) and 16 at a time, in the same run. Medians of
 * BENCH_RUNS (default 3).
 */
import { Readable } from "node:stream";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { generateSigningKey, parseSigningKey } from "#core/audit/row-signature.ts";
import { walPrefix } from "#core/keys.ts";
import { readArchive } from "#core/pitr/archive-index.ts";
import { encodeWalHeader, signWalRecord, WAL_FORMAT } from "#core/pitr/wal-record.ts";
import { S3Store, s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import { startMoto } from "../infra/sim/stand-ins.ts";
import { medianSeconds, printOneVersusSixteen } from "./measure.ts";

const FILES = Number(process.env.BENCH_WAL_FILES ?? 3000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
process.env.AWS_ACCESS_KEY_ID ??= "test";
process.env.AWS_SECRET_ACCESS_KEY ??= "test";
process.env.AWS_REGION ??= "us-east-1";
const moto = await startMoto();
process.env.AWS_ENDPOINT_URL_S3 = moto.url;
try {
  const client = new S3Client(s3ClientConfigFromEnv());
  await client.send(new CreateBucketCommand({ Bucket: "bench-archive" }));
  const store = new S3Store("s3://bench-archive/pg", { client });
  const key = generateSigningKey();
  const signer = parseSigningKey(key.secret);
  const names = Array.from(
    { length: FILES },
    (_, i) =>
      `00000001${Math.floor(i / 256)
        .toString(16)
        .toUpperCase()
        .padStart(8, "0")}${(i % 256).toString(16).toUpperCase().padStart(8, "0")}`,
  );
  const t0 = performance.now();
  for (let i = 0; i < names.length; i += 32) {
    await Promise.all(
      names.slice(i, i + 32).map((name) => {
        const record = signWalRecord(
          {
            format: WAL_FORMAT,
            databaseId: "shop",
            name,
            kind: "segment",
            timeline: 1,
            systemIdentifier: "7000000000000000001",
            plainBytes: 16 * 1024 * 1024,
            plainSha256: "0".repeat(64),
            pushedAt: new Date().toISOString(),
          },
          signer,
        );
        // The header and a small body: the reads take the header only.
        const body = Buffer.concat([encodeWalHeader(record), Buffer.alloc(4096)]);
        return store.put(`${walPrefix("shop")}${name}`, Readable.from([body]));
      }),
    );
  }
  console.log(`stored ${FILES} WAL objects in moto in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const quiet = { debug() {}, info() {}, warn() {}, error() {} };
  const time = async (atOnce: number) => {
    const t = performance.now();
    const index = await readArchive({
      store,
      databaseId: "shop",
      signers: new Set([key.signer]),
      headers: "all",
      log: quiet,
      headerReadsAtOnce: atOnce,
    });
    if (index.trusted.size !== FILES) throw new Error(`read ${index.trusted.size} of ${FILES} headers`);
    return (performance.now() - t) / 1000;
  };
  const one = await medianSeconds(RUNS, () => time(1));
  const sixteen = await medianSeconds(RUNS, () => time(16));
  printOneVersusSixteen(FILES, RUNS, one, sixteen);
} finally {
  await moto.stop();
}
