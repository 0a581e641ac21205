/**
 * npm run build — bundles the worker/CLI into dist/strongroom.mjs for the container
 * image: one file, no TypeScript at run time (type stripping costs ~30 MiB of RSS),
 * only the native zstd addon beside it.
 */
import { type BuildOptions, build } from "esbuild";

export const WORKER_BUNDLE: BuildOptions = {
  entryPoints: ["containers/worker/src/run.ts"],
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node22",
  sourcemap: true,
  // Native addon (and pg's optional native driver) stay outside the bundle.
  external: ["@mongodb-js/zstd", "pg-native"],
  // Some bundled CommonJS dependencies call require(); give ESM output one.
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  logLevel: "warning",
};

if (import.meta.url === `file://${process.argv[1]}`) {
  const outfile = process.argv[2] ?? "dist/strongroom.mjs";
  await build({ ...WORKER_BUNDLE, outfile });
  console.log(`built ${outfile}`);
}
