import { readdir } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { keyPair } from "../helpers/age.ts";
import { runCli } from "../helpers/cli.ts";
import { tempDir } from "../helpers/temp.ts";

/** The one error printer (containers/worker/src/main.ts), driven by the running command's parsed options. */
describe("cli error printer", () => {
  const badRecipient = ["--recipient", "age1notakey", "--db", "postgres://x@127.0.0.1:1/y", "--store", "file:///tmp/x"];

  it("answers --json with one JSON document even when the bad flag comes before --json", async () => {
    const r = await runCli([
      "restore",
      "--jobs",
      "0",
      "--json",
      "--store",
      "file:///tmp/x",
      "--target",
      "postgres://x/y",
      "--identity",
      "/nonexistent",
    ]);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout)).toEqual({
      ok: false,
      error: { name: "UsageError", message: '--jobs must be a positive integer, got "0"' },
    });
    expect(r.stderr).toBe('strongroom: error: --jobs must be a positive integer, got "0" [UsageError]\n');
  });

  it("does not take `--json` given as another option's value for --json", async () => {
    const r = await runCli(["backup", "--database-id", "--json", ...badRecipient]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("[InvalidRecipientError]");
  });

  it("follows STRONGROOM_JSON strictly: 1 answers in JSON, 0 does not", async () => {
    const on = await runCli(["backup", ...badRecipient], { STRONGROOM_JSON: "1" });
    expect(JSON.parse(on.stdout).error.name).toBe("InvalidRecipientError");
    const off = await runCli(["backup", ...badRecipient], { STRONGROOM_JSON: "0" });
    expect(off.stdout).toBe("");
    expect(off.code).toBe(1);
  });

  it("writes the error as one JSON log line on stderr with --log-format json, hint included", async () => {
    const r = await runCli(["--log-format", "json", "backup", ...badRecipient]);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] as string)).toMatchObject({
      level: "ERROR",
      service: "strongroom",
      message: 'invalid recipient "age1n…" (11 characters)',
      error: "InvalidRecipientError",
      hint: expect.stringContaining("age1"),
    });
  });

  it("prints the stack only at --log-level debug", async () => {
    const quiet = await runCli(["backup", ...badRecipient]);
    expect(quiet.stderr).not.toMatch(/\n\s+at /);
    const debug = await runCli(["--log-level", "debug", "backup", ...badRecipient]);
    expect(debug.stderr).toMatch(/debug: InvalidRecipientError: invalid recipient[^\n]*\n\s+at /);
  });

  it("refuses an impossible retention policy as a usage error, before reading the store", async () => {
    const r = await runCli([
      "prune",
      "--store",
      "file:///nonexistent",
      "--database-id",
      "shop",
      "--time-zone",
      "Mars/Olympus",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('strongroom: error: unknown time zone "Mars/Olympus" [InvalidPolicyError]');
  });
});

/** Issue 24, item 10: a file that cannot be read is said in words, not as an errno code. */
describe("files that cannot be read", () => {
  it("says why in words (no such file, it is a directory), never ENOENT or EISDIR", async () => {
    const dir = await tempDir();
    const store = pathToFileURL(dir).href;
    const key = await keyPair();
    const identity = await runCli(["restore", "--identity", "/nonexistent/identity.txt"], {
      STRONGROOM_STORE: store,
      STRONGROOM_TARGET_URL: "postgres://x@127.0.0.1:1/y",
    });
    const signingKey = await runCli(["list", "--store", store, "--signing-key", dir]);
    const rootCert = await runCli(["backup", "--recipient", key.recipient, "--audit", "none", "--store", store], {
      DATABASE_URL: "postgres://x@127.0.0.1:1/y?sslmode=verify-ca&sslrootcert=/nonexistent/root.crt",
    });
    const checks = await runCli(["verify", "--store", store, "--checks", "/nonexistent/checks.sql"], {
      STRONGROOM_IDENTITY: key.identity,
    });
    expect([identity.code, signingKey.code, rootCert.code, checks.code]).toEqual([1, 1, 2, 2]);
    expect(checks.stderr).toContain("strongroom: error: cannot read --checks /nonexistent/checks.sql: no such file");
    expect(identity.stderr).toContain(
      "strongroom: error: cannot read identity file /nonexistent/identity.txt: no such file [InvalidIdentityError]",
    );
    expect(signingKey.stderr).toContain(
      `strongroom: error: cannot read signing key ${dir}: it is a directory [InvalidKeyError]`,
    );
    expect(rootCert.stderr).toContain(
      "strongroom: error: cannot read sslrootcert /nonexistent/root.crt: no such file [UsageError]",
    );
    for (const r of [identity, signingKey, rootCert, checks]) expect(r.stderr).not.toMatch(/\bE[A-Z]{3,}\b/);
    expect(await readdir(dir)).toEqual([]);
  });
});

/** Usability item 4: --json means exactly one JSON document on stdout, success or failure. */
describe("--json on usage errors", () => {
  it.for([
    [
      ["restore", "--json", "--store", "file:///tmp/x", "--target", "postgres://x/y"],
      "required option '--identity <file>' not specified (give it, or set STRONGROOM_IDENTITY_FILE)",
    ],
    [["list", "--json", "--store", "s3:/x"], '--store "s3:/x" is missing the two slashes of s3://bucket'],
    [["list", "--store", "file:///tmp", "--json", "--frobnicate"], "unknown option '--frobnicate'"],
  ])("answers %j with one UsageError document and exit 2", async ([args, message]) => {
    const r = await runCli(args as string[]);
    expect(r.code).toBe(2);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ ok: false, error: { name: "UsageError", message } });
    expect(doc.error.hint).toMatch(/--help shows the usage$|^use file:\/\/\/absolute\/path/);
    expect(r.stderr).toContain(`strongroom: error: ${message} [UsageError]`);
  });

  it("reports a mistyped option first, on one line with the option it was likely meant to be, not as the option missing", async () => {
    const r = await runCli(["backup", "--store", "file:///tmp/x", "--recipent", "age1x"], { DATABASE_URL: undefined });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      "strongroom: error: unknown option '--recipent' (did you mean --recipient?) [UsageError]\nHINT: strongroom backup --help shows the usage\n",
    );
    // An option's value that looks like an option is not taken for one, and nothing far off is suggested.
    const far = await runCli(["list", "--store", "file:///tmp", "--database-id", "-x", "--zzzzzz"]);
    expect(far.stderr).toContain("strongroom: error: unknown option '--zzzzzz' [UsageError]");
  });

  it("names the env var of a missing option in text too", async () => {
    const r = await runCli(["backup", "--store", "file:///tmp/x", "--recipient", "age1x"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      "strongroom: error: required option '--db <url>' not specified (give it, or set DATABASE_URL) [UsageError]\nHINT: strongroom backup --help shows the usage\n",
    );
  });
});
