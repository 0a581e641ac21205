import { chmod } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.ts";
import { allKeys, identityFile, newStore } from "../helpers/fixture.ts";

/** Usability item 2: a rejected key, or any input that may be a secret, is never echoed. */
describe("secrets in messages", () => {
  it("recognises an identity passed as a recipient, says so, and never prints it, in text or JSON", async () => {
    const key = await identityFile();
    const identity = key.identity;
    const body = identity.slice("AGE-SECRET-KEY-1".length);
    for (const args of [[], ["--json"], ["--log-format", "json"]]) {
      const global = args[0] === "--log-format" ? args : [];
      const local = args[0] === "--json" ? args : [];
      const r = await runCli([...global, "backup", "--recipient", identity, ...local], {
        DATABASE_URL: "postgres://x@127.0.0.1:1/y",
        STRONGROOM_STORE: "file:///tmp/never",
      });
      expect(r.code).toBe(1);
      expect(r.stderr + r.stdout).toContain("a recipient is a private identity (AGE-SECRET-KEY-1…), not a public key");
      expect(r.stderr + r.stdout).toContain("pass its public key, age1…");
      expect(r.stderr + r.stdout).not.toContain(body);
    }
  });

  it("shows only the first characters and the length of any other rejected recipient", async () => {
    const r = await runCli(["backup", "--recipient", "hunter2-my-db-password"], {
      DATABASE_URL: "postgres://x@127.0.0.1:1/y",
      STRONGROOM_STORE: "file:///tmp/never",
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('strongroom: error: invalid recipient "hunte…" (22 characters) [InvalidRecipientError]');
    expect(r.stderr).not.toContain("my-db-password");
  });

  it("warns, as ssh does, of an identity file its group or everyone can read, and goes on; says nothing of a 0600 one", async () => {
    const key = await identityFile();
    const { store, url } = await newStore("file");
    const restore = () =>
      runCli(["restore", "--identity", key.file], {
        STRONGROOM_STORE: url,
        STRONGROOM_TARGET_URL: "postgres://x@127.0.0.1:1/y",
      });
    const notFound =
      "strongroom: error: no backups in this store [BackupNotFoundError]\nHINT: `strongroom list --store …` shows the backups there\n";

    const own = await restore();
    expect(own.stderr).toBe(notFound);
    for (const [mode, who] of [
      [0o644, "readable by everyone (mode 0644)"],
      [0o640, "readable by its group (mode 0640)"],
    ] as const) {
      await chmod(key.file, mode);
      const r = await restore();
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `warn: identity file ${key.file} is ${who}: whoever can read it can decrypt every backup encrypted to it; chmod 600 ${key.file}\n${notFound}`,
      );
      expect(r.stderr).not.toContain(key.identity.slice("AGE-SECRET-KEY-1".length));
    }
    expect(await allKeys(store)).toEqual([]);
  });

  it("redacts a password in a mistyped store URL", async () => {
    const r = await runCli(["list", "--store", "s3:/user:pa55word@bucket/x"]);
    expect(r.code).toBe(2);
    expect(r.stderr).not.toContain("pa55word");
  });
});
