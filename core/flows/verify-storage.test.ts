import { describe, expect, it } from "vitest";
import { ephemeralStorageProblem, volumeConfigurationsProblem } from "../../infra/sim/local-tasks.ts";
import { EBS_GP3_GIB, FARGATE_EPHEMERAL_GIB, verifyStorage } from "./verify-storage.ts";

const GB = 1e9;
const GiB = 2 ** 30;
const backup = (databaseBytes: number | undefined, dumpBytes: number) => ({
  databaseId: "shop",
  backupId: "20261202T020000Z-abcdef",
  dumpBytes,
  ...(databaseBytes !== undefined ? { databaseBytes } : {}),
});

describe("the verify task's storage, sized per backup", () => {
  // A typical ratio: the -Z0 dump holds the rows, not the indexes; half the database.
  const sizes = [1, 10, 50, 100, 150, 200, 500, 1000, 2000].map((gb) => gb * GB);

  const plan = (db: number, options: Parameters<typeof verifyStorage>[2]) => {
    try {
      const s = verifyStorage(backup(db, db / 2), 21, options);
      return [
        db / GB,
        s.kind,
        s.kind === "ebs" ? s.volumeGiB : s.ephemeralGiB,
        s.staged ? "staged" : "serial",
      ] as const;
    } catch (err) {
      return [db / GB, (err as Error).name] as const;
    }
  };

  it("for 1 GB to 2 TB of recorded size: ephemeral storage while it holds the restore, an EBS volume beyond, every size one ECS accepts", () => {
    expect(sizes.map((db) => plan(db, { ebsAvailable: true }))).toEqual([
      [1, "ephemeral", 21, "staged"],
      [10, "ephemeral", 21, "staged"],
      [50, "ephemeral", 85, "staged"],
      [100, "ephemeral", 166, "staged"],
      // No room for the archive beside it: restored serially, streaming, still on ephemeral storage.
      [150, "ephemeral", 178, "serial"],
      [200, "ebs", 329, "staged"],
      [500, "ebs", 818, "staged"],
      [1000, "ebs", 1633, "staged"],
      [2000, "ebs", 3263, "staged"],
    ]);
    for (const db of sizes) {
      const s = verifyStorage(backup(db, db / 2), 21, { ebsAvailable: true });
      // Every size it gives is one ECS accepts, and holds the database and, staged, its archive.
      expect(ephemeralStorageProblem({ SizeInGiB: s.ephemeralGiB })).toBeUndefined();
      const room = s.kind === "ebs" ? s.volumeGiB : s.ephemeralGiB;
      expect(room * GiB).toBeGreaterThan(db * 1.25 + (s.staged ? db / 2 : 0));
      if (s.kind === "ebs") {
        const volume = { Name: "v", ManagedEBSVolume: { RoleArn: ROLE, SizeInGiB: s.volumeGiB, VolumeType: "gp3" } };
        expect(volumeConfigurationsProblem([{ Name: "v", ConfiguredAtLaunch: true }], [volume])).toBeUndefined();
      }
    }
  });

  it("without a volume task definition (settings written before it), refuses past ephemeral storage's 200 GiB as before", () => {
    expect(sizes.map((db) => plan(db, { ebsAvailable: false })).map((p) => p[1])).toEqual([
      ...Array(5).fill("ephemeral"),
      ...Array(4).fill("VerifyStorageError"),
    ]);
  });

  it("puts every run on an EBS volume when the config says verify.storage ebs, sized the same way, never below 1 GiB", () => {
    expect(plan(0.1 * GB, { kind: "ebs", ebsAvailable: true })).toEqual([0.1, "ebs", 4, "staged"]);
    expect(plan(10 * GB, { kind: "ebs", ebsAvailable: true })).toEqual([10, "ebs", 20, "staged"]);
  });

  it("refuses only what no volume holds, saying how much it needs and where it can be verified instead", () => {
    expect(() => verifyStorage(backup(150 * GiB, 0), 21)).not.toThrow();
    expect(() => verifyStorage(backup(12_000 * GiB, 6_000 * GiB), 21, { ebsAvailable: true })).not.toThrow();
    for (const [db, ebsAvailable, limit] of [
      [400 * GB, false, "at most 200 GiB"],
      [14_000 * GiB, true, `at most ${EBS_GP3_GIB.max} GiB`],
    ] as const) {
      let refused: Error | undefined;
      try {
        verifyStorage(backup(db, db / 2), 21, { ebsAvailable });
      } catch (err) {
        refused = err as Error;
      }
      expect(refused?.name).toBe("VerifyStorageError");
      expect(refused?.message).toMatch(/shop\/20261202T020000Z-abcdef needs about \d+ GiB .* restored serially/);
      expect(refused?.message).toContain(limit);
      expect((refused as { hint?: string }).hint).toContain("--scratch");
    }
  });

  it("never gives less than the task definition's own storage, and estimates from the dump when the size was not recorded", () => {
    expect(verifyStorage(backup(1 * GB, 0.5 * GB), 64).ephemeralGiB).toBe(64);
    const old = verifyStorage(backup(undefined, 20 * GB), 21);
    expect(old.basis).toBe("dumpBytes");
    expect(old.ephemeralGiB * GiB).toBeGreaterThan(20 * GB * 4);
    expect(FARGATE_EPHEMERAL_GIB).toEqual({ min: 21, max: 200 });
  });
});

const ROLE = "arn:aws:iam::123456789012:role/strongroom/x/ecs-volume/Role";

describe("the sim's RunTask, as ECS checks volumes configured at launch", () => {
  const volumes = [{ Name: "scratch" }, { Name: "launch-volume", ConfiguredAtLaunch: true }];
  const ebs = (managed: Record<string, unknown>) => [
    { Name: "launch-volume", ManagedEBSVolume: { RoleArn: ROLE, SizeInGiB: 100, VolumeType: "gp3", ...managed } },
  ];

  it("accepts a gp3 volume of 1 to 16,384 GiB with an infrastructure role, for the definition's volume configured at launch", () => {
    for (const SizeInGiB of [1, 500, 16_384])
      expect(volumeConfigurationsProblem(volumes, ebs({ SizeInGiB }))).toBeUndefined();
    expect(volumeConfigurationsProblem(volumes, ebs({ Throughput: 500, FilesystemType: "ext4" }))).toBeUndefined();
    expect(volumeConfigurationsProblem([{ Name: "scratch" }], undefined)).toBeUndefined();
  });

  it("refuses a size outside the type's range, a missing role, a name the definition does not configure at launch, and too much throughput", () => {
    for (const SizeInGiB of [0, 16_385, 10.5, "100", undefined]) {
      expect(volumeConfigurationsProblem(volumes, ebs({ SizeInGiB }))).toMatch(
        /sizeInGiB for gp3 must be between 1 and 16384/,
      );
    }
    expect(volumeConfigurationsProblem(volumes, ebs({ RoleArn: undefined }))).toMatch(
      /roleArn must be an IAM role ARN/,
    );
    expect(
      volumeConfigurationsProblem(volumes, [{ Name: "scratch", ManagedEBSVolume: { RoleArn: ROLE, SizeInGiB: 5 } }]),
    ).toMatch(/no volume "scratch" with configuredAtLaunch/);
    // gp3: at most a quarter of its IOPS (3,000 unless set), and 1,000 MiB/s.
    expect(volumeConfigurationsProblem(volumes, ebs({ Throughput: 800 }))).toMatch(/at most iops\/4/);
    expect(volumeConfigurationsProblem(volumes, ebs({ Throughput: 800, Iops: 4000 }))).toBeUndefined();
    expect(volumeConfigurationsProblem(volumes, ebs({ FilesystemType: "ntfs" }))).toMatch(/ext3, ext4 or xfs/);
  });

  it("refuses a definition's volume configured at launch that the call leaves unconfigured", () => {
    expect(volumeConfigurationsProblem(volumes, undefined)).toMatch(/launch-volume is configured at launch/);
  });
});

describe("the sim's RunTask, as ECS checks ephemeral storage", () => {
  it("accepts a whole number of GiB from 21 to 200 and refuses anything else", () => {
    for (const ok of [21, 100, 200]) expect(ephemeralStorageProblem({ SizeInGiB: ok })).toBeUndefined();
    for (const bad of [20, 201, 21.5, "50", null, undefined]) {
      expect(ephemeralStorageProblem({ SizeInGiB: bad })).toMatch(/between 21 GiB and 200 GiB/);
    }
    expect(ephemeralStorageProblem(undefined)).toBeUndefined();
  });
});
