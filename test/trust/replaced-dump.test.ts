import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, inject, it } from "vitest";
import { objectKey } from "#core/keys.ts";
import { type Manifest, manifestObject, serializeManifest } from "#core/manifest.ts";
import { ageEncrypt } from "#worker/stages/age-stream.ts";
import { zstdCompressFrames } from "#worker/stages/zstd-frames.ts";
import { runCli } from "../helpers/cli.ts";
import { identityFile, newStore } from "../helpers/fixture.ts";
import { createDatabase, sql } from "../helpers/pg.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * A store writer replaces a committed backup's dump with an archive of its own, encrypted
 * to the public recipients and padded to the committed size, the manifest untouched (so it
 * still counts). pg_restore commits once it has processed its last TOC entry, long before
 * the end of its input, so checking the stored SHA-256 at the end comes too late. The
 * manifest pins the dump's age header: nothing of the replacement may reach pg_restore.
 */
const pgUrl = inject("pgUrl");
const pgBinDir = inject("pgBinDir");
const run = promisify(execFile);

/** The attacker's archive, sealed as a dump is, padded until its stored size is `target` bytes. */
async function sealedReplacement(archive: Buffer, recipients: string[], target: number): Promise<Buffer> {
  const noise = (n: number) => {
    const parts: Buffer[] = [];
    for (let i = 0; parts.length * 32 < n; i++) parts.push(createHash("sha256").update(`pad ${i}`).digest());
    return Buffer.concat(parts).subarray(0, n);
  };
  const seal = async (pad: number) => {
    const out: Buffer[] = [];
    const plain = Buffer.concat([archive, Buffer.alloc(4 * 1024 * 1024 - archive.length), noise(pad)]);
    await pipeline(
      Readable.from([plain]),
      zstdCompressFrames(),
      await ageEncrypt(recipients),
      new Writable({
        write(chunk: Buffer, _e, cb) {
          out.push(chunk);
          cb();
        },
      }),
    );
    return Buffer.concat(out);
  };
  let pad = Math.max(0, target - 4 * 1024 * 1024);
  for (let i = 0; i < 80; i++) {
    const out = await seal(pad);
    const off = out.length - target;
    if (off === 0) return out;
    pad = Math.max(0, pad - (i > 30 ? Math.sign(off) : off));
  }
  throw new Error("could not pad the replacement to the committed size");
}

describe("a committed backup's dump replaced by a store writer", () => {
  it("is refused at its age header: pg_restore never sees a byte of it, and nothing is committed", async () => {
    const victim = await createDatabase(pgUrl, "headpin");
    // Enough that the stored dump is over 4 MiB, so a replacement can be padded to its size.
    await sql(
      victim.url,
      `create table orders(id int, note text);
       insert into orders select g, encode(sha256(g::text::bytea) || sha256((g * 7)::text::bytea), 'base64')
       from generate_series(1, 150000) g`,
    );
    const store = await newStore("file");
    const key = await identityFile();
    const made = await runCli(["backup", "--recipient", key.recipient, "--database-id", "shop"], {
      DATABASE_URL: victim.url,
      STRONGROOM_STORE: store.url,
    });
    expect(made.code, made.stderr).toBe(0);
    const backupId = made.stdout.trim();
    const manifestFile = path.join(fileURLToPath(store.url), "shop", "backups", backupId, "manifest.json");
    const manifest = JSON.parse(await readFile(manifestFile, "utf8")) as Manifest;
    const dump = manifestObject(manifest, "dump");
    expect(dump.storedHeadSha256).toMatch(/^[0-9a-f]{64}$/);

    const attacker = await createDatabase(pgUrl, "headpin_evil");
    await sql(attacker.url, "create table pwned(x int); insert into pwned values (1)");
    const dir = await tempDir();
    const archiveFile = path.join(dir, "evil.pgc");
    await run(path.join(pgBinDir, "pg_dump"), ["-Fc", "-Z0", "-f", archiveFile, "--dbname", attacker.url]);
    const replacement = await sealedReplacement(await readFile(archiveFile), manifest.recipients, dump.storedBytes);
    await writeFile(path.join(fileURLToPath(store.url), objectKey("shop", backupId, "dump")), replacement);

    const target = await createDatabase(pgUrl, "headpin_target");
    const restored = await runCli(["restore", "--identity", key.file, "--target", target.url], {
      STRONGROOM_STORE: store.url,
    });
    expect(restored.code).toBe(1);
    expect(restored.stderr).toContain("the age header is not the one committed");
    expect(await sql(target.url, "select count(*)::int as n from pg_class where relname = 'pwned'")).toEqual([
      { n: 0 },
    ]);

    const recovered = await runCli(["recover-table", "--identity", key.file, "--table", "public.orders"], {
      STRONGROOM_STORE: store.url,
      STRONGROOM_TARGET_URL: target.url,
    });
    expect(recovered.code).toBe(1);
    expect(recovered.stderr).toContain("the age header is not the one committed");
    expect(await sql(target.url, "select count(*)::int as n from pg_class where relname like 'pwned%'")).toEqual([
      { n: 0 },
    ]);

    // A dump from before the header was pinned (its manifest without the field, counted
    // only under --trust-store here) is proven whole before pg_restore starts.
    const { storedHeadSha256: _pin, ...unpinned } = dump;
    await writeFile(
      manifestFile,
      serializeManifest({ ...manifest, objects: manifest.objects.map((o) => (o.role === "dump" ? unpinned : o)) }),
    );
    const old = await runCli(["restore", "--identity", key.file, "--target", target.url, "--trust-store"], {
      STRONGROOM_STORE: store.url,
    });
    expect(old.code).toBe(1);
    expect(old.stderr).toMatch(/dump\.pgc\.zst\.age does not match its manifest/);
    expect(await sql(target.url, "select count(*)::int as n from pg_class where relname = 'pwned'")).toEqual([
      { n: 0 },
    ]);
  }, 120_000);
});
