/**
 * npm pack's prepack and postpack: the tarball holds the CLI as it is installed, not the
 * checkout. `npm install -g ./strongroom-<version>.tgz` then gets the esbuild bundle, the
 * bin that starts it, and from the registry only what the bundle imports instead of
 * holding (the native zstd addon), not the CDK, the test servers and the dev tools.
 *
 *   node scripts/pack.ts prepack    builds the bundle into dist/, then puts the packed
 *                                   manifest in package.json (the checkout's is kept in
 *                                   dist/pack/)
 *   node scripts/pack.ts postpack   puts the checkout's package.json back, byte for byte
 *
 * npm packs the package.json it finds on disk, so the packed manifest has to be there while
 * it packs. A pack interrupted between the two leaves the packed one; the next prepack (or
 * postpack) puts the checkout's back first.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { BUNDLE_EXTERNALS, buildWorker } from "./build.ts";

const root = path.resolve(import.meta.dirname, "..");
const manifestPath = path.join(root, "package.json");
const keptPath = path.join(root, "dist", "pack", "package.json");

export interface Manifest {
  dependencies?: Record<string, string>;
  [field: string]: unknown;
}

/**
 * The manifest the tarball holds: the checkout's, less what only a checkout uses (scripts,
 * dev and test dependencies, the `#core/…` import map over the sources), with the
 * dependencies narrowed to the bundle's externals, at the checkout's exact versions.
 * An external the checkout does not depend on (pg's optional native driver) stays out.
 * "private" stays: npm pack and a tarball install ignore it, npm publish refuses it.
 */
export function packedManifest(checkout: Manifest, externals: readonly string[] = BUNDLE_EXTERNALS): Manifest {
  const { scripts, devDependencies, optionalDependencies, imports, dependencies = {}, ...rest } = checkout;
  const runtime = Object.fromEntries(
    externals.filter((name) => name in dependencies).map((name) => [name, dependencies[name] as string]),
  );
  return { ...rest, dependencies: runtime };
}

/** Puts the checkout's package.json back, if a pack set it aside. */
async function restore(): Promise<void> {
  if (!existsSync(keptPath)) return;
  await writeFile(manifestPath, await readFile(keptPath));
  await rm(path.dirname(keptPath), { recursive: true });
}

async function prepack(): Promise<void> {
  await restore();
  await buildWorker(path.join(root, "dist"));
  const text = await readFile(manifestPath, "utf8");
  const packed = `${JSON.stringify(packedManifest(JSON.parse(text) as Manifest), null, 2)}\n`;
  await mkdir(path.dirname(keptPath), { recursive: true });
  await writeFile(keptPath, text);
  await writeFile(manifestPath, packed);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const step = process.argv[2];
  if (step === "prepack") await prepack();
  else if (step === "postpack") await restore();
  else {
    process.stderr.write(`pack: unknown step ${step ?? "(none)"}; use prepack or postpack\n`);
    process.exitCode = 2;
  }
}
