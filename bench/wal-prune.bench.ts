/**
 * npm run bench:wal-prune — how long the deployed retention's delete step takes to delete
 * the WAL below the oldest kept base (core/pitr/base-prune.ts `removeRetiredBases`, what
 * the retention-prune Lambda runs within its 10 minutes): BENCH_WAL_FILES (default 2000)
 * segments in moto below one signed base, deleted one DeleteObject at a time (the
 * baseline) and 16 at a time, in the same run. Medians of BENCH_RUNS (default 3); the
 * archive is put back before each run.
 */
import { Readable } from "node:stream";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { appendAudit } from "#core/audit/audit-log.ts";
import { generateSigningKey } from "#core/audit/row-signature.ts";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { walPrefix } from "#core/keys.ts";
import { baseKeys, serializeBaseManifest } from "#core/pitr/base-manifest.ts";
import { auditedWal, baseRetirementRows, planBasePrune, removeRetiredBases } from "#core/pitr/base-prune.ts";
import { S3Store, s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import { startMoto } from "../infra/sim/stand-ins.ts";
import { segmentName, signedBaseManifest } from "../test/helpers/base-manifests.ts";
import { medianSeconds, printOneVersusSixteen } from "./measure.ts";

const FILES = Number(process.env.BENCH_WAL_FILES ?? 2000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
process.env.AWS_ACCESS_KEY_ID ??= "test";
process.env.AWS_SECRET_ACCESS_KEY ??= "test";
process.env.AWS_REGION ??= "us-east-1";
const segment = (n: number) => segmentName(1, n);

const moto = await startMoto();
process.env.AWS_ENDPOINT_URL_S3 = moto.url;
try {
  const client = new S3Client(s3ClientConfigFromEnv());
  await client.send(new CreateBucketCommand({ Bucket: "bench-wal-prune" }));
  const store = new S3Store("s3://bench-wal-prune/pg", { client });
  const key = generateSigningKey();
  const policy = { daily: 1, weekly: 0, monthly: 0, timeZone: "UTC" };
  // The base starts after every WAL file is archived (retention keeps files archived
  // after the oldest kept base started), and `now` after it.
  const started = new Date(Date.now() + 60_000);
  const now = new Date(Date.now() + 120_000);
  // One signed base whose first segment is FILES: every segment below it goes.
  const baseId = "20261203T020000Z-bbbbbb";
  const manifest = signedBaseManifest({
    secret: key.secret,
    baseId,
    segment: FILES,
    startedAt: started.toISOString(),
  });
  await store.putIfAbsent(baseKeys("shop", baseId).manifest, serializeBaseManifest(manifest));
  const signers = new Set([key.signer]);

  const time = async (atOnce: number, run: number) => {
    const names = Array.from({ length: FILES + 1 }, (_, i) => segment(i));
    for (let i = 0; i < names.length; i += 32) {
      await Promise.all(
        names
          .slice(i, i + 32)
          .map((name) => store.put(`${walPrefix("shop")}${name}`, Readable.from([Buffer.alloc(64)]))),
      );
    }
    // The plan step's rows, appended as the flow's audit-append does, each run in its own chain.
    const audit = new StoreAuditLog(store, `db#bench-${atOnce}-${run}`);
    const plan = await planBasePrune(store, "shop", signers, policy, now);
    for (const row of baseRetirementRows(plan)) {
      await appendAudit(audit, {
        at: now.toISOString(),
        event: "retain.delete",
        actor: "bench",
        databaseId: "shop",
        ...row,
      });
    }
    const t = performance.now();
    const result = await removeRetiredBases({
      store,
      databaseId: "shop",
      signers,
      policy,
      audit,
      now,
      wal: auditedWal(plan),
      walDeletesAtOnce: atOnce,
    });
    const seconds = (performance.now() - t) / 1000;
    if (result.wal.deleted !== FILES) throw new Error(`deleted ${result.wal.deleted} of ${FILES}`);
    return seconds;
  };
  const one = await medianSeconds(RUNS, (run) => time(1, run));
  const sixteen = await medianSeconds(RUNS, (run) => time(16, run));
  printOneVersusSixteen(FILES, RUNS, one, sixteen);
} finally {
  await moto.stop();
}
