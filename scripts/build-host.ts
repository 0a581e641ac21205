/**
 * npm run build:host — strongroom as one file for a database host without Node.js: a
 * Node single executable application (docs/pitr.md, "On the database host"). The CLI is
 * bundled as CommonJS (what Node 22's SEA runs), its blob injected into a copy of this
 * checkout's Node 22 binary with postject. The host runs `wal-push`, `wal-archiver` and
 * `basebackup` from it; the native zstd addon a logical restore uses is not in it (the
 * WAL and base backups use node:zlib's zstd), so that command says so if called there.
 */
import { execFile } from "node:child_process";
import { chmod, copyFile, mkdir, rm, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { promisify } from "node:util";
import { build, type Plugin } from "esbuild";

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, "..");
/** Node's SEA sentinel (src/node_sea.cc): postject flips it to say a blob is injected. */
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

/** The native addon cannot travel in the blob: a stand-in that says so when called. */
const withoutNativeZstd: Plugin = {
  name: "without-native-zstd",
  setup(b) {
    b.onResolve({ filter: /^@mongodb-js\/zstd$/ }, () => ({ path: "zstd", namespace: "host-stub" }));
    b.onLoad({ filter: /.*/, namespace: "host-stub" }, () => ({
      contents: `const missing = () => { throw new Error("the host's single executable has no native zstd: a logical backup's restore runs from the npm package or the image"); };
export const compress = missing;
export const decompress = missing;`,
      loader: "js",
    }));
  },
};

/** Builds `<outDir>/strongroom-host`; returns its path. */
export async function buildHost(outDir: string, node = process.execPath): Promise<string> {
  await mkdir(outDir, { recursive: true });
  const main = path.join(outDir, "strongroom-host.cjs");
  await build({
    entryPoints: [path.join(ROOT, "containers/worker/src/sea-main.ts")],
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node22",
    outfile: main,
    external: ["pg-native"],
    plugins: [withoutNativeZstd],
    // CommonJS has no import.meta; in a SEA, __dirname is the executable's directory.
    banner: { js: "var __importMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
    define: { "import.meta.dirname": "__dirname", "import.meta.url": "__importMetaUrl" },
    logLevel: "error",
  });
  const blob = path.join(outDir, "strongroom-host.blob");
  const config = path.join(outDir, "sea-config.json");
  await writeFile(
    config,
    JSON.stringify({
      main,
      output: blob,
      disableExperimentalSEAWarning: true,
      useCodeCache: false,
      useSnapshot: false,
    }),
  );
  await run(node, ["--experimental-sea-config", config], { cwd: outDir });
  const exe = path.join(outDir, "strongroom-host");
  await rm(exe, { force: true });
  await copyFile(node, exe);
  await chmod(exe, 0o755);
  await run(path.join(ROOT, "node_modules/.bin/postject"), [exe, "NODE_SEA_BLOB", blob, "--sentinel-fuse", SEA_FUSE], {
    maxBuffer: 16 * 1024 * 1024,
  });
  for (const f of [blob, config, main]) await rm(f, { force: true });
  return exe;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(`built ${await buildHost(path.resolve(process.argv[2] ?? "dist"))}`);
}
