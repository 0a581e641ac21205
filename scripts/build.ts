/**
 * npm run build — bundles the worker/CLI into dist/strongroom.mjs for the container
 * image: one file, no TypeScript at run time (type stripping costs ~30 MiB of RSS),
 * only the native zstd addon beside it.
 *
 * One file, not split by command: split, `--help` started in 0.05 s instead of 0.10,
 * but the backup ran with a V8 heap of ~11 MB instead of ~17, and the ~20 MB of frame
 * and read buffers it holds outside the heap then kept setting off full collections:
 * 214 mark-compacts in a 4.2 GB backup instead of 1, 2.5 core-s of GC threads.
 */
import * as path from "node:path";
import { type BuildOptions, build } from "esbuild";

/**
 * Packages the bundle imports at run time instead of holding: the native zstd addon
 * (a platform binary) and pg's optional native driver (loaded only when asked for).
 * An install of the bundle (the image, `npm pack`'s tarball) provides those it uses.
 */
export const BUNDLE_EXTERNALS: readonly string[] = ["@mongodb-js/zstd", "pg-native"];

const WORKER_BUNDLE: BuildOptions = {
  entryPoints: ["containers/worker/src/run.ts"],
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node22",
  sourcemap: true,
  external: [...BUNDLE_EXTERNALS],
  // Some bundled CommonJS dependencies call require(); give ESM output one.
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  logLevel: "warning",
};

/** Builds the worker into `outDir`; returns the bundle's path (`<outDir>/strongroom.mjs`). */
export async function buildWorker(outDir: string): Promise<string> {
  const outfile = path.join(outDir, "strongroom.mjs");
  await build({ ...WORKER_BUNDLE, outfile });
  return outfile;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(`built ${await buildWorker(process.argv[2] ?? "dist")}`);
}
