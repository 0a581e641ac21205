import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { generateSigningKey } from "#core/audit/row-signature.ts";
import { runCli, startCli } from "../helpers/cli.ts";
import { allKeys, identityFile, newStore } from "../helpers/fixture.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * A wal-push killed mid-upload (SIGKILL: no handler runs) leaves nothing that counts: the
 * key holds either nothing or the whole file, which wal-fetch returns byte for byte, and
 * the next archive_command run completes it. On the file store and on S3 (moto).
 */
const SEGMENT = 16 * 1024 * 1024;
const NAME = "000000010000000000000042";

/** A segment as PostgreSQL writes one: its long page header (timeline 1, its own address), then bytes that do not compress. */
function segment(): Buffer {
  const bytes = randomBytes(SEGMENT);
  bytes.writeUInt16LE(0xd110, 0); // magic (PostgreSQL 15)
  bytes.writeUInt16LE(0x0002, 2); // XLP_LONG_HEADER
  bytes.writeUInt32LE(1, 4); // timeline
  bytes.writeBigUInt64LE(0x42n * BigInt(SEGMENT), 8); // the address of its first byte
  bytes.writeUInt32LE(0, 16);
  bytes.writeBigUInt64LE(7_000_000_000_000_000_001n, 24); // system identifier
  bytes.writeUInt32LE(SEGMENT, 32);
  bytes.writeUInt32LE(8192, 36);
  return bytes;
}

describe.each(["file", "s3"] as const)("a wal-push killed mid-upload (%s store)", (kind) => {
  it("leaves the file archived whole or not at all, and the next run archives it", async () => {
    const store = await newStore(kind);
    const key = await identityFile();
    const dir = await tempDir("strongroom-walkill-");
    const signing = generateSigningKey();
    const signingKey = path.join(dir, "signing.key");
    await writeFile(signingKey, `${signing.secret}\n`, { mode: 0o600 });
    await mkdir(path.join(dir, "pg_wal"));
    const file = path.join(dir, "pg_wal", NAME);
    const bytes = segment();
    await writeFile(file, bytes);
    const sha = createHash("sha256").update(bytes).digest("hex");
    const push = ["wal-push", file, "--store", store.url, "--database-id", "shop", "--recipient", key.recipient];
    const env = { STRONGROOM_SIGNING_KEY_FILE: signingKey };
    const fetch = async () => {
      const dest = path.join(dir, `fetched-${randomBytes(3).toString("hex")}`);
      const r = await runCli([
        "wal-fetch",
        NAME,
        dest,
        "--store",
        store.url,
        "--database-id",
        "shop",
        "--identity",
        key.file,
        "--signer",
        signing.signer,
      ]);
      return {
        code: r.code,
        sha:
          r.code === 0
            ? createHash("sha256")
                .update(await readFile(dest))
                .digest("hex")
            : "",
      };
    };
    for (const delay of [80, 200, 350, 500, 700]) {
      const run = startCli(push, env, { cwd: dir });
      await new Promise((r) => setTimeout(r, delay));
      run.child.kill("SIGKILL");
      await run.result;
      const keys = (await allKeys(store.store, "shop/")).filter((k) => !k.includes("/.strongroom"));
      if (keys.length === 0) continue;
      // Something is there: it is the whole file.
      expect(keys).toEqual([`shop/wal/${NAME}`]);
      expect(await fetch()).toEqual({ code: 0, sha });
    }
    const done = await runCli(push, env, { cwd: dir });
    expect(done.code, done.stderr).toBe(0);
    expect(await fetch()).toEqual({ code: 0, sha });
    expect(await allKeys(store.store, "shop/")).toEqual([`shop/wal/${NAME}`]);
  }, 180_000);
});
