#!/usr/bin/env node
// The strongroom CLI. In a checkout it runs the TypeScript sources through Node 22's
// type stripping (npm's node@22 devDependency puts Node 22 first on PATH for npx);
// the worker image runs the esbuild bundle (dist/strongroom.mjs) instead.
import * as zlib from "node:zlib";

const [major] = process.versions.node.split(".").map(Number);
// zstd in node:zlib (the backup's compressor, for its frame checksums) came in 22.15.
if (major < 22 || typeof zlib.zstdCompress !== "function") {
  process.stderr.write(
    `strongroom: error: Node ${process.versions.node} is too old\nHINT: run it through npx (after npm ci), or with Node 22.15+\n`,
  );
  process.exit(2);
}
// Type stripping announces itself with an ExperimentalWarning on every run; keep stderr for us.
process.removeAllListeners("warning");
process.on("warning", (w) => {
  if (w.name !== "ExperimentalWarning") process.stderr.write(`${w.name}: ${w.message}\n`);
});
await import("../src/run.ts");
