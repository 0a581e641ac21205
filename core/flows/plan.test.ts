import { describe, expect, it } from "vitest";
import type { InvalidInputError } from "../errors.ts";
import { StaticSettings } from "./flow-settings.ts";
import { hintInFlowTerms, planBackup, planRestore, planVerify } from "./plan.ts";
import { describeFailure } from "./task-failure.ts";

const settings = new StaticSettings({
  databases: [
    {
      id: "shop",
      backupTaskDefinition: "arn:backup-shop:1",
      restoreTaskDefinition: "arn:restore-shop:1",
      verifyTaskDefinition: "arn:verify-shop:1",
      retention: { daily: 7, weekly: 4, monthly: 12, timeZone: "UTC" },
      verify: { deep: true, maxAgeDays: 8 },
    },
    {
      id: "rds",
      backupTaskDefinition: "arn:backup-rds:1",
      restoreTaskDefinition: "arn:restore-rds:1",
      verifyTaskDefinition: "arn:verify-rds:1",
      verifyVolumeTaskDefinition: "arn:verify-ebs-rds:1",
      retention: { daily: 7, weekly: 4, monthly: 12, timeZone: "UTC" },
      verify: { deep: false, maxAgeDays: 2, skipExtensions: ["aws_s3", "aws_commons"] },
    },
  ],
  restoreTargets: [
    { id: "staging", secretArn: "arn:secret:staging-AbCdEf", restoreTaskDefinition: "arn:restore-staging:1" },
  ],
});
const SHA = "ab".repeat(32);
/** The ledger's answer, as committedIn gives it: latest, or the id asked for, with its manifest's SHA-256. */
const latest = async (_databaseId: string, backup: string) => ({
  backupId: backup === "latest" ? "20261120T020000Z-abcdef" : backup,
  manifestSha256: SHA,
});

async function refusal(input: unknown): Promise<Error> {
  try {
    await planRestore(settings, input, latest);
  } catch (err) {
    return err as Error;
  }
  throw new Error("accepted");
}

describe("flow plans", () => {
  it("verifies latest, resolved, in the verify task, leaving auditing to the flow, deep when configured", async () => {
    const plan = await planVerify(settings, { databaseId: "shop" }, latest);
    expect(plan).toEqual({
      databaseId: "shop",
      backupId: "20261120T020000Z-abcdef",
      kind: "restore",
      taskDefinition: "arn:verify-shop:1",
      container: "worker",
      manifestSha256: SHA,
      command: [
        "verify",
        "--database-id",
        "shop",
        "--backup",
        "20261120T020000Z-abcdef",
        "--manifest-sha256",
        SHA,
        "--audit",
        "none",
        "--json",
        "--deep",
      ],
      // No size in the ledger's answer here: the smallest Fargate storage.
      storage: "ephemeral",
      ephemeralStorageGiB: 21,
    });
    await expect(planVerify(settings, { databaseId: "nope" }, latest)).rejects.toThrow(/no database "nope"/);
  });

  it("sizes the verify task's storage from the backup, and refuses one no task can hold before anything runs", async () => {
    const sized = (databaseBytes: number) => async (_databaseId: string, backup: string) => ({
      ...(await latest(_databaseId, backup)),
      dumpBytes: databaseBytes / 2,
      databaseBytes,
    });
    expect((await planVerify(settings, { databaseId: "shop" }, sized(50e9))).ephemeralStorageGiB).toBe(85);
    // Room for the database, not for the archive beside it: restored serially.
    const serial = await planVerify(settings, { databaseId: "shop" }, sized(150e9));
    expect(serial.ephemeralStorageGiB).toBe(178);
    expect(serial.command.slice(-2)).toEqual(["--jobs", "1"]);
    expect((await planVerify(settings, { databaseId: "shop" }, sized(50e9))).command).not.toContain("--jobs");
    // shop's settings predate the volume task definition: ephemeral storage is all it has.
    await expect(planVerify(settings, { databaseId: "shop" }, sized(400e9))).rejects.toMatchObject({
      name: "VerifyStorageError",
    });
    // rds has one: past ephemeral storage, its volume definition and an EBS volume of the size needed.
    const large = await planVerify(settings, { databaseId: "rds" }, sized(400e9));
    expect(large).toMatchObject({ storage: "ebs", taskDefinition: "arn:verify-ebs-rds:1", volumeGiB: 655 });
    expect(large.command).not.toContain("--jobs");
    const small = await planVerify(settings, { databaseId: "rds" }, sized(50e9));
    expect(small).toMatchObject({ storage: "ephemeral", taskDefinition: "arn:verify-rds:1", ephemeralStorageGiB: 85 });
    expect(small).not.toHaveProperty("volumeGiB");
    // A task of fewer than 4 vCPUs restores serially: no room is reserved for a staged archive.
    const oneVcpu = new StaticSettings({
      databases: [{ ...(await settings.database("rds")), verify: { deep: false, maxAgeDays: 2, vcpus: 1 } } as never],
      restoreTargets: [],
    });
    const serial1 = await planVerify(oneVcpu, { databaseId: "rds" }, sized(50e9));
    expect(serial1).toMatchObject({ storage: "ephemeral", ephemeralStorageGiB: 62 });
    expect(serial1.command.slice(-2)).toEqual(["--jobs", "1"]);
  });

  it("verifies a point-in-time recovery of a walArchiving database: its newest signed base, by the host's signers, pinned to its manifest", async () => {
    const signer = `srsigner1${"A".repeat(43)}`;
    const walSettings = new StaticSettings({
      databases: [
        {
          id: "ledger",
          backupTaskDefinition: "arn:backup-ledger:1",
          restoreTaskDefinition: "arn:restore-ledger:1",
          verifyTaskDefinition: "arn:verify-ledger:1",
          verifyVolumeTaskDefinition: "arn:verify-ebs-ledger:1",
          retention: { daily: 7, weekly: 4, monthly: 12, timeZone: "UTC" },
          verify: { deep: false, maxAgeDays: 2 },
          wal: { signers: [signer] },
          mode: "both",
        },
      ],
    });
    const asked: Array<[string, string[], string]> = [];
    const signedBase = (size: number) => async (databaseId: string, signers: ReadonlySet<string>, base: string) => {
      asked.push([databaseId, [...signers], base]);
      return { baseId: "20261201T020000Z-basexx", manifestSha256: SHA, plainBytes: size };
    };
    const plan = await planVerify(walSettings, { databaseId: "ledger", kind: "pitr" }, latest, signedBase(1e9));
    expect(asked).toEqual([["ledger", [signer], "latest"]]);
    expect(plan).toMatchObject({
      kind: "pitr",
      backupId: "20261201T020000Z-basexx",
      manifestSha256: SHA,
      taskDefinition: "arn:verify-ledger:1",
      storage: "ephemeral",
    });
    expect(plan.command).toEqual([
      "verify",
      "--pitr",
      "--database-id",
      "ledger",
      "--base",
      "20261201T020000Z-basexx",
      "--manifest-sha256",
      SHA,
      "--signer",
      signer,
      "--audit",
      "none",
      "--json",
    ]);
    // A cluster too large for ephemeral storage recovers on a volume.
    expect(
      await planVerify(walSettings, { databaseId: "ledger", kind: "pitr" }, latest, signedBase(150e9)),
    ).toMatchObject({ storage: "ebs", taskDefinition: "arn:verify-ebs-ledger:1" });
    // BackupFlow with kind base: an unsigned base backup under the plan's id, which the flow's row commits.
    const base = await planBackup(
      walSettings,
      { databaseId: "ledger", kind: "base" },
      new Date("2026-12-03T02:00:00Z"),
    );
    expect(base).toMatchObject({ kind: "base", taskDefinition: "arn:backup-ledger:1" });
    expect(base.command).toEqual([
      "basebackup",
      "--database-id",
      "ledger",
      "--base-id",
      base.backupId,
      "--unsigned",
      "--json",
    ]);
    expect(base.backupId).toMatch(/^20261203T020000Z-/);
    expect((await planBackup(settings, { databaseId: "shop" }, new Date())).kind).toBe("logical");
    await expect(planBackup(settings, { databaseId: "shop", kind: "base" }, new Date())).rejects.toMatchObject({
      name: "InvalidInputError",
      message: "database shop takes no base backups: its mode is not physical or both",
    });
    // A logical verify says its kind too: the flow's audit rows carry it.
    expect((await planVerify(settings, { databaseId: "shop" }, latest)).kind).toBe("restore");
    await expect(
      planVerify(settings, { databaseId: "shop", kind: "pitr" }, latest, signedBase(1e9)),
    ).rejects.toMatchObject({
      name: "InvalidInputError",
      message: "database shop has no point-in-time recovery to verify",
    });
  });

  it("tells the verify task the extensions the config skips, each as its own argument", async () => {
    const plan = await planVerify(settings, { databaseId: "rds" }, latest);
    expect(plan.command.slice(-4)).toEqual(["--skip-extension", "aws_s3", "--skip-extension", "aws_commons"]);
    expect(plan.command).not.toContain("--deep");
  });

  it("chooses the backup id before the task runs and tells the worker to leave auditing to the flow", async () => {
    const plan = await planBackup(settings, { databaseId: "shop" }, new Date("2026-11-21T02:00:00Z"));
    expect(plan.backupId).toMatch(/^20261121T020000Z-[a-z2-7]{6}$/);
    expect(plan.command).toEqual([
      "backup",
      "--database-id",
      "shop",
      "--backup-id",
      plan.backupId,
      "--audit",
      "none",
      "--json",
    ]);
    expect(plan.taskDefinition).toBe("arn:backup-shop:1");
  });

  it("names the configured databases when asked for another", async () => {
    await expect(planBackup(settings, { databaseId: "shops" }, new Date())).rejects.toThrow(
      /no database "shops" is configured.*/,
    );
  });

  it("restores latest, resolved, into a new database on the source's server, the name beside the URL, never in it", async () => {
    const plan = await planRestore(settings, { databaseId: "shop", target: { database: 'new "db"/x' } }, latest);
    expect(plan.backupId).toBe("20261120T020000Z-abcdef");
    expect(plan.taskDefinition).toBe("arn:restore-shop:1");
    expect(plan.command).toEqual([
      "restore",
      "--database-id",
      "shop",
      "--backup",
      "20261120T020000Z-abcdef",
      "--manifest-sha256",
      SHA,
      "--target",
      "postgres://",
      '--target-database=new "db"/x',
      "--create",
      "--audit",
      "none",
      "--json",
    ]);
  });

  it.each(["a=b", "sales/2026", "50%", "a?b#c", "..", "-x", 'it\'s "ü" ✓', " spaced ", `${"ü".repeat(31)}x`])(
    "passes the database name %j to the worker as one argument, unchanged",
    async (database) => {
      const plan = await planRestore(settings, { databaseId: "shop", target: { database } }, latest);
      expect(plan.command.filter((a) => a.startsWith("--target-database="))).toEqual([`--target-database=${database}`]);
      expect(plan.target).toBe(`the server of shop, database ${database}`);
    },
  );

  it("refuses a database name over 63 bytes, though under 63 characters, before any task runs", async () => {
    const err = await refusal({ databaseId: "shop", target: { database: "ü".repeat(32) } });
    expect(err.name).toBe("InvalidInputError");
    expect(err.message).toBe(
      "target.database is 64 bytes in UTF-8; PostgreSQL names are at most 63 bytes, and the server would cut it short to name another database",
    );
    expect((err as InvalidInputError).hint).toContain("a shorter name");
    expect((await refusal({ databaseId: "shop", target: { database: "a\u0000b" } })).message).toContain(
      "/target/database must match pattern",
    );
  });

  it("restores into a declared target server only", async () => {
    const plan = await planRestore(
      settings,
      {
        databaseId: "shop",
        backupId: "20261101T020000Z-bbbbbb",
        target: { secretArn: "arn:secret:staging-AbCdEf" },
        clean: true,
      },
      latest,
    );
    expect(plan.taskDefinition).toBe("arn:restore-staging:1");
    expect(plan.command).toContain("--clean");
    expect(plan.command).toContain("postgres://");
    expect((await refusal({ databaseId: "shop", target: { secretArn: "arn:secret:other-AbCdEf" } })).message).toBe(
      "target.secretArn is not a declared restore target",
    );
  });

  it("refuses clean into a database on the source's own server without confirm, its hint the exact input to add", async () => {
    // The plan cannot tell the source database from another on its server (the name is
    // the secret's dbname), so every clean restore there is treated as one over production.
    const input = { databaseId: "shop", target: { database: "shop" }, clean: true };
    const err = await refusal(input);
    expect(err.name).toBe("InvalidInputError");
    expect(err.message).toBe(
      'a clean restore into database "shop" on the server of shop drops and replaces the backup\'s objects there, which may be the production database: add "confirm": "shop" to the input to go ahead',
    );
    expect((err as InvalidInputError).hint).toBe(
      'the input to start: {"databaseId":"shop","target":{"database":"shop"},"clean":true,"confirm":"shop"}',
    );
  });

  it.each(["Shop", "shop ", " shop", "shop\n", "*", ""])(
    "refuses a clean restore whose confirm is %j, not exactly the database name",
    async (confirm) => {
      const err = await refusal({ databaseId: "shop", target: { database: "shop" }, clean: true, confirm });
      expect(err.name).toBe("InvalidInputError");
      expect(err.message).toBe(
        `"confirm" is ${JSON.stringify(confirm)}, not the target database's name "shop": it must equal it exactly`,
      );
      expect((err as InvalidInputError).hint).toContain('"confirm":"shop"');
    },
  );

  it("compares confirm with the name code unit by code unit: a differently normalized é does not confirm", async () => {
    const nfc = "caf\u00e9";
    const nfd = "cafe\u0301";
    const err = await refusal({ databaseId: "shop", target: { database: nfc }, clean: true, confirm: nfd });
    expect(err.message).toContain("must equal it exactly");
  });

  it("restores clean over a database on the source's server once confirm equals its name", async () => {
    const database = 'shop "live" ✓';
    const plan = await planRestore(
      settings,
      { databaseId: "shop", target: { database }, clean: true, confirm: database },
      latest,
    );
    expect(plan.taskDefinition).toBe("arn:restore-shop:1");
    expect(plan.command).toContain("--clean");
    expect(plan.command).toContain(`--target-database=${database}`);
    expect(plan.command.some((a) => a.includes("confirm"))).toBe(false);
  });

  it("needs no confirm for clean into a declared restore target, nor without clean", async () => {
    const staging = { secretArn: "arn:secret:staging-AbCdEf", database: "shop" };
    expect(
      (await planRestore(settings, { databaseId: "shop", target: staging, clean: true }, latest)).command,
    ).toContain("--clean");
    expect(
      (await planRestore(settings, { databaseId: "shop", target: { database: "shop" } }, latest)).command,
    ).not.toContain("--clean");
  });

  it("says a restore worker's hint in RestoreFlow's input terms, for each flag the input sets, and leaves other flags be", async () => {
    // GIVEN the worker's own hints (containers/worker/src/pipeline/restore.ts)
    const notEmpty = "restore into a new, empty database, or pass --clean to drop the backup's objects first";
    const roles = "create them first, or pass --no-owner to make app own everything (grants are skipped too)";
    const staging = "free space there, or set --staging-dir elsewhere";
    // THEN each flag reads as the input field that makes the plan pass it
    expect(hintInFlowTerms("restore", notEmpty)).toBe(
      'restore into a new, empty database, or pass "clean": true in the input to drop the backup\'s objects first',
    );
    expect(hintInFlowTerms("restore", roles)).toBe(
      'create them first, or pass "noOwner": true in the input to make app own everything (grants are skipped too)',
    );
    const plan = await planRestore(
      settings,
      { databaseId: "shop", target: { secretArn: "arn:secret:staging-AbCdEf" }, clean: true, noOwner: true },
      latest,
    );
    expect(plan.command).toEqual(expect.arrayContaining(["--clean", "--no-owner"]));
    // AND a flag no input sets, or another command's, stays as the worker wrote it
    expect(hintInFlowTerms("restore", staging)).toBe(staging);
    expect(hintInFlowTerms("backup", notEmpty)).toBe(notEmpty);
  });

  it.each([
    [{ databaseId: "shop", target: { database: "x", password: "hunter2" } }, "target.password"],
    [{ databaseId: "shop", target: { database: "x" }, PGPASSWORD: "hunter2" }, "PGPASSWORD"],
    [{ databaseId: "shop", target: { database: "x" }, connection: "postgres://u:p@h/x" }, "connection"],
  ])("refuses a password in the input, wherever it sits, without echoing it: %j", async (input, field) => {
    const err = await refusal(input);
    expect(err.name).toBe("InvalidInputError");
    expect(err.message).toBe(`the input has a field "${field}": a restore's input must never carry a password`);
    expect(JSON.stringify(err)).not.toContain("hunter2");
  });

  it("refuses unknown fields and a malformed backup id, naming them", async () => {
    expect((await refusal({ databaseId: "shop", target: { database: "x" }, extra: 1 })).message).toContain(
      "must NOT have additional properties 'extra'",
    );
    expect((await refusal({ databaseId: "shop", backupId: "yesterday", target: { database: "x" } })).message).toContain(
      "/backupId must match pattern",
    );
  });
});

describe("failure summaries for audit rows", () => {
  it("reads the worker's exit code from an ECS task's JSON by container name", () => {
    const cause = JSON.stringify({
      StopCode: "EssentialContainerExited",
      Containers: [
        { Name: "sidecar", ExitCode: 0 },
        { Name: "worker", ExitCode: 1, Reason: "exit 1" },
      ],
    });
    expect(describeFailure({ Error: "States.TaskFailed", Cause: cause })).toEqual({
      error: "States.TaskFailed",
      exitCode: 1,
      stopCode: "EssentialContainerExited",
      reason: "exit 1",
    });
  });

  it("keeps a Lambda's error type, never its message (which may quote input)", () => {
    const cause = JSON.stringify({ errorType: "InvalidInputError", errorMessage: "bad\npostgres://u:secret@h/db" });
    expect(describeFailure({ Error: "Lambda.Unknown", Cause: cause })).toEqual({ error: "InvalidInputError" });
  });

  it("keeps a cause that is not JSON as a clipped reason", () => {
    expect(describeFailure({ Error: "ECS.AmazonECSException", Cause: "x".repeat(2000) }).reason?.length).toBe(500);
  });

  it.each(["template0", "template1"])(
    "refuses to restore into the template database %s, which every new database copies",
    async (database) => {
      const err = await refusal({ databaseId: "shop", target: { database } });
      expect(err.name).toBe("InvalidInputError");
      expect(err.message).toBe(`target.database ${database} is a template database`);
    },
  );
});
