/**
 * What PostgreSQL accepts as a database name, checked before a name is sent anywhere.
 * Any character is allowed (quotes, `=`, `/`, `%`, spaces, Unicode, a leading `-`), so a
 * name is passed as data and quoted where it meets SQL, a conninfo string or a URL. Two
 * things are not names: NUL (libpq's strings end at it) and more than NAMEDATALEN - 1
 * bytes, which the server cuts short without an error, naming another database.
 */

/** NAMEDATALEN - 1, in bytes of the server encoding (UTF-8 here), not characters. */
export const MAX_DATABASE_NAME_BYTES = 63;

/** A lone UTF-16 surrogate has no UTF-8 form: it would reach the server as U+FFFD. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why `name` cannot name a database (a phrase after "the name …"), or undefined when it can. */
export function databaseNameProblem(name: string): string | undefined {
  if (name === "") return "is empty";
  if (name.includes("\0")) return "holds a NUL character, which no PostgreSQL name can";
  if (LONE_SURROGATE.test(name)) return "holds a lone UTF-16 surrogate, which is not a character";
  const bytes = Buffer.byteLength(name, "utf8");
  if (bytes > MAX_DATABASE_NAME_BYTES) {
    return `is ${bytes} bytes in UTF-8; PostgreSQL names are at most ${MAX_DATABASE_NAME_BYTES} bytes, and the server would cut it short to name another database`;
  }
  return undefined;
}
