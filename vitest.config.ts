import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    globalSetup: ["test/rig/global-setup.ts"],
    setupFiles: ["test/rig/worker-env.ts", "test/rig/fast-check-seed.ts", "test/rig/temp-dirs.ts"],
    include: ["test/**/*.test.ts", "core/**/*.test.ts", "containers/**/*.test.ts", "functions/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
  },
});
