import { NotFoundError, RestoreFailedError } from "#core/errors.ts";
import type { TocEntry } from "../stages/archive-stats.ts";
import { scanIdentifiers, type TableName } from "./table-name.ts";

/**
 * Choosing entries from a pg_dump archive's table of contents (restore's --schema,
 * recover-table). An entry is chosen by its type, schema and name as pg_dump recorded
 * them, and by the dependencies pg_dump recorded between entries, never by reading or
 * editing the SQL it holds: that SQL is only ever run as pg_dump wrote it, by pg_restore.
 */

/**
 * The entries of one schema, in TOC order: the schema, every object in it (with its
 * data, comments and grants), and the comments, labels and grants on the schema itself.
 * A schema that is not in the backup is refused, naming those that are.
 */
export function schemaEntries(entries: TocEntry[], schema: string): TocEntry[] {
  if (!entries.some((e) => e.desc === "SCHEMA" && e.tag === schema)) {
    const schemas = entries.filter((e) => e.desc === "SCHEMA").map((e) => e.tag);
    throw new NotFoundError(`schema ${JSON.stringify(schema)} is not in this backup`, {
      hint: `schemas in the backup: ${schemas.join(", ") || "none but public"}`,
    });
  }
  const onSchema = new Set([`SCHEMA ${schema}`, `SCHEMA "${schema.replaceAll('"', '""')}"`]);
  return entries.filter(
    (e) =>
      (e.desc === "SCHEMA" && e.tag === schema) ||
      e.namespace === schema ||
      (e.namespace === "" && onSchema.has(e.tag)),
  );
}

/** The TABLE entry of `table`, or undefined when the archive has none. */
export function tableEntry(entries: TocEntry[], table: TableName): TocEntry | undefined {
  return entries.find((e) => e.desc === "TABLE" && e.namespace === table.schema && e.tag === table.name);
}

/** The table an entry names (a TABLE entry's schema and name). */
export function nameOf(entry: TocEntry): TableName {
  return { schema: entry.namespace, name: entry.tag };
}

/** The entries of the given types that depend on `on`, in TOC order. */
export function dependentsOf(entries: TocEntry[], on: TocEntry, descs: ReadonlySet<string>): TocEntry[] {
  return entries.filter((e) => descs.has(e.desc) && e.deps.includes(on.dumpId));
}

/**
 * `roots` and everything they depend on, transitively, in TOC order: the order pg_dump
 * sorted the archive in, so that each entry comes after what it needs. pg_restore -L
 * runs a list in the list's order, so this is the order to list them in.
 */
export function withDependencies(entries: TocEntry[], roots: TocEntry[]): TocEntry[] {
  const byId = new Map(entries.map((e) => [e.dumpId, e]));
  const chosen = new Set<number>();
  const stack = roots.map((r) => r.dumpId);
  for (let id = stack.pop(); id !== undefined; id = stack.pop()) {
    if (chosen.has(id)) continue;
    chosen.add(id);
    for (const dep of byId.get(id)?.deps ?? []) if (!chosen.has(dep)) stack.push(dep);
  }
  return entries.filter((e) => chosen.has(e.dumpId));
}

/**
 * Every partition below a partitioned table, at any depth, from the archive's TABLE
 * ATTACH entries. pg_dump records each one under the partition's schema and name, with
 * two dependencies: the partition's TABLE entry and its parent's.
 */
export function partitionsOf(entries: TocEntry[], parent: TocEntry): TocEntry[] {
  const byId = new Map(entries.map((e) => [e.dumpId, e]));
  const out: TocEntry[] = [];
  const below = (table: TocEntry) => {
    for (const attach of entries) {
      if (attach.desc !== "TABLE ATTACH" || !attach.deps.includes(table.dumpId)) continue;
      const tables = attach.deps.map((id) => byId.get(id)).filter((e): e is TocEntry => e?.desc === "TABLE");
      const partition = tables.find((t) => t.namespace === attach.namespace && t.tag === attach.tag);
      const parents = tables.filter((t) => t !== partition);
      // Another shape would be misread; rows quietly left out would pass the count check.
      if (!partition || parents.length !== 1) {
        throw new RestoreFailedError(
          `the archive's TABLE ATTACH entry ${attach.dumpId} does not name one partition and one parent`,
          { hint: "the backup was written by a pg_dump strongroom does not know; restore it whole instead" },
        );
      }
      if (parents[0] !== table) continue;
      out.push(partition);
      below(partition);
    }
  };
  below(parent);
  return out;
}

/** The TABLE DATA entries that hold a table's own rows (one, or none when it has no data entry). */
export function dataEntriesOf(entries: TocEntry[], table: TocEntry): TocEntry[] {
  return entries.filter((e) => e.desc === "TABLE DATA" && e.deps.includes(table.dumpId));
}

/**
 * The columns of a TABLE DATA entry's `COPY schema.name (a, "B c") FROM stdin;`, in the
 * order its rows hold them, read as identifiers (quoting undone), so that whoever loads
 * the rows names each column itself, quoted its own way. pg_dump writes no column list
 * for a table without columns. Anything else is refused, not guessed at.
 */
export function copyColumns(entry: TocEntry): string[] {
  const text = entry.copyStmt;
  const refuse = (why: string) =>
    new RestoreFailedError(`the archive's COPY statement for entry ${entry.dumpId} ${why}`, {
      hint: "the backup was written by a pg_dump strongroom does not know; restore it whole instead",
    });
  const head = "COPY ";
  if (!text.startsWith(head)) throw refuse("does not start with COPY");
  const table = scanIdentifiers(text, head.length);
  if ("error" in table || table.parts.length !== 2) throw refuse("does not name a table as schema.name");
  let i = table.end;
  while (text[i] === " ") i++;
  const columns: string[] = [];
  if (text[i] === "(") {
    i++;
    for (;;) {
      const column = scanIdentifiers(text, i);
      if ("error" in column || column.parts.length !== 1) throw refuse("has a column list that does not parse");
      columns.push(column.parts[0] as string);
      i = column.end;
      if (text.startsWith(", ", i)) {
        i += 2;
        continue;
      }
      if (text[i] !== ")") throw refuse("has a column list that does not parse");
      i++;
      break;
    }
  }
  if (text.slice(i).trim() !== "FROM stdin;") throw refuse("does not end in FROM stdin");
  return columns;
}

/** What restoring without some extensions leaves out: see `withoutExtensions`. */
export interface Exclusion {
  /** The extensions left out that the archive holds, in TOC order. */
  extensions: string[];
  /** Every entry left out: the extensions', their dependents' and their configuration rows. */
  entries: TocEntry[];
  /** The entries restored, in TOC order. */
  kept: TocEntry[];
}

/**
 * The archive without the named extensions and everything that depends on them, through
 * the dependencies pg_dump recorded: it records a use of an extension's member (a type,
 * a function, an operator class) as a dependency on the EXTENSION entry itself, so a
 * table with a column of its type, a view or index calling its functions, a function
 * taking its type, and whatever depends on those in turn, all go; the rest restores as
 * dumped. The SQL is never read to decide. An extension's configuration rows (data
 * entries of relations the extension creates, whose table entry is not in the archive)
 * go too: `config` names them, from the backup's record, since the archive cannot.
 */
export function withoutExtensions(
  entries: TocEntry[],
  names: readonly string[],
  config: ReadonlyMap<string, ReadonlyArray<{ schema: string; name: string }>>,
): Exclusion {
  const skipped = entries.filter((e) => e.desc === "EXTENSION" && names.includes(e.tag));
  const out = new Set(skipped.map((e) => e.dumpId));
  const present = new Set(entries.map((e) => e.dumpId));
  for (const ext of skipped) {
    const relations = new Set((config.get(ext.tag) ?? []).map((r) => `${r.schema}\0${r.name}`));
    for (const e of entries) {
      const ofMember = e.deps.some((d) => !present.has(d));
      if (ofMember && relations.has(`${e.namespace}\0${e.tag}`) && /^(TABLE DATA|SEQUENCE SET)$/.test(e.desc)) {
        out.add(e.dumpId);
      }
    }
  }
  // TOC order puts each entry after what it depends on, so one pass usually settles it;
  // repeat until nothing changes rather than rely on that.
  for (let grew = out.size > 0; grew; ) {
    grew = false;
    for (const e of entries) {
      if (!out.has(e.dumpId) && e.deps.some((d) => out.has(d))) {
        out.add(e.dumpId);
        grew = true;
      }
    }
  }
  return {
    extensions: skipped.map((e) => e.tag),
    entries: entries.filter((e) => out.has(e.dumpId)),
    kept: entries.filter((e) => !out.has(e.dumpId)),
  };
}
