import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { type Transform, Writable } from "node:stream";
import type { ToolProcess } from "../pg/tool-process.ts";
import { ArchiveStatsTap, type TocEntry } from "../stages/archive-stats.ts";

/**
 * A restore of some of the archive's entries (one schema; everything but some
 * extensions): pg_restore's `--use-list`, written once the archive's TOC has streamed
 * past, from the entries `choose` picks. The list names entries by dump id only, so the
 * SQL in them is never read or edited here: pg_restore runs each as pg_dump wrote it.
 */
export type ChooseEntries = (entries: TocEntry[]) => TocEntry[];

/** A private (0700) directory for the list file; `cleanup` removes it. */
async function listFile(): Promise<{ file: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), "strongroom-list-"));
  return { file: path.join(dir, "list"), cleanup: () => rm(dir, { recursive: true, force: true }) };
}

async function writeList(file: string, chosen: TocEntry[]): Promise<void> {
  // In TOC order: pg_restore runs a list in the list's order, and pg_dump sorted the
  // archive so that each entry comes after what it needs.
  await writeFile(file, `${chosen.map((e) => `${e.dumpId};`).join("\n")}\n`, { mode: 0o600 });
}

/**
 * The streaming path (one pg_restore reading stdin): a stage that, once the TOC has
 * streamed past, lists the chosen entries and starts pg_restore with `--use-list`
 * (`start`), and the sink that writes to that pg_restore once it runs.
 */
export async function listedStream(
  choose: ChooseEntries,
  start: (extraArgs: string[]) => ToolProcess,
  started: () => ToolProcess | undefined,
): Promise<{ select: Transform; sink: Writable; cleanup: () => Promise<void> }> {
  const { file, cleanup } = await listFile();
  const select = new ArchiveStatsTap({
    onToc: async (entries) => {
      await writeList(file, choose(entries));
      start([`--use-list=${file}`]);
      return new Set();
    },
    write: async () => undefined,
  });
  return { select, sink: laterStdin(started), cleanup };
}

/**
 * The staged path (pg_restore -j reads a file): a stage that reads the TOC as the
 * archive is staged and chooses the entries, and `args()` for pg_restore once staging
 * is done, which writes the list.
 */
export async function listedFile(
  choose: ChooseEntries,
): Promise<{ select: ArchiveStatsTap; args: () => Promise<string[]>; cleanup: () => Promise<void> }> {
  const { file, cleanup } = await listFile();
  let chosen: TocEntry[] | undefined;
  const select = new ArchiveStatsTap({
    onToc: async (entries) => {
      chosen = choose(entries);
      return new Set();
    },
    write: async () => undefined,
  });
  return {
    select,
    args: async () => {
      if (!chosen) throw new Error("the archive's table of contents was never read");
      await writeList(file, chosen);
      return [`--use-list=${file}`];
    },
    cleanup,
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
