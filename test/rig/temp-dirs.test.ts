import { existsSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import config from "../../vitest.config.ts";
import { removeHookTempDirs, tempDir } from "../helpers/temp.ts";

/** Issue 24, item 10: the tests left ~40 /tmp/strongroom-* dirs, every one a hook's. */
describe("tempDir", () => {
  let fromHook = "";
  beforeAll(async () => {
    fromHook = await tempDir("strongroom-hook-");
  });

  it("removes a dir made in a hook once its file is done (a setup file's afterAll), not at an exit that never comes", async () => {
    const fromTest = await tempDir();
    expect(config.test?.setupFiles).toContain("test/rig/temp-dirs.ts");
    await removeHookTempDirs();
    expect(existsSync(fromHook)).toBe(false);
    // A test's own goes when the test finishes.
    expect(existsSync(fromTest)).toBe(true);
  });
});
