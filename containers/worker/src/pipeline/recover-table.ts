import { once } from "node:events";
import { Writable } from "node:stream";
import { finished, pipeline } from "node:stream/promises";
import type pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { auditedJob } from "#core/audit/audit-log.ts";
import { parseStats } from "#core/backup-stats.ts";
import {
  AccessDeniedError,
  AlreadyExistsError,
  NotFoundError,
  RowCountMismatchError,
  TableNotFoundError,
} from "#core/errors.ts";
import { type Manifest, manifestObject } from "#core/manifest.ts";
import { connect, describeConn, type PgConn } from "../pg/conn.ts";
import { displayName, qualified, quoted, scanIdentifiers, type TableName } from "../pg/table-name.ts";
import { ArchiveStatsTap, type TocEntry } from "../stages/archive-stats.ts";
import type { BackupJobOptions } from "./backup-job.ts";
import { assertMatches, assertStoredSize, dumpStages, getSealed, naming } from "./sealed-object.ts";

export interface RecoverTableOptions extends BackupJobOptions {
  tables: TableName[];
  target: PgConn;
  /** @default "_recovered" */
  suffix?: string;
}

export interface RecoveredTable {
  table: string;
  recovered: string;
  rows: number;
  /** Data blocks loaded: 1, or one per partition of a partitioned table. */
  blocks: number;
  /** Column defaults not recovered (they draw on a sequence the recovered table must not share). */
  skippedDefaults: string[];
  /** SQL a person can adapt to put rows back; never run by strongroom. */
  copyBack: string[];
}

export interface RecoverTableResult {
  databaseId: string;
  backupId: string;
  target: string;
  tables: RecoveredTable[];
  seconds: number;
}

/**
 * Gets tables back from a backup without restoring the database: streams the dump once
 * (nothing plain touches disk), creates `<name><suffix>` beside each original in the
 * target from the archive's own definition (columns, defaults that need no sequence,
 * check constraints; no foreign keys, triggers, indexes or inheritance that would reach
 * live tables), and loads the table's COPY block(s) into it, all in one transaction that
 * commits only when the stored bytes are the committed ones and every row count matches
 * the backup's. The original table is never touched.
 */
export async function recoverTables(options: RecoverTableOptions): Promise<RecoverTableResult> {
  const started = performance.now();
  const { manifest } = options.backup;
  options.log.info("recovering tables", {
    databaseId: manifest.databaseId,
    backupId: manifest.backupId,
    tables: options.tables.length,
    target: describeConn(options.target),
  });
  return auditedJob(
    {
      log: options.audit,
      kind: "restore",
      job: { actor: options.actor ?? "cli", databaseId: manifest.databaseId, backupId: manifest.backupId },
      now: options.now ?? (() => new Date()),
      // The count of tables, not their names: names are schema data.
      start: {
        kind: "table",
        tables: options.tables.length,
        target: describeConn(options.target),
        manifestSha256: options.backup.sha256,
      },
      ok: (r) => ({ kind: "table", tables: r.tables.length, rows: r.tables.reduce((n, t) => n + t.rows, 0) }),
    },
    () => recover(options, manifest, started),
  );
}

async function recover(options: RecoverTableOptions, manifest: Manifest, started: number): Promise<RecoverTableResult> {
  const suffix = options.suffix ?? "_recovered";
  const statsEntry = manifestObject(manifest, "stats");
  const stats = parseStats(
    (await getSealed(options.store, statsEntry, options.identities)).toString("utf8"),
    statsEntry.key,
  );
  const client = await connect(options.target, "strongroom-recover");
  const plans: TablePlan[] = [];
  let inTransaction = false;
  try {
    await checkTarget(client, options.tables, suffix);
    const sink = new CopySink(client);
    // A failure on the target's side (no such table in the backup, a COPY refused) is
    // reported as it is; one of the stream's is named after the dump object.
    let targetSide: unknown;
    const onTarget = async <T>(work: () => Promise<T>): Promise<T> => {
      try {
        return await work();
      } catch (err) {
        targetSide = err;
        throw err;
      }
    };
    const planByBlock = new Map<number, TablePlan>();
    const tap = new ArchiveStatsTap({
      onToc: (entries) =>
        onTarget(async () => {
          const toc = new Toc(entries);
          for (const table of options.tables) plans.push(toc.plan(table, suffix, stats.tables));
          await client.query("begin");
          inTransaction = true;
          for (const plan of plans) await create(client, plan);
          // Each captured chunk finds its table by the block's dump id.
          for (const plan of plans) for (const e of plan.dataEntries) planByBlock.set(e.dumpId, plan);
          return new Set(planByBlock.keys());
        }),
      write: (entry, data) => onTarget(() => sink.write(entry, planByBlock.get(entry.dumpId) as TablePlan, data)),
    });
    const dump = manifestObject(manifest, "dump");
    await assertStoredSize(options.store, dump);
    const stages = dumpStages(options.store, dump, options.identities, {
      signal: options.signal,
      log: options.log,
      framesInFlight: 1,
    });
    const { stored } = stages;
    let plainBytes = 0;
    const signal = options.signal ? { signal: options.signal } : {};
    const stream = async () =>
      pipeline(
        stages.read,
        stored,
        stages.decrypt,
        stages.decompress,
        tap,
        new Writable({
          write(chunk: Buffer, _encoding, callback) {
            plainBytes += chunk.length;
            options.onProgress?.(plainBytes, dump.plainBytes);
            callback();
          },
        }),
        signal,
      );
    await stream().catch(async (err: unknown) => {
      if (err === targetSide) throw err;
      return naming(dump, () => Promise.reject(err));
    });
    await sink.end();
    // Only the committed bytes may be committed: the whole stored object must be the one
    // the manifest names before the transaction that loaded it commits.
    assertMatches(dump, stored.result());
    const tables: RecoveredTable[] = [];
    for (const plan of plans) tables.push(await checked(client, plan));
    await client.query("commit");
    inTransaction = false;
    const result: RecoverTableResult = {
      databaseId: manifest.databaseId,
      backupId: manifest.backupId,
      target: describeConn(options.target),
      tables,
      seconds: (performance.now() - started) / 1000,
    };
    options.log.info("tables recovered", {
      databaseId: manifest.databaseId,
      backupId: manifest.backupId,
      tables: tables.length,
      rows: tables.reduce((n, t) => n + t.rows, 0),
    });
    return result;
  } catch (err) {
    if (inTransaction) await client.query("rollback").catch(() => undefined);
    throw mapPgError(err);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** What the archive says about one table to recover. */
interface TablePlan {
  table: TableName;
  recovered: TableName;
  /** CREATE TABLE (renamed, without PARTITION BY and INHERITS), then defaults and checks. */
  statements: string[];
  skippedDefaults: string[];
  /** The TABLE DATA entries that hold its rows: its own, or its partitions'. */
  dataEntries: TocEntry[];
  expectedRows: number;
  primaryKey: string[] | undefined;
  /** The columns its COPY blocks name (generated columns are not among them). */
  columns: string | undefined;
}

const same = (a: TableName, b: TableName) => a.schema === b.schema && a.name === b.name;

/** The table of contents, read for recover-table. */
class Toc {
  private readonly entries: TocEntry[];

  constructor(entries: TocEntry[]) {
    this.entries = entries;
  }

  plan(
    table: TableName,
    suffix: string,
    dumpTimeTables: ReadonlyArray<{ schema: string; table: string; rows: number }>,
  ): TablePlan {
    const entry = this.entries.find((e) => e.desc === "TABLE" && e.namespace === table.schema && e.tag === table.name);
    if (!entry) throw this.notFound(table);
    const recovered = { schema: table.schema, name: `${table.name}${suffix}` };
    const create = renameIn(entry.defn, table, recovered)
      // A partitioned table comes back as one plain table holding its partitions' rows.
      .replace(/\)\s*PARTITION BY [^;]*;/, ");")
      // Inheriting from a live parent would make the recovered rows appear in its queries.
      .replace(/\)\s*INHERITS \([^;]*\);/, ");");
    const statements = [create];
    const skippedDefaults: string[] = [];
    for (const e of this.entries) {
      if (!targets(e.defn, table)) continue;
      if (e.desc === "DEFAULT") {
        if (/nextval\(/.test(e.defn)) skippedDefaults.push(e.tag.slice(table.name.length + 1) || e.tag);
        else statements.push(renameIn(e.defn, table, recovered));
      } else if (e.desc === "CHECK CONSTRAINT") {
        statements.push(renameIn(e.defn, table, recovered));
      }
    }
    const members = [table, ...this.partitionsOf(table)];
    const dataEntries = this.entries.filter(
      (e) => e.desc === "TABLE DATA" && members.some((m) => m.schema === e.namespace && m.name === e.tag),
    );
    const expectedRows = members.reduce(
      (n, m) => n + (dumpTimeTables.find((t) => t.schema === m.schema && t.table === m.name)?.rows ?? 0),
      0,
    );
    const pk = this.entries.find(
      (e) => e.desc === "CONSTRAINT" && targets(e.defn, table) && /PRIMARY KEY \(/.test(e.defn),
    );
    const columns = dataEntries[0] ? columnList(dataEntries[0].copyStmt) : undefined;
    return {
      table,
      recovered,
      statements,
      skippedDefaults,
      dataEntries,
      expectedRows,
      primaryKey: pk ? (/PRIMARY KEY \((.*)\)/.exec(pk.defn)?.[1] ?? "").split(", ") : undefined,
      columns,
    };
  }

  /** Every partition below a partitioned table, from the archive's ATTACH PARTITION entries. */
  private partitionsOf(parent: TableName): TableName[] {
    const out: TableName[] = [];
    for (const e of this.entries) {
      if (e.desc !== "TABLE ATTACH") continue;
      const m = /^ALTER TABLE ONLY (.*)$/m.exec(e.defn);
      const attach = /ATTACH PARTITION (.*)$/m.exec(e.defn);
      if (!m?.[1] || !attach?.[1]) continue;
      const p = nameAt(m[1], 0);
      const child = nameAt(attach[1], 0);
      if (p && child && same(p, parent)) out.push(child, ...this.partitionsOf(child));
    }
    return out;
  }

  private notFound(table: TableName): TableNotFoundError {
    const names = this.entries.filter((e) => e.desc === "TABLE").map((e) => ({ schema: e.namespace, name: e.tag }));
    const close = names
      .filter(
        (n) =>
          n.name === table.name ||
          n.name.toLowerCase().includes(table.name.toLowerCase()) ||
          table.name.toLowerCase().includes(n.name.toLowerCase()) ||
          distance(n.name.toLowerCase(), table.name.toLowerCase()) <= 2,
      )
      .slice(0, 5)
      .map(displayName);
    return new TableNotFoundError(`table ${displayName(table)} is not in this backup`, {
      hint: close.length
        ? `close matches in the backup: ${close.join(", ")}`
        : 'check the schema and the spelling (quote parts with capitals: \'"Sales"."Orders"\')',
    });
  }
}

/** A schema-qualified name at `pos` in pg_dump's SQL, or undefined. */
function nameAt(sql: string, pos: number): TableName | undefined {
  const scanned = scanIdentifiers(sql, pos);
  if ("error" in scanned || scanned.parts.length !== 2) return undefined;
  return { schema: scanned.parts[0] as string, name: scanned.parts[1] as string };
}

const STATEMENT_HEADS = /(CREATE (?:UNLOGGED )?TABLE |ALTER TABLE (?:ONLY )?|COPY )/g;

/** Whether pg_dump's statement is about `table` (CREATE/ALTER TABLE or COPY naming it). */
function targets(sql: string, table: TableName): boolean {
  for (const m of sql.matchAll(STATEMENT_HEADS)) {
    const name = nameAt(sql, (m.index ?? 0) + m[0].length);
    if (name && same(name, table)) return true;
  }
  return false;
}

/**
 * Renames `from` to `to` where pg_dump's statements name the table (CREATE TABLE, ALTER
 * TABLE [ONLY], COPY), found by reading the identifier chain, whatever its quoting.
 */
function renameIn(sql: string, from: TableName, to: TableName): string {
  let out = "";
  let last = 0;
  for (const m of sql.matchAll(STATEMENT_HEADS)) {
    const at = (m.index ?? 0) + m[0].length;
    const scanned = scanIdentifiers(sql, at);
    if ("error" in scanned || scanned.parts.length !== 2) continue;
    if (scanned.parts[0] !== from.schema || scanned.parts[1] !== from.name) continue;
    out += `${sql.slice(last, at)}${qualified(to)}`;
    last = scanned.end;
  }
  return out + sql.slice(last);
}

/** `(a, b, c)` of `COPY s.t (a, b, c) FROM stdin;`. */
function columnList(copyStmt: string): string | undefined {
  const head = /^COPY /.exec(copyStmt);
  if (!head) return undefined;
  const scanned = scanIdentifiers(copyStmt, head[0].length);
  if ("error" in scanned) return undefined;
  const rest = copyStmt.slice(scanned.end);
  const m = /^\s*(\(.*\))\s+FROM stdin;/s.exec(rest);
  return m?.[1];
}

async function checkTarget(client: pg.Client, tables: TableName[], suffix: string): Promise<void> {
  for (const t of tables) {
    const schema = await client.query("select 1 from pg_namespace where nspname = $1", [t.schema]);
    if (schema.rowCount === 0) {
      throw new NotFoundError(`schema ${quoted(t.schema)} does not exist on the target`, {
        hint: "recover into the database the table belongs to, or create the schema first",
      });
    }
    const name = `${t.name}${suffix}`;
    const exists = await client.query(
      "select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and c.relname = $2",
      [t.schema, name],
    );
    if ((exists.rowCount ?? 0) > 0) {
      throw new AlreadyExistsError(`${displayName({ schema: t.schema, name })} already exists on the target`, {
        hint: "drop or rename it (it may hold an earlier recovery), or choose another --suffix",
      });
    }
  }
}

async function create(client: pg.Client, plan: TablePlan): Promise<void> {
  for (const statement of plan.statements) await client.query(statement);
}

/** One COPY FROM STDIN at a time on the one connection, switched per data block. */
class CopySink {
  private readonly client: pg.Client;
  private current: { dumpId: number; stream: ReturnType<typeof copyFrom> } | undefined;

  constructor(client: pg.Client) {
    this.client = client;
  }

  async write(entry: TocEntry, plan: TablePlan, data: Buffer): Promise<void> {
    if (this.current?.dumpId !== entry.dumpId) {
      await this.end();
      const columns = columnList(entry.copyStmt) ?? "";
      const stream = this.client.query(copyFrom(`COPY ${qualified(plan.recovered)} ${columns} FROM STDIN`));
      this.current = { dumpId: entry.dumpId, stream };
    }
    const { stream } = this.current as { stream: ReturnType<typeof copyFrom> };
    if (!stream.write(data)) await once(stream, "drain");
  }

  async end(): Promise<void> {
    const current = this.current;
    this.current = undefined;
    if (!current) return;
    current.stream.end();
    await finished(current.stream);
  }
}

/** Counts the recovered rows in the open transaction; a difference rolls everything back. */
async function checked(client: pg.Client, plan: TablePlan): Promise<RecoveredTable> {
  const { rows } = await client.query<{ n: string }>(`select count(*)::text as n from ${qualified(plan.recovered)}`);
  const n = Number(rows[0]?.n ?? 0);
  if (n !== plan.expectedRows) {
    throw new RowCountMismatchError(
      `${displayName(plan.recovered)} holds ${n} rows; the backup had ${plan.expectedRows} in ${displayName(plan.table)}`,
      { hint: "nothing was kept (the recovery rolled back); the backup may be damaged: try another" },
    );
  }
  return {
    table: displayName(plan.table),
    recovered: displayName(plan.recovered),
    rows: n,
    blocks: plan.dataEntries.length,
    skippedDefaults: plan.skippedDefaults,
    copyBack: copyBack(plan),
  };
}

/** Templates to adapt, never run: insert what is missing by primary key, or swap the tables. */
function copyBack(plan: TablePlan): string[] {
  const live = qualified(plan.table);
  const rec = qualified(plan.recovered);
  const cols = plan.columns ?? "";
  const select = cols
    ? cols
        .slice(1, -1)
        .split(", ")
        .map((c) => `r.${c}`)
        .join(", ")
    : "r.*";
  const key = plan.primaryKey?.length
    ? plan.primaryKey.map((c) => `o.${c} = r.${c}`).join(" AND ")
    : "o.<key> = r.<key>";
  const how = plan.primaryKey?.length
    ? "-- put back the rows that are missing, by primary key"
    : "-- put back the rows that are missing (the backup has no primary key: choose the columns that identify a row)";
  return [
    `${how}\nINSERT INTO ${live} ${cols}\nSELECT ${select} FROM ${rec} r\nWHERE NOT EXISTS (SELECT 1 FROM ${live} o WHERE ${key});`,
    `-- or swap the tables (foreign keys, triggers, indexes and grants are not on the recovered one)\nBEGIN;\nALTER TABLE ${live} RENAME TO ${quoted(`${plan.table.name}_before_recovery`)};\nALTER TABLE ${rec} RENAME TO ${quoted(plan.table.name)};\nCOMMIT;`,
  ];
}

function mapPgError(err: unknown): unknown {
  const e = err as { code?: string; message?: string };
  if (e?.code === "42501") {
    return new AccessDeniedError(`permission denied on the target: ${e.message}`, {
      cause: err,
      hint: "the target role needs CREATE on the table's schema",
    });
  }
  return err;
}

/** Levenshtein distance, for close matches of short names. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const here = row[j] as number;
      row[j] = Math.min((row[j] as number) + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = here;
    }
  }
  return row[b.length] as number;
}
