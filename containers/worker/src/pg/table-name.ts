import { UsageError } from "#core/errors.ts";

/**
 * Table names as SQL writes them: `shop.orders`, `orders` (schema public), or quoted
 * parts that keep case, spaces, dots and Unicode: `"Sales Ops"."Orders ✓"`. Unquoted
 * parts fold to lower case, as PostgreSQL folds them.
 */
export interface TableName {
  schema: string;
  name: string;
}

/**
 * Reads a dotted chain of identifiers at `pos` (after optional spaces): the parts and
 * where the chain ends, or a reason it is not one. pg_dump's own SQL is read with this
 * too, so names are found by structure, never by guessing how they were quoted.
 */
export function scanIdentifiers(text: string, pos: number): { parts: string[]; end: number } | { error: string } {
  const parts: string[] = [];
  let i = pos;
  while (text[i] === " ") i++;
  for (;;) {
    if (text[i] === '"') {
      let part = "";
      i++;
      for (;;) {
        if (i >= text.length) return { error: "a quoted part is not closed" };
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            part += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += text[i];
        i++;
      }
      if (part === "") return { error: "a quoted part is empty" };
      parts.push(part);
    } else {
      const m = /^[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*/.exec(text.slice(i));
      if (!m)
        return {
          error: i >= text.length ? "it ends early" : `unexpected ${JSON.stringify(text[i])} at position ${i + 1}`,
        };
      parts.push(m[0].toLowerCase());
      i += m[0].length;
    }
    if (text[i] !== ".") return { parts, end: i };
    i++;
  }
}

export function parseTableName(text: string): TableName {
  const bad = (why: string) =>
    new UsageError(`--table ${JSON.stringify(text)}: ${why}`, {
      hint: 'write schema.name, or quote a part that has capitals, spaces, dots or quotes: \'"Sales Ops"."Orders ✓"\'',
    });
  const scanned = scanIdentifiers(text, 0);
  if ("error" in scanned) throw bad(scanned.error);
  if (scanned.end !== text.length)
    throw bad(`unexpected ${JSON.stringify(text[scanned.end])} at position ${scanned.end + 1}`);
  const { parts } = scanned;
  if (parts.length === 1) return { schema: "public", name: parts[0] as string };
  if (parts.length === 2) return { schema: parts[0] as string, name: parts[1] as string };
  throw bad("use at most schema.name");
}

/** An identifier, always quoted: valid whatever its case, characters or keyword status. */
export function quoted(id: string): string {
  return `"${id.replaceAll('"', '""')}"`;
}

export function qualified(t: TableName): string {
  return `${quoted(t.schema)}.${quoted(t.name)}`;
}

/** Shown to people: an identifier, quoted only when it is not plain lower case. */
export function shown(id: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(id) ? id : quoted(id);
}

/** Shown to people: schema.name, each part quoted only when it is not plain lower case. */
export function displayName(t: TableName): string {
  return `${shown(t.schema)}.${shown(t.name)}`;
}
