import { describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.ts";

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
