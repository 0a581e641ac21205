#!/usr/bin/env node
// The strongroom CLI. In a checkout it runs the TypeScript sources through Node 22's
// type stripping (npm's node@22 devDependency puts Node 22 first on PATH for npx).
// Installed from `npm pack`'s tarball, which holds no sources, it runs the esbuild bundle
// that prepack built (dist/strongroom.mjs), as the worker image does.
// Plain JavaScript, so that an older Node gets as far as the message below.
import { existsSync } from "node:fs";
import * as zlib from "node:zlib";

const sources = new URL("../src/run.ts", import.meta.url);
const inCheckout = existsSync(sources);

const [major] = process.versions.node.split(".").map(Number);
// zstd in node:zlib (the backup's compressor, for its frame checksums) came in 22.15.
if (major < 22 || typeof zlib.zstdCompress !== "function") {
  const hint = inCheckout
    ? "run it through npx after npm ci (Node 22 from the node@22 devDependency), or install Node 22 from https://nodejs.org"
    : "install it from https://nodejs.org or with your version manager";
  process.stderr.write(`strongroom needs Node.js 22.15 or newer (this is v${process.versions.node}); ${hint}\n`);
  // As restore_command, any exit from 1 to 125 reads as "not archived", and PostgreSQL
  // would end the recovery there: a Node too old must stop it instead (126).
  process.exit(process.argv.includes("wal-fetch") ? 126 : 2);
}
if (inCheckout) {
  // Type stripping announces itself with an ExperimentalWarning on every run; keep stderr for us.
  process.removeAllListeners("warning");
  process.on("warning", (w) => {
    if (w.name !== "ExperimentalWarning") process.stderr.write(`${w.name}: ${w.message}\n`);
  });
  await import(sources.href);
} else {
  // Installed from the tarball: the bundle, at the package's root (dist/).
  await import(new URL("../../../dist/strongroom.mjs", import.meta.url).href);
}
