/**
 * Splits a file of SQL statements on the semicolons PostgreSQL itself would split on:
 * none inside a quoted string ('…', E'…' with backslash escapes), a quoted identifier
 * ("…"), a dollar-quoted body ($tag$…$tag$), a line comment (--) or a block comment
 * (/* … *\/, nested as PostgreSQL nests them). `verify --checks` runs each statement on
 * its own and names the one that fails by its line.
 */
export interface SqlStatement {
  /** The statement's text, without its semicolon, trimmed. */
  sql: string;
  /** The 1-based line its first token is on. */
  line: number;
}

const IDENT_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/;
const DOLLAR_TAG = /^\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/;

export function splitStatements(text: string): SqlStatement[] {
  const out: SqlStatement[] = [];
  /** Where the current statement's first token is, once one has been seen. */
  let first = -1;
  let i = 0;
  const n = text.length;
  const push = (end: number) => {
    if (first >= 0) {
      out.push({ sql: text.slice(first, end).trim(), line: lineOf(text, first) });
    }
    first = -1;
  };
  while (i < n) {
    const ch = text[i] as string;
    const next = text[i + 1];
    if (ch === "-" && next === "-") {
      const eol = text.indexOf("\n", i);
      i = eol < 0 ? n : eol + 1;
      continue;
    }
    if (ch === "/" && next === "*") {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (text[i] === "/" && text[i + 1] === "*") {
          depth++;
          i += 2;
        } else if (text[i] === "*" && text[i + 1] === "/") {
          depth--;
          i += 2;
        } else i++;
      }
      continue;
    }
    if (/\s/.test(ch)) {
      i++;
      continue;
    }
    if (ch === ";") {
      push(i);
      i++;
      continue;
    }
    if (first < 0) first = i;
    if (ch === "'") {
      // E'…' (or e'…') takes backslash escapes; a plain '…' only doubles quotes.
      const escapes = i > 0 && /[Ee]/.test(text[i - 1] as string) && !(i > 1 && IDENT_CHAR.test(text[i - 2] as string));
      i = skipQuoted(text, i + 1, "'", escapes);
      continue;
    }
    if (ch === '"') {
      i = skipQuoted(text, i + 1, '"', false);
      continue;
    }
    if (ch === "$" && !(i > 0 && IDENT_CHAR.test(text[i - 1] as string))) {
      const tag = DOLLAR_TAG.exec(text.slice(i, i + 64))?.[0];
      if (tag) {
        const close = text.indexOf(tag, i + tag.length);
        i = close < 0 ? n : close + tag.length;
        continue;
      }
    }
    i++;
  }
  if (first >= 0) push(n);
  return out;
}

/** The index just past the closing quote (or the end of the text when unterminated). */
function skipQuoted(text: string, from: number, quote: string, backslashEscapes: boolean): number {
  let i = from;
  while (i < text.length) {
    const ch = text[i];
    if (backslashEscapes && ch === "\\") {
      i += 2;
      continue;
    }
    if (ch === quote) {
      if (text[i + 1] === quote) {
        i += 2;
        continue;
      }
      return i + 1;
    }
    i++;
  }
  return i;
}

function lineOf(text: string, index: number): number {
  let line = 1;
  for (let i = 0; i < index; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}
