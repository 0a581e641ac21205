import { readFile, stat } from "node:fs/promises";
import { homedir } from "node:os";
import * as path from "node:path";

/**
 * The password file libpq reads: PGPASSFILE, else ~/.pgpass (HOME first, as libpq 15+
 * does). strongroom passes the same path to pg_dump and pg_restore, so its
 * own session and the child tools find the same password.
 */
export function pgpassPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.PGPASSFILE || path.join(env.HOME || homedir(), ".pgpass");
}

export interface PgpassLookup {
  password: string | undefined;
  /** Why the file was not used, as libpq would warn; undefined when it was read or absent. */
  ignored: string | undefined;
}

/**
 * Looks up a password as libpq's passwordFromFile does. Written out rather than taken
 * from the `pgpass` package (which `pg` uses) because that one differs from libpq where
 * it matters here: it skips the file whenever PGPASSWORD is set, even empty; a `\\:` in a
 * field splits it; and it prints its warnings to stderr, which breaks `--log-format json`.
 */
export async function lookupPgpass(
  file: string,
  key: { host: string; port: number; database: string; user: string },
): Promise<PgpassLookup> {
  let mode: number;
  try {
    const info = await stat(file);
    if (!info.isFile()) return { password: undefined, ignored: `${file} is not a plain file` };
    mode = info.mode;
  } catch {
    return { password: undefined, ignored: undefined };
  }
  if ((mode & 0o077) !== 0) {
    return {
      password: undefined,
      ignored: `${file} has group or world access; permissions should be u=rw (0600) or less`,
    };
  }
  const text = await readFile(file, "utf8").catch(() => "");
  // A host given as a socket directory matches "localhost", as in libpq.
  const host = key.host === "" || key.host.startsWith("/") ? "localhost" : key.host;
  return { password: matchPgpass(text, [host, String(key.port), key.database, key.user]), ignored: undefined };
}

/** The password of the first line whose four fields match, libpq's rules: `*` matches anything, `\` escapes. */
export function matchPgpass(text: string, fields: readonly [string, string, string, string]): string | undefined {
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "");
    if (line === "" || line.startsWith("#")) continue;
    let rest: string | undefined = line;
    for (const field of fields) {
      rest = matchField(rest, field);
      if (rest === undefined) break;
    }
    if (rest !== undefined) return unescapeField(rest);
  }
  return undefined;
}

/** The text after `field:` when the line starts with a field matching `want`. */
function matchField(line: string, want: string): string | undefined {
  if (line.startsWith("*:")) return line.slice(2);
  let i = 0;
  let got = "";
  while (i < line.length && line[i] !== ":") {
    if (line[i] === "\\" && i + 1 < line.length) i++;
    got += line[i];
    i++;
  }
  return i < line.length && got === want ? line.slice(i + 1) : undefined;
}

/** The password field: backslashes escape, and an unescaped `:` ends it. */
function unescapeField(rest: string): string {
  let out = "";
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === ":") break;
    if (rest[i] === "\\" && i + 1 < rest.length) i++;
    out += rest[i];
  }
  return out;
}
