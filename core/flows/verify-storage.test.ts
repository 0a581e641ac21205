import { describe, expect, it } from "vitest";
import { ephemeralStorageProblem } from "../../infra/sim/local-tasks.ts";
import { FARGATE_EPHEMERAL_GIB, verifyStorage } from "./verify-storage.ts";

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

  it("for 1 GB to 2 TB of recorded size: room for the database, its archive and headroom, within Fargate's range, or refused", () => {
    const planned = sizes.map((db) => {
      try {
        const s = verifyStorage(backup(db, db / 2), 21);
        return [db / GB, s.ephemeralGiB, s.staged ? "staged" : "serial"] as const;
      } catch (err) {
        return [db / GB, (err as Error).name] as const;
      }
    });
    expect(planned).toEqual([
      [1, 21, "staged"],
      [10, 21, "staged"],
      [50, 85, "staged"],
      [100, 166, "staged"],
      // No room for the archive beside it: restored serially, streaming.
      [150, 178, "serial"],
      [200, "VerifyStorageError"],
      [500, "VerifyStorageError"],
      [1000, "VerifyStorageError"],
      [2000, "VerifyStorageError"],
    ]);
    for (const db of sizes) {
      let s: ReturnType<typeof verifyStorage>;
      try {
        s = verifyStorage(backup(db, db / 2), 21);
      } catch {
        continue;
      }
      // Every size it gives is one ECS accepts, and holds the database and the staged archive.
      expect(ephemeralStorageProblem({ SizeInGiB: s.ephemeralGiB })).toBeUndefined();
      expect(s.ephemeralGiB * GiB).toBeGreaterThan(db * 1.25 + (s.staged ? db / 2 : 0));
    }
  });

  it("refuses only what no size holds, saying how much it needs and where it can be verified instead", () => {
    expect(() => verifyStorage(backup(150 * GiB, 0), 21)).not.toThrow();
    let refused: Error | undefined;
    try {
      verifyStorage(backup(400 * GB, 150 * GB), 21);
    } catch (err) {
      refused = err as Error;
    }
    expect(refused?.name).toBe("VerifyStorageError");
    expect(refused?.message).toMatch(/shop\/20261202T020000Z-abcdef needs about \d+ GiB .* at most 200 GiB/);
    expect((refused as { hint?: string }).hint).toContain("--scratch");
  });

  it("never gives less than the task definition's own storage, and estimates from the dump when the size was not recorded", () => {
    expect(verifyStorage(backup(1 * GB, 0.5 * GB), 64).ephemeralGiB).toBe(64);
    const old = verifyStorage(backup(undefined, 20 * GB), 21);
    expect(old.basis).toBe("dumpBytes");
    expect(old.ephemeralGiB * GiB).toBeGreaterThan(20 * GB * 4);
    expect(FARGATE_EPHEMERAL_GIB).toEqual({ min: 21, max: 200 });
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
