/**
 * npm run build — bundles the worker/CLI into dist/ for the container image:
 * dist/strongroom.mjs (the entry point) and dist/chunks/, no TypeScript at run time
 * (type stripping costs ~30 MiB of RSS), only the native zstd addon beside it.
 *
 * Split, not one file: each command is a dynamic import, and a chunk is parsed only when
 * its command runs. One 2.9 MB file cost every command, `--help` included, ~80 ms of
 * parsing before its first line ran (0.10 s → 0.05 s for `--help`, bench:startup).
 */
import * as path from "node:path";
import { type BuildOptions, build } from "esbuild";

const WORKER_BUNDLE: BuildOptions = {
  entryPoints: { strongroom: "containers/worker/src/run.ts" },
  bundle: true,
  splitting: true,
  platform: "node",
  format: "esm",
  target: "node22",
  sourcemap: true,
  outExtension: { ".js": ".mjs" },
  chunkNames: "chunks/[name]-[hash]",
  // Native addon (and pg's optional native driver) stay outside the bundle.
  external: ["@mongodb-js/zstd", "pg-native"],
  // Some bundled CommonJS dependencies call require(); give ESM output one.
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  logLevel: "warning",
};

/** Builds the worker into `outDir`; returns the entry point's path (`<outDir>/strongroom.mjs`). */
export async function buildWorker(outDir: string): Promise<string> {
  await build({ ...WORKER_BUNDLE, outdir: outDir });
  return path.join(outDir, "strongroom.mjs");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(`built ${await buildWorker(process.argv[2] ?? "dist")}`);
}
