import { readFileSync } from "node:fs";
import * as path from "node:path";
import { ImageConfigError } from "#core/errors.ts";

/**
 * What a container started from an image inherits from its Dockerfile, read the way
 * Docker builds it: the final stage's USER, ENV and VOLUME. npm run sim cannot build the
 * image (there is no Docker engine), so its task sandbox runs the worker from the
 * checkout, with these settings applied as the image would apply them.
 */

export const WORKER_DOCKERFILE = path.resolve(import.meta.dirname, "../../containers/worker/Dockerfile");

/** Docker's PATH for an image that sets none; the node images keep it. */
export const DOCKER_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface ImageConfig {
  /** USER (`name`, `uid`, `name:group`, `uid:gid`). Absent: root, as Docker runs an image without USER. */
  user?: string;
  /**
   * ENV, after the base image's. A base image from a registry is taken as Docker's
   * default PATH only: the node images also set NODE_VERSION and YARN_VERSION, which
   * nothing of ours reads.
   */
  env: Record<string, string>;
  /** VOLUME paths, absolute and normalized. */
  volumes: string[];
}

/** Reads the final stage's USER, ENV and VOLUME of the Dockerfile at `file`. */
export function readImageConfig(file: string = WORKER_DOCKERFILE): ImageConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ImageConfigError(`cannot read the Dockerfile ${file}: ${(err as Error).message}`, { cause: err });
  }
  return parseDockerfile(text, file);
}

/**
 * The final stage of a Dockerfile's text. A stage `FROM` an earlier stage's name starts
 * from that stage's settings; any other `FROM` from a base image's (see ImageConfig.env).
 * Instructions other than FROM, ENV, USER and VOLUME change nothing a container inherits
 * here and are skipped; `$VAR` and `${VAR}` are replaced by the stage's ENV so far.
 */
export function parseDockerfile(text: string, source = "Dockerfile"): ImageConfig {
  const stages = new Map<string, ImageConfig>();
  let stage: ImageConfig | undefined;
  // ARG defaults of the current stage: substituted like ENV, but not in a container's environment.
  let args: Record<string, string> = {};
  for (const { line, instruction, rest } of instructions(text)) {
    const fail = (why: string) => new ImageConfigError(`${source}:${line}: ${instruction} ${why}`);
    if (instruction === "FROM") {
      const words = rest.split(/\s+/).filter((w) => !w.startsWith("--"));
      const from = stages.get((words[0] ?? "").toLowerCase());
      stage = from
        ? { ...(from.user === undefined ? {} : { user: from.user }), env: { ...from.env }, volumes: [...from.volumes] }
        : { env: { PATH: DOCKER_DEFAULT_PATH }, volumes: [] };
      if (words[1]?.toLowerCase() === "as" && words[2]) stages.set(words[2].toLowerCase(), stage);
      args = {};
      continue;
    }
    if (!stage) {
      if (instruction === "ARG") continue; // ARG before the first FROM is allowed.
      throw fail("comes before the first FROM");
    }
    const vars = { ...args, ...stage.env };
    if (instruction === "ARG") {
      const [name, value] = rest.trim().split(/=(.*)/s);
      if (name && value !== undefined) args[name] = substitute(unquote(value, fail), vars);
    } else if (instruction === "ENV") {
      for (const [name, value] of envPairs(rest, fail)) stage.env[name] = substitute(value, { ...args, ...stage.env });
    } else if (instruction === "USER") {
      const user = substitute(rest.trim(), vars);
      if (user === "" || /\s/.test(user)) throw fail(`needs one user, got ${JSON.stringify(rest)}`);
      stage.user = user;
    } else if (instruction === "VOLUME") {
      for (const raw of volumeWords(rest, fail)) {
        const volume = substitute(raw, vars);
        if (!volume.startsWith("/")) throw fail(`path ${JSON.stringify(volume)} is not absolute`);
        const normalized = path.posix.normalize(volume).replace(/(.)\/$/, "$1");
        if (!stage.volumes.includes(normalized)) stage.volumes.push(normalized);
      }
    }
  }
  if (!stage) throw new ImageConfigError(`${source} has no FROM`);
  return stage;
}

/** Instructions with their first line number: continuation lines joined, comment lines dropped. */
function* instructions(text: string): Generator<{ line: number; instruction: string; rest: string }> {
  let pending = "";
  let start = 0;
  const lines = text.split(/\r?\n/);
  for (const [i, raw] of lines.entries()) {
    // Docker drops comment lines even inside a continued instruction.
    if (/^\s*#/.test(raw)) continue;
    if (pending === "" && raw.trim() === "") continue;
    if (pending === "") start = i + 1;
    if (/\\\s*$/.test(raw)) {
      pending += `${raw.replace(/\\\s*$/, "")} `;
      continue;
    }
    const whole = (pending + raw).trim();
    pending = "";
    if (whole === "") continue;
    const match = /^(\S+)\s*([\s\S]*)$/.exec(whole);
    if (match?.[1]) yield { line: start, instruction: match[1].toUpperCase(), rest: match[2] ?? "" };
  }
}

/** `ENV a=1 b="two words"`, or the legacy `ENV a one value`. */
function envPairs(rest: string, fail: (why: string) => Error): Array<[string, string]> {
  const legacy = /^([A-Za-z_][A-Za-z0-9_]*)\s+([\s\S]*)$/.exec(rest);
  if (legacy?.[1]) return [[legacy[1], unquote(legacy[2] ?? "", fail)]];
  const pairs: Array<[string, string]> = [];
  for (const word of shellWords(rest, fail)) {
    const eq = word.indexOf("=");
    if (eq <= 0) throw fail(`expects name=value, got ${JSON.stringify(word)}`);
    pairs.push([word.slice(0, eq), word.slice(eq + 1)]);
  }
  if (pairs.length === 0) throw fail("sets nothing");
  return pairs;
}

/** `VOLUME ["/a", "/b"]` (JSON) or `VOLUME /a /b`. */
function volumeWords(rest: string, fail: (why: string) => Error): string[] {
  const trimmed = rest.trim();
  if (trimmed.startsWith("[")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      throw fail(`is not a JSON array of strings: ${trimmed}`);
    }
    if (!Array.isArray(parsed) || !parsed.every((p) => typeof p === "string")) {
      throw fail(`is not a JSON array of strings: ${trimmed}`);
    }
    return parsed;
  }
  const words = trimmed.split(/\s+/).filter((w) => w !== "");
  if (words.length === 0) throw fail("names no path");
  return words;
}

/**
 * Splits on unquoted whitespace, keeping what quotes hold; a backslash escapes the next
 * character. Single-quoted text is marked so that `substitute` leaves its `$` alone.
 */
function shellWords(text: string, fail: (why: string) => Error): string[] {
  const words: string[] = [];
  let word: string | undefined;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === "\\" && quote === '"' && i + 1 < text.length) word += text[++i] as string;
      else word += c === "$" && quote === "'" ? LITERAL_DOLLAR : c;
    } else if (/\s/.test(c)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (c === '"' || c === "'") {
      quote = c;
      word ??= "";
    } else if (c === "\\" && i + 1 < text.length) {
      word = (word ?? "") + (text[++i] as string);
    } else {
      word = (word ?? "") + c;
    }
  }
  if (quote) throw fail(`has an unclosed ${quote}`);
  if (word !== undefined) words.push(word);
  return words;
}

function unquote(value: string, fail: (why: string) => Error): string {
  return shellWords(value.trim(), fail).join(" ");
}

/** Stands in for a `$` that single quotes protect from substitution. */
const LITERAL_DOLLAR = "\u0000";

/** `$NAME` and `${NAME}` from `env`; an unset name is empty, as in Docker. */
function substitute(value: string, env: Record<string, string>): string {
  return value
    .replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_, braced, bare) => {
      return env[(braced ?? bare) as string] ?? "";
    })
    .replaceAll(LITERAL_DOLLAR, "$");
}
