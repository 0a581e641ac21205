import { readdir } from "node:fs/promises";
import { describe, expect, inject, it } from "vitest";
import { runCli } from "../helpers/cli.ts";
import { identityFile } from "../helpers/fixture.ts";
import { createDatabase, sql } from "../helpers/pg.ts";
import { tempDir } from "../helpers/temp.ts";

/** Usability item 1: a mistyped store URL is a usage error, never a directory under the current one. */
describe("store URLs", () => {
  it.for([
    ["s3:/missing-slash", "is missing the two slashes of s3://bucket"],
    ["file:relative/path", "is not an absolute file URL (three slashes, then the path)"],
    ["file://relative/x", "is not an absolute file URL (three slashes, then the path)"],
    ["relative/dir", "is not a URL"],
    ["/var/backups/pg", "is not a URL"],
    ["s3://Bad_Bucket/pg", "does not name an S3 bucket (3-63 lowercase letters, digits, dots and hyphens)"],
    ["gs://bucket/pg", "has an unsupported scheme"],
  ])("refuses --store %s with exit 2, naming the accepted forms, and writes nothing", async ([url, why]) => {
    const db = await createDatabase(inject("pgUrl"), "storeurl");
    await sql(db.url, "create table t as select 1 as x");
    const key = await identityFile();
    const cwd = await tempDir();
    const r = await runCli(
      ["backup", "--store", url as string, "--recipient", key.recipient],
      { DATABASE_URL: db.url },
      { cwd },
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `strongroom: error: --store ${JSON.stringify(url)} ${why} [UsageError]\nHINT: use file:///absolute/path or s3://bucket[/prefix]\n`,
    );
    expect(r.stdout).toBe("");
    expect(await readdir(cwd)).toEqual([]);
  });

  it("keeps a store URL with a newline, quotes and Unicode on one quoted line", async () => {
    const url = 's3:/bücket\n"strongroom: error: fake';
    const r = await runCli(["list", "--store", url]);
    expect(r.code).toBe(2);
    expect(r.stderr.split("\n")).toEqual([
      `strongroom: error: --store ${JSON.stringify(url)} is missing the two slashes of s3://bucket [UsageError]`,
      "HINT: use file:///absolute/path or s3://bucket[/prefix]",
      "",
    ]);
  });

  it("lists or restores from a file store whose directory does not exist as an error, not as no backups", async () => {
    const missing = `file://${await tempDir()}/stor`;
    const list = await runCli(["list", "--store", missing]);
    expect(list.code).toBe(1);
    expect(list.stdout).toBe("");
    expect(list.stderr).toMatch(
      /^strongroom: error: no file store at \S+\/stor: the directory does not exist \[BucketNotFoundError\]\nHINT: check the --store path/,
    );
    const key = await identityFile();
    const restore = await runCli([
      "restore",
      "--store",
      missing,
      "--identity",
      key.file,
      "--target",
      "postgres://x@127.0.0.1:1/y",
      "--json",
    ]);
    expect(restore.code).toBe(1);
    expect(JSON.parse(restore.stdout).error.name).toBe("BucketNotFoundError");
  });

  it("creates a new file store's directory on the first backup", async () => {
    const db = await createDatabase(inject("pgUrl"), "storenew");
    await sql(db.url, "create table t as select 1 as x");
    const key = await identityFile();
    const store = `file://${await tempDir()}/a/new/store`;
    const r = await runCli(["backup", "--store", store, "--recipient", key.recipient], { DATABASE_URL: db.url });
    expect(r.code).toBe(0);
    const list = await runCli(["list", "--store", store, "--json"]);
    expect(JSON.parse(list.stdout).backups).toHaveLength(1);
  });
});

describe("help and hints", () => {
  it("says once where --recipient's env var goes, and what --database-id means per command", async () => {
    const backup = (await runCli(["backup", "--help"])).stdout.replace(/\s+/g, " ");
    expect(backup).toContain("repeat for several (in the env var, comma-separated) (env: STRONGROOM_RECIPIENTS)");
    expect(backup).not.toContain("(env: comma");
    const prune = (await runCli(["prune", "--help"])).stdout.replace(/\s+/g, " ");
    expect(prune).toContain("--database-id <id> the database whose backups to prune");
    expect(prune).not.toContain("default: its name");
  });

  it("gives probe on S3 without credentials a hint instead of 'unexpected error'", async () => {
    const r = await runCli(["probe", "--store", "s3://no-credentials-here/pg"], {
      AWS_ACCESS_KEY_ID: "",
      AWS_SECRET_ACCESS_KEY: "",
      AWS_PROFILE: "strongroom-test-no-such-profile",
      AWS_CONFIG_FILE: "/nonexistent",
      AWS_SHARED_CREDENTIALS_FILE: "/nonexistent",
      AWS_EC2_METADATA_DISABLED: "true",
    });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("FAIL list");
    expect(r.stderr).toContain("no AWS credentials to reach bucket no-credentials-here");
    expect(r.stderr).toContain("HINT: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE");
  });
});
