import { describe, expect, it } from "vitest";
import { type ManifestObject, parseManifest, serializeManifest } from "./manifest.ts";

const sha = "a".repeat(64);
const dump: ManifestObject = {
  role: "dump",
  key: "db/backups/20260101T000000Z-aaaaaa/dump.pgc.zst.age",
  chain: ["pg_dump -Fc -Z0", "zstd-frames/1 level 3 checksum", "age-v1-x25519"],
  plainBytes: 10,
  storedBytes: 20,
  plainCheck: "zstd-xxh64",
  storedSha256: sha,
};

function manifestText(format: string, objects: object[]): string {
  return serializeManifest({
    format: format as "strongroom.manifest/2",
    databaseId: "db",
    backupId: "20260101T000000Z-aaaaaa",
    database: "db",
    startedAt: "2026-01-01T00:00:00.000Z",
    finishedAt: "2026-01-01T00:00:01.000Z",
    server: { version: "15.18", versionNum: 150018, systemIdentifier: null },
    pgDump: { version: "15.18" },
    recipients: [],
    objects: objects as ManifestObject[],
    worker: { version: "0.2.0" },
  });
}

describe("manifest formats", () => {
  it("reads format 2 with a dump proven by zstd checksums and format 1 with a plain SHA-256", () => {
    expect(parseManifest(manifestText("strongroom.manifest/2", [dump])).objects[0]).toEqual(dump);
    const v1 = { ...dump, chain: ["pg_dump -Fc -Z0", "zstd-frames/1 level 3", "age-v1-x25519"], plainSha256: sha };
    delete (v1 as Partial<ManifestObject>).plainCheck;
    expect(parseManifest(manifestText("strongroom.manifest/1", [v1])).format).toBe("strongroom.manifest/1");
  });

  it("refuses an object whose plain bytes nothing proves, or that claims both proofs or the wrong one", () => {
    const { plainCheck: _, ...unproven } = dump;
    const cases: [string, object][] = [
      ["strongroom.manifest/2", unproven],
      ["strongroom.manifest/2", { ...dump, plainSha256: sha }],
      ["strongroom.manifest/2", { ...dump, plainCheck: "crc32" }],
      ["strongroom.manifest/2", { ...dump, role: "stats", chain: ["age-v1-x25519"] }],
      // Format 1 had no checksums in its frames: a format-1 manifest cannot claim them.
      ["strongroom.manifest/1", dump],
    ];
    for (const [format, object] of cases) {
      expect(() => parseManifest(manifestText(format, [object]), "m"), JSON.stringify(object)).toThrow(
        /m is not a valid strongroom manifest: object entry/,
      );
    }
  });

  it("names both formats it reads when given another", () => {
    expect(() => parseManifest(manifestText("strongroom.manifest/3", [dump]), "m")).toThrow(
      'm has format "strongroom.manifest/3", expected strongroom.manifest/1 or strongroom.manifest/2',
    );
  });
});
