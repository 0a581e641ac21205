import { describe, expect, inject, it } from "vitest";
import { runCli } from "../helpers/cli.ts";
import { backedUpByCli, identityFile, newStore } from "../helpers/fixture.ts";
import { createDatabase, sql } from "../helpers/pg.ts";

const pgUrl = inject("pgUrl");

type Event = { message: string; phase?: string; state?: string } & Record<string, unknown>;

/** Every stderr line parsed: under --log-format json each one is a JSON document. */
function events(stderr: string): Event[] {
  return stderr
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as Event);
}

/** The phase events as `name state`, in order. */
const phases = (all: Event[]) =>
  all.filter((e) => e.message === "phase").map((e) => `${e.phase}${e.state ? ` ${e.state}` : ""}`);

const TABLE = "create table t as select g, md5(g::text) as v from generate_series(1, 20000) g; create index on t (v)";

/**
 * Issue 24, item 5: progress that tells the truth. A deployed task's log (JSON, not a
 * terminal) shows where a long job is: each phase's start and end, with bytes and percent
 * where the size is known. The progress line itself (terminal only) is drawn by
 * progress.ts and tested there.
 */
describe("progress", () => {
  it("restore logs its phases in order, the data's with its bytes and percent, and ends with done", async () => {
    // GIVEN a backup of a table with an index
    const { store, key } = await backedUpByCli(pgUrl, "progress", TABLE);
    const target = await createDatabase(pgUrl, "progress_target");
    // WHEN it is restored with JSON logs on a pipe
    const r = await runCli(["--log-format", "json", "restore", "--identity", key.file], {
      STRONGROOM_STORE: store.url,
      STRONGROOM_TARGET_URL: target.url,
    });
    // THEN the phases are named, data before indexes before the row counts
    expect(r.code, r.stderr).toBe(0);
    const all = events(r.stderr);
    expect(phases(all)).toEqual([
      "restoring data started",
      "restoring data finished",
      "building indexes started",
      "building indexes finished",
      "counting rows started",
      "counting rows finished",
      "done",
    ]);
    const { dumpBytes } = all.find((e) => e.message === "restore verified") as Event;
    expect(all.find((e) => e.phase === "restoring data" && e.state === "started")).toMatchObject({
      totalBytes: dumpBytes,
    });
    expect(all.find((e) => e.phase === "restoring data" && e.state === "finished")).toMatchObject({
      doneBytes: dumpBytes,
      totalBytes: dumpBytes,
      percent: 100,
      seconds: expect.any(Number),
    });
    expect(all.at(-1)).toMatchObject({ message: "phase", phase: "done", seconds: expect.any(Number) });
    // A pipe is not a terminal: no progress bar, no escape codes.
    expect(r.stderr).not.toContain("\x1b[");
  });

  it("restore --jobs names the download it stages, then data and indexes as one phase", async () => {
    const { store, key } = await backedUpByCli(pgUrl, "progress_jobs", TABLE);
    const target = await createDatabase(pgUrl, "progress_jobs_target");
    const r = await runCli(["--log-format", "json", "restore", "--identity", key.file, "--jobs", "2"], {
      STRONGROOM_STORE: store.url,
      STRONGROOM_TARGET_URL: target.url,
    });
    expect(r.code, r.stderr).toBe(0);
    const all = events(r.stderr);
    expect(phases(all).filter((p) => !p.endsWith(" finished"))).toEqual([
      "downloading started",
      "restoring data and building indexes started",
      "counting rows started",
      "done",
    ]);
    expect(all.find((e) => e.phase === "downloading" && e.state === "finished")).toMatchObject({ percent: 100 });
  });

  it("verify logs the restore's phases, then counting rows and the checks", async () => {
    const { store, key } = await backedUpByCli(pgUrl, "progress_verify", TABLE);
    // A scratch database on the test's server: no cluster of its own to start.
    const run = (jobs: string) =>
      runCli(["--log-format", "json", "verify", "--identity", key.file, "--scratch", pgUrl, "--jobs", jobs], {
        STRONGROOM_STORE: store.url,
      });
    const serial = await run("1");
    expect(serial.code, serial.stderr).toBe(0);
    expect(phases(events(serial.stderr)).filter((p) => !p.endsWith(" finished"))).toEqual([
      "preparing the scratch database started",
      "restoring data started",
      "building indexes started",
      "counting rows started",
      "checks started",
      "done",
    ]);
    // In parallel (verify's default from 4 cores): staged, then pg_restore -j.
    const parallel = await run("2");
    expect(parallel.code, parallel.stderr).toBe(0);
    expect(phases(events(parallel.stderr)).filter((p) => !p.endsWith(" finished"))).toEqual([
      "preparing the scratch database started",
      "downloading started",
      "restoring data and building indexes started",
      "counting rows started",
      "checks started",
      "done",
    ]);
  });

  it("recover-table logs the data streaming past with its percent, then the row counts", async () => {
    const { db, store, key } = await backedUpByCli(pgUrl, "progress_recover", TABLE);
    const r = await runCli(["--log-format", "json", "recover-table", "--identity", key.file, "--table", "public.t"], {
      STRONGROOM_STORE: store.url,
      STRONGROOM_TARGET_URL: db.url,
    });
    expect(r.code, r.stderr).toBe(0);
    const all = events(r.stderr);
    expect(phases(all).filter((p) => !p.endsWith(" finished"))).toEqual([
      "restoring data started",
      "counting rows started",
      "done",
    ]);
    expect(all.find((e) => e.phase === "restoring data" && e.state === "finished")).toMatchObject({ percent: 100 });
  });

  it("backup shows its size as an estimate, named as one: the database's at first, then the previous backup's", async () => {
    // GIVEN a database with no backup yet
    const db = await createDatabase(pgUrl, "progress_backup");
    await sql(db.url, TABLE);
    const store = await newStore("file");
    const key = await identityFile();
    const backup = () =>
      runCli(["--log-format", "json", "backup", "--recipient", key.recipient], {
        DATABASE_URL: db.url,
        STRONGROOM_STORE: store.url,
      });
    // WHEN it is backed up twice
    const first = await backup();
    const second = await backup();
    // THEN the first guesses from the database's size, the second from the first's dump
    expect(first.code, first.stderr).toBe(0);
    expect(second.code, second.stderr).toBe(0);
    const started = (r: { stderr: string }) =>
      events(r.stderr).find((e) => e.phase === "dumping" && e.state === "started");
    const committed = events(first.stderr).find((e) => e.message === "backup committed") as Event;
    expect(started(first)).toMatchObject({
      estimatedFrom: "the database's size",
      estimatedBytes: expect.any(Number),
    });
    expect(started(second)).toMatchObject({
      estimatedFrom: "the previous backup",
      estimatedBytes: committed.dumpBytes,
    });
    // An estimate is never given as a count.
    for (const e of events(second.stderr).filter((e) => e.phase === "dumping")) {
      expect(e).not.toHaveProperty("totalBytes");
      expect(e).not.toHaveProperty("percent");
    }
    expect(phases(events(second.stderr)).filter((p) => !p.endsWith(" finished"))).toEqual([
      "dumping started",
      "committing started",
      "done",
    ]);
  });

  it("text logs on a pipe get the phases as plain lines, without escape codes", async () => {
    const { store, key } = await backedUpByCli(pgUrl, "progress_text", TABLE);
    const target = await createDatabase(pgUrl, "progress_text_target");
    const r = await runCli(["restore", "--identity", key.file], {
      STRONGROOM_STORE: store.url,
      STRONGROOM_TARGET_URL: target.url,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\nphase {2}phase=restoring data state=started totalBytes=\d+\n/);
    expect(r.stderr).toMatch(/\nphase {2}phase=building indexes state=started\n/);
    expect(r.stderr).toMatch(/\nphase {2}phase=done seconds=[\d.]+\n$/);
    expect(r.stderr).not.toContain("\x1b[");
  });
});
