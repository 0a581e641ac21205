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
  RestoreFailedError,
  RowCountMismatchError,
  TableNotFoundError,
  UsageError,
} from "#core/errors.ts";
import { type Manifest, manifestObject } from "#core/manifest.ts";
import { findPgRestoreFor } from "../pg/binaries.ts";
import { connect, describeConn, type PgConn } from "../pg/conn.ts";
import { runOne } from "../pg/run-one.ts";
import { serverInfo } from "../pg/server-info.ts";
import { readDefinitions, type TableDefinition } from "../pg/table-definitions.ts";
import { displayName, qualified, quoted, shown, type TableName } from "../pg/table-name.ts";
import {
  copyColumns,
  dataEntriesOf,
  dependentsOf,
  nameOf,
  partitionsOf,
  tableEntry,
  withDependencies,
} from "../pg/toc.ts";
import { ArchiveStatsTap, type TocEntry } from "../stages/archive-stats.ts";
import type { BackupJobOptions } from "./backup-job.ts";
import { assertMatches, assertStoredObject, assertStoredSize, dumpStages, getSealed, naming } from "./sealed-object.ts";

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
 *
 * The archive's SQL is never edited: pg_restore creates the tables' entries, as pg_dump
 * wrote them, in a scratch database, and the renamed copy is built from what the server
 * read back from there (pg/table-definitions.ts), every identifier quoted here and every
 * statement run alone (runOne), so no name, default or check can start a statement.
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
    const server = await serverInfo(client);
    const bin = await findPgRestoreFor(server, manifest.pgDump.version, options.env);
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
      onToc: (entries, head) =>
        onTarget(async () => {
          const found = options.tables.map((table) => findTable(entries, table, stats.tables));
          assertNoSharedRows(found);
          // The definitions come back from the server (pg/table-definitions.ts), before
          // the transaction: CREATE DATABASE cannot run inside one.
          const definitions = await readDefinitions({
            client,
            target: options.target,
            pgRestore: `${bin.dir}/pg_restore`,
            head,
            entries: withDependencies(
              entries,
              found.flatMap((f) => f.definedBy),
            ),
            tables: found.map((f) => f.table),
            ...(options.signal ? { signal: options.signal } : {}),
            ...(options.env ? { env: options.env } : {}),
          });
          found.forEach((f, i) => {
            plans.push(planFor(f, definitions[i] as TableDefinition, suffix));
          });
          await runOne(client, "begin");
          inTransaction = true;
          for (const plan of plans) await runOne(client, createStatement(plan));
          // Each captured chunk finds its table by the block's dump id.
          for (const plan of plans) for (const e of plan.dataEntries) planByBlock.set(e.dumpId, plan);
          return new Set(planByBlock.keys());
        }),
      write: (entry, data) => onTarget(() => sink.write(entry, planByBlock.get(entry.dumpId) as TablePlan, data)),
    });
    const dump = manifestObject(manifest, "dump");
    await assertStoredSize(options.store, dump);
    // As restore does: an older dump without a pinned age header is proven whole before
    // any of its TOC reaches a server (restore.ts says why).
    if (dump.storedHeadSha256 === undefined) {
      options.onPhase?.("downloading", { totalBytes: dump.storedBytes });
      await assertStoredObject(options.store, dump, options.signal, options.onProgress);
    }
    const stages = dumpStages(options.store, dump, options.identities, {
      signal: options.signal,
      log: options.log,
      framesInFlight: 1,
    });
    const { stored } = stages;
    let plainBytes = 0;
    const signal = options.signal ? { signal: options.signal } : {};
    // The whole archive streams past (the chosen tables' rows are loaded on the way): the
    // percent is of the archive.
    options.onPhase?.("restoring data", { totalBytes: dump.plainBytes });
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
    // A check the source never validated is added as pg_dump adds it, after the rows,
    // NOT VALID: the backup's rows may predate it.
    for (const plan of plans) for (const statement of notValidChecks(plan)) await runOne(client, statement);
    // Only the committed bytes may be committed: the whole stored object must be the one
    // the manifest names before the transaction that loaded it commits.
    assertMatches(dump, stored.result());
    const tables: RecoveredTable[] = [];
    options.onPhase?.("counting rows");
    for (const plan of plans) tables.push(await checked(client, plan));
    await runOne(client, "commit");
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
    if (inTransaction) await runOne(client, "rollback").catch(() => undefined);
    throw mapPgError(err);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** What the table of contents says about one table to recover. */
interface FoundTable {
  table: TableName;
  /** Its TABLE entry and the DEFAULT, CHECK CONSTRAINT and CONSTRAINT entries on it. */
  definedBy: TocEntry[];
  /** Its partitions at any depth, from the TABLE ATTACH entries. */
  partitions: TableName[];
  /** The TABLE DATA entries that hold its rows: its own, or its partitions'. */
  dataEntries: TocEntry[];
  expectedRows: number;
  /** TABLE entries that depend on it: its partitions, or its inheritance children. */
  dependentTables: number;
}

/** One table to recover: what the archive holds and how the server defined it. */
interface TablePlan extends FoundTable {
  recovered: TableName;
  definition: TableDefinition;
}

const DEFINING = new Set(["DEFAULT", "CHECK CONSTRAINT", "CONSTRAINT"]);
const TABLES = new Set(["TABLE"]);

function findTable(
  entries: TocEntry[],
  table: TableName,
  dumpTimeTables: ReadonlyArray<{ schema: string; table: string; rows: number }>,
): FoundTable {
  const entry = tableEntry(entries, table);
  if (!entry) throw notFound(entries, table);
  const partitions = partitionsOf(entries, entry);
  const members = [entry, ...partitions];
  return {
    table,
    // A CONSTRAINT entry (primary key, unique, exclusion) only gives the printed SQL its key.
    definedBy: [entry, ...dependentsOf(entries, entry, DEFINING)],
    partitions: partitions.map(nameOf),
    dependentTables: dependentsOf(entries, entry, TABLES).length,
    dataEntries: members.flatMap((m) => dataEntriesOf(entries, m)),
    expectedRows: members.reduce(
      (n, m) => n + (dumpTimeTables.find((t) => t.schema === m.namespace && t.table === m.tag)?.rows ?? 0),
      0,
    ),
  };
}

/**
 * Each data block is loaded by one COPY on the one connection, as it streams past: a
 * block two of the tables want (a partitioned table and its partition, or a table named
 * twice) could fill only one of them.
 */
function assertNoSharedRows(found: FoundTable[]): void {
  const owner = new Map<number, FoundTable>();
  for (const f of found) {
    for (const e of f.dataEntries) {
      const other = owner.get(e.dumpId);
      if (other) {
        throw new UsageError(
          other === f || same(other.table, f.table)
            ? `--table ${displayName(f.table)} is given twice`
            : `${displayName(other.table)} and ${displayName(f.table)} share rows (one is a partition of the other)`,
          { hint: "recover each in a run of its own (a partitioned table brings back all its partitions' rows)" },
        );
      }
      owner.set(e.dumpId, f);
    }
  }
}

const same = (a: TableName, b: TableName) => a.schema === b.schema && a.name === b.name;

function planFor(found: FoundTable, definition: TableDefinition, suffix: string): TablePlan {
  // A partitioned table's rows are all in its partitions. Tables that depend on it, none
  // of them attached by a TABLE ATTACH entry, are partitions recorded some other way:
  // leaving them out would recover an empty table whose count still matched.
  if (definition.partitioned && found.partitions.length === 0 && found.dependentTables > 0) {
    throw new RestoreFailedError(
      `the backup does not say which tables are partitions of ${displayName(found.table)} in a way strongroom reads`,
      { hint: "restore the backup whole (or the table's schema with export-schema) and copy the table from there" },
    );
  }
  return { ...found, definition, recovered: { schema: found.table.schema, name: `${found.table.name}${suffix}` } };
}

/**
 * The recovered table's CREATE TABLE, built from the definition the server read back:
 * each identifier quoted here, each type, default, generated expression and check as
 * the server wrote it. A plain table always: no PARTITION BY (it holds all its
 * partitions' rows), no INHERITS (a live parent's queries would see the recovered rows),
 * no default that draws on a sequence the original uses. Checks the source had
 * validated come with it; the others are added after the rows (notValidChecks).
 */
function createStatement(plan: TablePlan): string {
  const { definition } = plan;
  const items: string[] = [];
  for (const c of definition.columns) {
    let item = `${quoted(c.name)} ${c.type}`;
    if (c.collation) item += ` COLLATE ${quoted(c.collation.schema)}.${quoted(c.collation.name)}`;
    if (c.generated) item += ` GENERATED ALWAYS AS (${c.generated.expression})${c.generated.stored ? " STORED" : ""}`;
    else if (c.default !== undefined && !c.defaultUsesSequence) item += ` DEFAULT ${c.default}`;
    if (c.notNull) item += " NOT NULL";
    items.push(item);
  }
  for (const check of definition.checks) {
    if (check.validated) items.push(`CONSTRAINT ${quoted(check.name)} ${check.definition}`);
  }
  return `CREATE ${definition.unlogged ? "UNLOGGED " : ""}TABLE ${qualified(plan.recovered)} (${items.join(", ")})`;
}

function notValidChecks(plan: TablePlan): string[] {
  return plan.definition.checks
    .filter((check) => !check.validated)
    .map(
      (check) => `ALTER TABLE ${qualified(plan.recovered)} ADD CONSTRAINT ${quoted(check.name)} ${check.definition}`,
    );
}

function skippedDefaults(plan: TablePlan): string[] {
  return plan.definition.columns.filter((c) => c.default !== undefined && c.defaultUsesSequence).map((c) => c.name);
}

function notFound(entries: TocEntry[], table: TableName): TableNotFoundError {
  const names = entries.filter((e) => e.desc === "TABLE").map(nameOf);
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

async function checkTarget(client: pg.Client, tables: TableName[], suffix: string): Promise<void> {
  for (const t of tables) {
    const schema = await runOne<{ may: boolean }>(
      client,
      "select pg_catalog.has_schema_privilege(oid, 'CREATE') as may from pg_catalog.pg_namespace where nspname = $1",
      [t.schema],
    );
    if (!schema.rows[0]) {
      throw new NotFoundError(`schema ${quoted(t.schema)} does not exist on the target`, {
        hint: "recover into the database the table belongs to, or create the schema first",
      });
    }
    // Asked before anything is read or created, in the server's own words.
    if (!schema.rows[0].may) {
      throw new AccessDeniedError(`permission denied on the target: permission denied for schema ${shown(t.schema)}`, {
        hint: "the target role needs CREATE on the table's schema",
      });
    }
    const name = `${t.name}${suffix}`;
    const exists = await runOne(
      client,
      "select 1 from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and c.relname = $2",
      [t.schema, name],
    );
    if ((exists.rowCount ?? 0) > 0) {
      throw new AlreadyExistsError(`${displayName({ schema: t.schema, name })} already exists on the target`, {
        hint: "drop or rename it (it may hold an earlier recovery), or choose another --suffix",
      });
    }
  }
  const role = await runOne<{ may: boolean; name: string }>(
    client,
    "select rolcreatedb or rolsuper as may, rolname as name from pg_catalog.pg_roles where rolname = current_user",
  );
  if (!role.rows[0]?.may) {
    throw new AccessDeniedError(
      `permission denied on the target: role ${shown(role.rows[0]?.name ?? "")} may not create databases, and recover-table reads each table's definition back from a scratch database`,
      {
        hint: "grant it CREATEDB (the scratch database holds the tables' definitions only, never a row, and is dropped at once), or recover as a role that has it",
      },
    );
  }
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
      // pg-copy-streams sends COPY as a simple query, the one statement here that does
      // not go through runOne: its text is built only from names quoted here, the
      // columns read from the archive's COPY as identifiers, in the order its rows hold.
      const columns = copyColumns(entry);
      const list = columns.length > 0 ? ` (${columns.map(quoted).join(", ")})` : "";
      const stream = this.client.query(copyFrom(`COPY ${qualified(plan.recovered)}${list} FROM STDIN`));
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
  const { rows } = await runOne<{ n: string }>(client, `select count(*)::text as n from ${qualified(plan.recovered)}`);
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
    skippedDefaults: skippedDefaults(plan),
    copyBack: copyBack(plan),
  };
}

/** Templates to adapt, never run: insert what is missing by primary key, or swap the tables. */
function copyBack(plan: TablePlan): string[] {
  const live = qualified(plan.table);
  const rec = qualified(plan.recovered);
  // The columns the rows were loaded into (generated ones are computed again).
  const loaded = plan.definition.columns.filter((c) => !c.generated).map((c) => c.shown);
  const cols = loaded.length > 0 ? `(${loaded.join(", ")})` : "";
  const select = loaded.length > 0 ? loaded.map((c) => `r.${c}`).join(", ") : "r.*";
  const pk = plan.definition.primaryKey;
  const key = pk?.length ? pk.map((c) => `o.${c} = r.${c}`).join(" AND ") : "o.<key> = r.<key>";
  const how = pk?.length
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
