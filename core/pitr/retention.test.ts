import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { RetentionPolicy } from "../gfs.ts";
import { type BaseFacts, planBaseRetention } from "./retention.ts";

const NOW = new Date("2026-11-21T12:00:00Z");
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** Keeps today's newest base only: the newest, and nothing older. */
const NEWEST_ONLY: RetentionPolicy = { daily: 1, weekly: 0, monthly: 0, timeZone: "UTC" };
const DEFAULT: RetentionPolicy = { daily: 7, weekly: 4, monthly: 12, timeZone: "UTC" };

let made = 0;
/** A fresh six-character base32 suffix, as backup ids carry. */
function suffix(): string {
  let n = made++;
  let out = "";
  for (let i = 0; i < 6; i++, n = Math.floor(n / 32)) out = "abcdefghijklmnopqrstuvwxyz234567"[n % 32] + out;
  return out;
}

/** A base backup stopped `ago` ms before NOW whose WAL starts at `first`; its id is its start time, as basebackup's. */
function base(ago: number, first: string, runMs = 60_000): BaseFacts {
  const stopped = new Date(NOW.getTime() - ago);
  const started = new Date(stopped.getTime() - runMs);
  const id = `${started.toISOString().slice(0, 19).replace(/[-:]/g, "")}Z-${suffix()}`;
  return { baseId: id, startedAt: started.toISOString(), stoppedAt: stopped.toISOString(), walSegments: { first } };
}

const plan = (
  trusted: BaseFacts[],
  walNames: string[],
  policy = NEWEST_ONLY,
  untrusted: { key: string; problem: string }[] = [],
) => planBaseRetention({ databaseId: "shop", trusted, untrusted, walNames, policy, now: NOW });

const deleted = (p: ReturnType<typeof plan>) => p.wal.delete.map((d) => d.name);

describe("GFS over base backups", () => {
  it("expires the older bases a newest-only policy does not keep, oldest first, and always keeps the newest", () => {
    // GIVEN three bases, two and one days old, and one from this morning
    const old = base(2 * DAY, "000000010000000000000002");
    const mid = base(DAY, "000000010000000000000005");
    const newest = base(HOUR, "000000010000000000000009");
    // WHEN
    const p = plan([newest, old, mid], []);
    // THEN
    expect(p.keep.map((k) => k.base)).toEqual([newest]);
    expect(p.keep[0]?.reasons).toContain("newest");
    expect(p.expire).toEqual([old, mid]);
    expect(p.backupsFailing).toBe(false);
  });

  it("places a base by its stop time, not by the start its id records", () => {
    // A base that started first but stopped last is the newest: recovery can start from it latest.
    const longRun = base(HOUR, "000000010000000000000003", 10 * HOUR);
    const quick = base(2 * HOUR, "000000010000000000000007");
    expect(longRun.baseId < quick.baseId).toBe(true);
    const p = plan([longRun, quick], []);
    expect(p.keep.map((k) => k.base)).toEqual([longRun]);
    expect(p.expire).toEqual([quick]);
  });

  it("keeps every base, and the WAL of the oldest, when the newest base is older than the daily window", () => {
    const bases = [base(10 * DAY, "000000010000000000000002"), base(9 * DAY, "000000010000000000000004")];
    const p = plan(bases, ["000000010000000000000001", "000000010000000000000002"]);
    expect(p.backupsFailing).toBe(true);
    expect(p.expire).toEqual([]);
    expect(p.wal.keptFrom).toBe("000000010000000000000002");
    expect(deleted(p)).toEqual(["000000010000000000000001"]);
  });
});

describe("WAL kept from the oldest retained base onwards", () => {
  it("deletes the segments strictly below the oldest retained base's first segment, and keeps that one and all after it", () => {
    const p = plan(
      [base(DAY, "000000010000000000000005"), base(HOUR, "000000010000000000000009")],
      [
        "000000010000000000000003",
        "000000010000000000000008",
        "000000010000000000000009",
        "00000001000000000000000A",
        "000000010000000000000004",
      ],
    );
    expect(p.wal.keptFrom).toBe("000000010000000000000009");
    expect(deleted(p)).toEqual(["000000010000000000000003", "000000010000000000000004", "000000010000000000000008"]);
    expect(p.wal.kept).toBe(2);
  });

  it("compares segment numbers across the log boundary (…00000000FF < …0100000000)", () => {
    const p = plan(
      [base(HOUR, "000000010000000100000002")],
      ["0000000100000000000000FF", "000000010000000100000001", "000000010000000100000002"],
    );
    expect(deleted(p)).toEqual(["0000000100000000000000FF", "000000010000000100000001"]);
  });

  it("applies the floor on every timeline: below it any timeline's segment goes, at or above it any timeline's stays", () => {
    // The retained base is on timeline 2 from segment 6; timeline 1 ran on to segment 7 before the switch.
    const p = plan(
      [base(DAY, "000000010000000000000002"), base(HOUR, "000000020000000000000006")],
      [
        "000000010000000000000005",
        "000000010000000000000006",
        "000000010000000000000007",
        "000000020000000000000005",
        "000000020000000000000006",
        "000000030000000000000004",
      ],
    );
    expect(deleted(p)).toEqual(["000000030000000000000004", "000000010000000000000005", "000000020000000000000005"]);
    expect(p.wal.kept).toBe(3);
  });

  it("never deletes a .history file, even of a timeline that ended long below the floor", () => {
    const p = plan(
      [base(HOUR, "000000030000000000000040")],
      ["00000002.history", "00000003.history", "000000020000000000000001", "0000000A.history"],
    );
    expect(deleted(p)).toEqual(["000000020000000000000001"]);
    expect(p.wal.kept).toBe(3);
  });

  it("deletes .partial and .backup files below the floor, and keeps those at it", () => {
    const p = plan(
      [base(HOUR, "000000020000000000000008")],
      [
        "000000010000000000000004.partial",
        "000000010000000000000003.00000028.backup",
        "000000010000000000000008.partial",
        "000000020000000000000008.00000060.backup",
      ],
    );
    expect(p.wal.delete).toEqual([
      { name: "000000010000000000000003.00000028.backup", kind: "backup" },
      { name: "000000010000000000000004.partial", kind: "partial" },
    ]);
    expect(p.wal.kept).toBe(2);
  });

  it("leaves alone, and names, an object under wal/ whose name is no WAL file name", () => {
    const strays = [
      "000000010000000000000001.tmp",
      "00000001000000000000000a",
      "notes/000000010000000000000001",
      "README",
    ];
    const p = plan([base(HOUR, "000000010000000000000009")], [...strays, "000000010000000000000001"]);
    expect(deleted(p)).toEqual(["000000010000000000000001"]);
    expect(p.wal.ignored).toEqual(strays);
  });

  it("keeps what every retained base needs when a base that stopped later started earlier", () => {
    // GIVEN yesterday's quick base, and today's that started before it and ran for 30 hours
    const longRun = base(2 * HOUR, "000000010000000000000003", 30 * HOUR);
    const quick = base(26 * HOUR, "000000010000000000000007");
    const p = plan([longRun, quick], ["000000010000000000000002", "000000010000000000000004"], DEFAULT);
    expect(p.keep).toHaveLength(2);
    expect(p.wal.keptFrom).toBe("000000010000000000000003");
    expect(deleted(p)).toEqual(["000000010000000000000002"]);
  });

  it("deletes no WAL at all when no base is trusted, and says so", () => {
    const p = plan([], ["000000010000000000000001", "00000001.history"]);
    expect(p.wal).toEqual({
      keptFrom: undefined,
      skipped: "no trusted base backup",
      delete: [],
      kept: 2,
      archivedSinceOldestStart: 0,
      ignored: [],
    });
    expect(p.expire).toEqual([]);
  });

  it("never deletes WAL a retained base needs, nor a .history file, whatever the bases and names (property)", () => {
    const hex = (n: number, width: number) => n.toString(16).toUpperCase().padStart(width, "0");
    const segment = fc
      .tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 255 }))
      .map(([t, log, seg]) => `${hex(t, 8)}${hex(log, 8)}${hex(seg, 8)}`);
    const walName = fc.oneof(
      segment,
      segment.map((s) => `${s}.partial`),
      segment.map((s) => `${s}.00000028.backup`),
      fc.integer({ min: 1, max: 4 }).map((t) => `${hex(t, 8)}.history`),
    );
    const bases = fc.array(
      fc
        .tuple(fc.integer({ min: 0, max: 400 * 24 }), segment, fc.integer({ min: 1, max: 48 }))
        .map(([agoHours, first, runHours]) => base(agoHours * HOUR, first, runHours * HOUR)),
      { maxLength: 12 },
    );
    fc.assert(
      fc.property(bases, fc.array(walName, { maxLength: 40 }), (trusted, names) => {
        const unique = [...new Map(trusted.map((b) => [b.baseId, b])).values()];
        const p = plan(unique, names, DEFAULT);
        const retained = p.keep.map((k) => k.base.walSegments.first.slice(8));
        for (const d of p.wal.delete) {
          expect(d.kind).not.toBe("history");
          for (const first of retained) expect(d.name.slice(8, 24) < first).toBe(true);
        }
        if (unique.length === 0) expect(p.wal.delete).toEqual([]);
        const newest = [...unique].sort(
          (a, b) => Date.parse(b.stoppedAt) - Date.parse(a.stoppedAt) || (a.baseId < b.baseId ? 1 : -1),
        )[0];
        if (newest) expect(p.keep.map((k) => k.base)).toContain(newest);
      }),
    );
  });
});

describe("trust", () => {
  it("halts on a manifest no trusted signer signed: a PruneHaltedError naming it, and no plan to act on", () => {
    const planted = {
      key: "shop/base/20261121T100000Z-aaaaaa/manifest.json",
      problem: "shop/base/20261121T100000Z-aaaaaa/manifest.json is not signed by a trusted signer",
    };
    const act = () =>
      plan([base(HOUR, "000000010000000000000009")], ["000000010000000000000001"], NEWEST_ONLY, [planted]);
    expect(act).toThrow(expect.objectContaining({ name: "PruneHaltedError" }));
    expect(act).toThrow(
      /nothing of them deleted: shop\/base\/20261121T100000Z-aaaaaa\/manifest\.json is not signed by a trusted signer/,
    );
  });

  it("names the first five of many planted manifests and counts the rest: a store writer decides how many, and the message travels in a flow's state", () => {
    const planted = Array.from({ length: 2000 }, (_, i) => ({
      key: `shop/base/x${i}/manifest.json`,
      problem: `shop/base/x${i}/manifest.json is not signed by a trusted signer`,
    }));
    let message = "";
    try {
      plan([base(HOUR, "000000010000000000000009")], [], NEWEST_ONLY, planted);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain("shop/base/x4/manifest.json");
    expect(message).not.toContain("shop/base/x5/manifest.json");
    expect(message).toContain("and 1995 more manifests that do not count");
    expect(message.length).toBeLessThan(1000);
  });
});

describe("WAL of another line", () => {
  const archived = (entries: Array<[string, number]>) =>
    new Map(entries.map(([name, ago]) => [name, new Date(NOW.getTime() - ago)]));

  it("keeps a file below the floor archived after the oldest kept base started (a newer timeline's, perhaps a base's still being taken), and deletes those archived before", () => {
    const kept = base(2 * HOUR, "000000010000000000000009"); // started 2 h and a minute ago
    const walNames = [
      "000000010000000000000003",
      "000000010000000000000004",
      // Timeline 2 forked at segment 4 an hour ago: its files sort below the floor.
      "000000020000000000000004",
      "000000020000000000000005",
    ];
    const p = planBaseRetention({
      databaseId: "shop",
      trusted: [kept],
      untrusted: [],
      walNames,
      walArchivedAt: archived([
        ["000000010000000000000003", 3 * HOUR],
        ["000000010000000000000004", 3 * HOUR],
        ["000000020000000000000004", HOUR],
        ["000000020000000000000005", HOUR / 2],
      ]),
      policy: NEWEST_ONLY,
      now: NOW,
    });
    expect(deleted(p)).toEqual(["000000010000000000000003", "000000010000000000000004"]);
    expect(p.wal.archivedSinceOldestStart).toBe(2);
    expect(p.wal.kept).toBe(2);
  });

  it("keeps everything below the floor when a kept base's start cannot be read: never a guess", () => {
    const kept = { ...base(2 * HOUR, "000000010000000000000009"), startedAt: "not a time" };
    const p = planBaseRetention({
      databaseId: "shop",
      trusted: [kept],
      untrusted: [],
      walNames: ["000000010000000000000003"],
      walArchivedAt: archived([["000000010000000000000003", 30 * 24 * HOUR]]),
      policy: NEWEST_ONLY,
      now: NOW,
    });
    expect(deleted(p)).toEqual([]);
  });
});
