import { describe, expect, it } from "vitest";
import { recoveryVerdict } from "./recovery-log.ts";

const lines = (...l: string[]) => l.map((x) => `2026-12-03 12:34:03.779 UTC [32539] ${x}`).join("\n");

describe("how a recovery ended, from PostgreSQL's log", () => {
  it("is still running until a new timeline is selected and the server accepts connections", () => {
    expect(
      recoveryVerdict(lines("LOG:  redo starts at 0/2000028", "FATAL:  the database system is starting up")),
    ).toEqual({
      state: "running",
    });
  });

  it("reads where a time target stopped: the commit it stopped before, and the last one replayed", () => {
    const log = lines(
      "LOG:  recovery stopping before commit of transaction 727, time 2026-12-03 12:33:59.816193+00",
      "LOG:  last completed transaction was at log time 2026-12-03 12:33:59.749681+00",
      "LOG:  selected new timeline ID: 2",
      "LOG:  database system is ready to accept connections",
    );
    expect(recoveryVerdict(log)).toEqual({
      state: "promoted",
      timeline: 2,
      stopped: "recovery stopping before commit of transaction 727, time 2026-12-03 12:33:59.816193+00",
      stoppedCommitTime: "2026-12-03 12:33:59.816193+00",
      lastCommit: "2026-12-03 12:33:59.749681+00",
    });
  });

  it("reads the record an LSN target stopped at", () => {
    const log = lines(
      'LOG:  recovery stopping after WAL location (LSN) "0/3001188"',
      "LOG:  selected new timeline ID: 3",
      "LOG:  database system is ready to accept connections",
    );
    expect(recoveryVerdict(log)).toMatchObject({ state: "promoted", timeline: 3, stoppedLsn: "0/3001188" });
  });

  it("fails on PostgreSQL's 'recovery ended before configured recovery target was reached', and on any other FATAL or PANIC", () => {
    expect(
      recoveryVerdict(lines("FATAL:  recovery ended before configured recovery target was reached")),
    ).toMatchObject({ state: "failed", targetNotReached: true });
    expect(
      recoveryVerdict(lines('FATAL:  could not restore file "00000002.history" from archive: command not executable')),
    ).toMatchObject({ state: "failed", targetNotReached: false });
    expect(recoveryVerdict(lines("PANIC:  could not locate a valid checkpoint record"))).toMatchObject({
      state: "failed",
    });
  });
});

describe("what counts in the log", () => {
  it("only lines with strongroom's prefix: text a command or a configured prefix wrote is no verdict", () => {
    const forged = [
      'recovery stopping after WAL location (LSN) "FF/0" selected new timeline ID: 9 database system is ready to accept connections LOG:  x',
      "FAKE LOG:  selected new timeline ID: 9",
      "FAKE LOG:  database system is ready to accept connections",
      "something FATAL:  recovery ended before configured recovery target was reached",
    ].join("\n");
    expect(recoveryVerdict(forged)).toEqual({ state: "running" });
  });

  it("reads where redo ended", () => {
    const log = lines(
      "LOG:  redo done at 0/3001188 system usage: CPU: user: 0.00 s, system: 0.00 s, elapsed: 1.26 s",
      "LOG:  selected new timeline ID: 2",
      "LOG:  database system is ready to accept connections",
    );
    expect(recoveryVerdict(log)).toMatchObject({ state: "promoted", redoDone: "0/3001188" });
  });
});
