import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { type Transform, Writable } from "node:stream";
import type pg from "pg";
import type { BackupStats } from "#core/backup-stats.ts";
import { TargetNotEmptyError } from "#core/errors.ts";
import { schemaEntries } from "../pg/toc.ts";
import type { ToolProcess } from "../pg/tool-process.ts";
import { ArchiveStatsTap } from "../stages/archive-stats.ts";

/**
 * The one-schema restore (a tenant; `export-schema --target`, and export-schema's scratch
 * restore): what differs from a full restore, which `restore.ts` runs around it. The
 * schema itself, everything in it, its data, comments and grants are chosen from the
 * archive's TOC as it streams past (pg_restore's own -n restores the objects but not the
 * schema), into a target that must not have the schema yet.
 */

/** A target that already has the schema is refused: a restore never merges into one. */
export async function assertSchemaAbsent(client: pg.Client, schema: string, database: string): Promise<void> {
  const has = await client.query("select 1 from pg_namespace where nspname = $1", [schema]);
  if ((has.rowCount ?? 0) > 0) {
    throw new TargetNotEmptyError(`schema ${JSON.stringify(schema)} already exists in ${database}`, {
      hint: "restore the schema into a database that lacks it, or drop it there first",
    });
  }
}

/** The backup's tables in the schema: what the restored counts are compared with. */
export function schemaStats(stats: BackupStats, schema: string): BackupStats {
  return { ...stats, tables: stats.tables.filter((t) => t.schema === schema) };
}

/**
 * The selective path into pg_restore: a stage that, once the TOC has streamed past,
 * lists the schema's entries in a private temp file and starts pg_restore with
 * `--use-list` (`start`), and the sink that writes to that pg_restore once it runs.
 * `cleanup` removes the list file.
 */
export async function selectSchema(
  schema: string,
  start: (extraArgs: string[]) => ToolProcess,
  started: () => ToolProcess | undefined,
): Promise<{ select: Transform; sink: Writable; cleanup: () => Promise<void> }> {
  const listDir = await mkdtemp(path.join(tmpdir(), "strongroom-list-"));
  const listFile = path.join(listDir, "list");
  const select = new ArchiveStatsTap({
    onToc: async (entries) => {
      const chosen = schemaEntries(entries, schema);
      await writeFile(listFile, `${chosen.map((e) => `${e.dumpId};`).join("\n")}\n`, { mode: 0o600 });
      start([`--use-list=${listFile}`]);
      return new Set();
    },
    write: async () => undefined,
  });
  return {
    select,
    sink: laterStdin(started),
    cleanup: () => rm(listDir, { recursive: true, force: true }),
  };
}

/**
 * pg_restore's stdin, once it has been started; each write waits until the pipe took it.
 * A selective pg_restore closes its input once it has what it wants: the rest of the
 * dump is then read on (the stream's checks still run) and dropped, and pg_restore's own
 * exit code says whether it succeeded.
 */
function laterStdin(proc: () => ToolProcess | undefined): Writable {
  let closed = false;
  const stdin = () => {
    const s = proc()?.child.stdin;
    if (!s) throw new Error("pg_restore has not started");
    // A pipe closed by a pg_restore that exited arrives through the write callback; the
    // stream's own 'error' event must not go unheard.
    if (s.listenerCount("error") === 0) s.on("error", () => undefined);
    return s;
  };
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (closed) {
        callback();
        return;
      }
      try {
        stdin().write(chunk, (err) => {
          if ((err as NodeJS.ErrnoException | null | undefined)?.code === "EPIPE") {
            closed = true;
            callback();
          } else callback(err ?? undefined);
        });
      } catch (err) {
        callback(err as Error);
      }
    },
    final(callback) {
      if (closed) {
        callback();
        return;
      }
      try {
        stdin().end(() => callback());
      } catch (err) {
        callback(err as Error);
      }
    },
  });
}
