import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

/**
 * The worker image's base is pinned: a floating tag (`node:22-bookworm-slim`) is rebuilt
 * by its publisher every Node release and Debian point release, so the same Dockerfile
 * would give another runtime from one deploy to the next. Read as text (no Docker engine
 * here), each FROM through its ARG defaults.
 */
const root = path.resolve(import.meta.dirname, "../..");
const dockerfile = readFileSync(path.join(root, "containers/worker/Dockerfile"), "utf8");
const pkg = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as {
  devDependencies: Record<string, string>;
};

/** Each stage's base image, ARG defaults substituted; earlier stages' names left as they are. */
function bases(text: string): string[] {
  const args = new Map<string, string>();
  const stages = new Set<string>();
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const arg = /^ARG\s+([A-Za-z_][A-Za-z0-9_]*)=(\S+)/.exec(line);
    if (arg) args.set(arg[1] as string, arg[2] as string);
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (!from) continue;
    const image = (from[1] as string).replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (_, n: string) => args.get(n) ?? "");
    if (!stages.has(image)) out.push(image);
    if (from[2]) stages.add(from[2]);
  }
  return out;
}

describe("the worker image's base", () => {
  it("is a full Node release (or a digest), the same Node the tests run, in every stage", () => {
    const images = bases(dockerfile);
    expect(images.length).toBe(2);
    for (const image of images) {
      expect(image, image).toMatch(/^node:\d+\.\d+\.\d+-[a-z]+-slim(@sha256:[0-9a-f]{64})?$|@sha256:[0-9a-f]{64}$/);
      expect(image.split(":")[1]?.split("-")[0], image).toBe(pkg.devDependencies.node);
    }
  });

  it("refuses a floating tag, as the check would read one", () => {
    expect(bases("FROM node:22-bookworm-slim\n")[0]).not.toMatch(/^node:\d+\.\d+\.\d+-/);
  });
});
