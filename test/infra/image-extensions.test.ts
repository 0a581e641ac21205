import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

/**
 * The extensions the worker image carries, as the Dockerfile installs them and as the
 * README lists them. No Docker engine runs here, so the image is not built: the
 * Dockerfile's package list is computed by running its own shell lines (assignments and
 * loops only) under sh, up to the `apt-get install` that takes it.
 */
const root = path.resolve(import.meta.dirname, "../..");
const read = (file: string) => readFileSync(path.join(root, file), "utf8");

/** The RUN instructions of the final stage, continuation lines joined and comment lines dropped, as Docker reads them. */
function finalStageRuns(text: string): string[] {
  const instructions: string[] = [];
  let pending = "";
  for (const raw of text.split(/\r?\n/)) {
    if (/^\s*#/.test(raw)) continue;
    if (/\\\s*$/.test(raw)) {
      pending += `${raw.replace(/\\\s*$/, "")} `;
      continue;
    }
    const whole = (pending + raw).trim();
    pending = "";
    if (whole !== "") instructions.push(whole);
  }
  const lastFrom = instructions.findLastIndex((i) => /^FROM\s/i.test(i));
  return instructions.slice(lastFrom + 1).filter((i) => /^RUN\s/i.test(i));
}

interface Install {
  majors: string[];
  extensions: string[];
  packages: string[];
}

/** What the final stage's `apt-get install … $packages` installs, by running the lines that build `$packages`. */
function dockerfileInstall(text: string): Install {
  const runs = finalStageRuns(text).filter((r) => r.includes("apt-get install") && r.includes("extensions="));
  expect(runs, "one RUN of the final stage sets extensions= and installs").toHaveLength(1);
  const run = runs[0] as string;
  const start = run.indexOf("majors=");
  const install = run.indexOf("apt-get install", start);
  expect(start, "majors= comes before the install").toBeGreaterThanOrEqual(0);
  const lines = run.slice(start, install);
  // Only assignments and loops are run: nothing that writes, reads or runs a program.
  expect(lines).not.toMatch(/[<>`|&]|\$\(/);
  for (const command of lines.split(";").map((c) => c.replace(/\s+/g, " ").trim())) {
    expect(command, command).toMatch(/^(|[a-z]+="?[^"]*"?|for [a-z]+ in \$[a-z]+|do [a-z]+="[^"]*"|done)$/);
  }
  expect(run.slice(install)).toMatch(/^apt-get install -y --no-install-recommends \$packages;/);
  const out = execFileSync("sh", ["-euc", `${lines} echo "$majors"; echo "$extensions"; echo "$packages"`], {
    encoding: "utf8",
    env: { PATH: "/usr/bin:/bin" },
  });
  const [majors, extensions, packages] = out.split("\n").map((l) => l.split(" ").filter((w) => w !== ""));
  return { majors: majors ?? [], extensions: extensions ?? [], packages: packages ?? [] };
}

/** The package stems the README's table between the image-extensions markers names, in its order. */
function readmeStems(text: string): string[] {
  const block = /<!-- image-extensions -->\n([\s\S]*?)<!-- \/image-extensions -->/.exec(text)?.[1];
  expect(block, "the README has an image-extensions block").toBeDefined();
  const rows = (block as string).split("\n").filter((l) => l.startsWith("|"));
  // The header and the separator, then one row an extension.
  return rows.slice(2).flatMap((row) => {
    const stems = row.split("|")[2] ?? "";
    // The stems are the cell's code spans before any parenthesis (which is prose).
    return [...(stems.split("(")[0] ?? "").matchAll(/`([^`]+)`/g)].map((m) => m[1] as string);
  });
}

describe("the worker image's extensions", () => {
  const install = dockerfileInstall(read("containers/worker/Dockerfile"));

  it("installs a server and each listed extension for every major, and the locales", () => {
    expect(install.majors).toEqual(["13", "14", "15", "16", "17", "18"]);
    expect(install.extensions).toEqual(expect.arrayContaining(["postgis-3", "pgvector", "cron", "pgaudit", "partman"]));
    const expected = [
      "locales-all",
      ...install.majors.flatMap((m) => [`postgresql-${m}`, ...install.extensions.map((e) => `postgresql-${m}-${e}`)]),
    ];
    expect(install.packages).toEqual(expected);
  });

  it("the issue's nine, each from PGDG by its Debian package stem", () => {
    expect(install.extensions).toEqual([
      "postgis-3",
      "postgis-3-scripts",
      "pgvector",
      "cron",
      "pgaudit",
      "partman",
      "hypopg",
      "repack",
      "orafce",
      "pgrouting",
    ]);
  });

  it("are the README's list, so that a change to one fails until the other says the same", () => {
    expect(readmeStems(read("README.md"))).toEqual(install.extensions);
  });

  it.for([
    ["a stem the README lacks", (s: string[]) => s.slice(1)],
    ["a stem the Dockerfile lacks", (s: string[]) => [...s, "timescaledb"]],
    ["another order", (s: string[]) => [...s].reverse()],
  ] as const)("a README with %s fails the comparison", ([, change]) => {
    const readme = read("README.md");
    const stems = readmeStems(readme);
    const rows = change(stems)
      .map((s) => `| x | \`${s}\` |`)
      .join("\n");
    const edited = readme.replace(
      /<!-- image-extensions -->\n[\s\S]*?<!-- \/image-extensions -->/,
      `<!-- image-extensions -->\n| extension | package stems |\n| --- | --- |\n${rows}\n<!-- /image-extensions -->`,
    );
    expect(readmeStems(edited)).not.toEqual(install.extensions);
  });

  it("records every installed postgresql-* package's version in the image", () => {
    const run = finalStageRuns(read("containers/worker/Dockerfile")).find((r) => r.includes("extensions=")) as string;
    expect(run).toMatch(
      /dpkg-query -W -f '\$\{Package\} \$\{Version\}\\n' 'postgresql-\*'[^;]*> \/usr\/share\/strongroom\/packages\.txt/,
    );
    for (const p of install.packages.filter((p) => p !== "locales-all")) expect(p).toMatch(/^postgresql-/);
  });

  it("reads the loop from a Dockerfile as Docker would: comment lines inside the RUN are dropped", () => {
    const text = [
      "FROM debian",
      "RUN set -eux; \\",
      '    majors="15"; \\',
      "# a comment inside the continuation",
      '    extensions="cron"; \\',
      "    packages=locales-all; \\",
      "    for major in $majors; do \\",
      '      packages="$packages postgresql-$major"; \\',
      '      for extension in $extensions; do packages="$packages postgresql-$major-$extension"; done; \\',
      "    done; \\",
      "    apt-get install -y --no-install-recommends $packages; \\",
      "    true",
    ].join("\n");
    expect(dockerfileInstall(text).packages).toEqual(["locales-all", "postgresql-15", "postgresql-15-cron"]);
  });
});
