import { randomBytes } from "node:crypto";
import { Readable, type Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { type AuditRow, nextRow, parseAuditRowText, verifyChain } from "#core/audit/audit-chain.ts";
import { parseStats, STATS_FORMAT } from "#core/backup-stats.ts";
import { catalogRecord } from "#core/catalog/catalog.ts";
import { ERROR_NAMES, StrongroomError } from "#core/errors.ts";
import { parseManifest, serializeManifest } from "#core/manifest.ts";
import { parseVerificationSummary } from "#core/verification.ts";
import { parseRoles, ROLES_FORMAT } from "#worker/pg/roles.ts";
import { splitStatements } from "#worker/pg/sql-statements.ts";
import { ageDecrypt, ageEncrypt } from "#worker/stages/age-stream.ts";
import { assertBoundedFrame, zstdCompressFrames, zstdDecompressFrames } from "#worker/stages/zstd-frames.ts";
import { keyPair } from "../helpers/age.ts";
import { sampleManifest, sampleVerification } from "../helpers/backups.ts";
import { type Json, mutated } from "./mutate.ts";

/** A parser's only way to refuse input: a StrongroomError with a stable name (of `allowed`, if given). */
function expectTyped(err: unknown, allowed?: readonly string[]): void {
  if (!(err instanceof StrongroomError)) throw new Error(`an untyped error escaped: ${String(err)}`, { cause: err });
  expect(ERROR_NAMES).toContain(err.name);
  if (allowed) expect(allowed).toContain(err.name);
}

function outcome<T>(parse: () => T): { value?: T; error?: unknown } {
  try {
    return { value: parse() };
  } catch (error) {
    return { error };
  }
}

async function through(data: Buffer, stage: Transform): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from([data]), stage, async (source) => {
    for await (const c of source) out.push(c as Buffer);
  });
  return Buffer.concat(out);
}

const jsonText = fc.oneof(
  fc.string(),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.string().map((s) => `{"format":${JSON.stringify(s)}}`),
);

describe("manifest parser", () => {
  const manifest = sampleManifest("shop", new Date("2026-11-21T02:00:00Z"));

  it("refuses random text with ManifestError only", () => {
    fc.assert(
      fc.property(jsonText, (text) => {
        const { error } = outcome(() => parseManifest(text, "k"));
        if (error) expectTyped(error, ["ManifestError"]);
      }),
    );
  });

  it("refuses a mutated manifest with ManifestError, or returns one that the catalog can record", () => {
    fc.assert(
      fc.property(mutated(manifest as unknown as Json), (doc) => {
        const { value, error } = outcome(() => parseManifest(JSON.stringify(doc), "k"));
        if (error) expectTyped(error, ["ManifestError"]);
        // What the parser lets through, the rest of the code can use without a TypeError.
        else if (value) expect(() => catalogRecord(value)).not.toThrow();
      }),
      { numRuns: 500 },
    );
  });

  it("round-trips a well-formed manifest", () => {
    expect(parseManifest(serializeManifest(manifest))).toEqual(manifest);
  });
});

describe("stats and roles parsers", () => {
  const stats = {
    format: STATS_FORMAT,
    source: "archive",
    schemaFingerprint: "f".repeat(64),
    tables: [{ schema: "public", table: "t", rows: 3 }],
    largeObjects: 0,
    owners: ["app"],
  };
  const roles = {
    format: ROLES_FORMAT,
    roles: [
      {
        name: "app",
        superuser: false,
        inherit: true,
        createRole: false,
        createDb: false,
        login: true,
        replication: false,
        bypassRls: false,
        connectionLimit: -1,
        validUntil: null,
        comment: null,
      },
    ],
    memberships: [{ role: "readers", member: "app", admin: false, inherit: null, set: null }],
    settings: [{ role: "app", inThisDatabase: false, settings: ["work_mem=64MB"] }],
  };

  it("refuses random and mutated stats with ManifestError only, and what passes has counts", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          jsonText,
          mutated(stats).map((d) => JSON.stringify(d)),
        ),
        (text) => {
          const { value, error } = outcome(() => parseStats(text, "stats"));
          if (error) expectTyped(error, ["ManifestError"]);
          else for (const t of value?.tables ?? []) expect(Number.isSafeInteger(t.rows)).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("never throws on random or mutated roles, and what it accepts has the record types restore relies on", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          jsonText,
          mutated(roles).map((d) => JSON.stringify(d)),
        ),
        (text) => {
          const parsed = parseRoles(text);
          if (!parsed) return;
          for (const r of parsed.roles) {
            expect(typeof r.name).toBe("string");
            expect(typeof r.login).toBe("boolean");
          }
          for (const m of parsed.memberships) expect([typeof m.role, typeof m.member]).toEqual(["string", "string"]);
          for (const s of parsed.settings) expect(s.settings.every((x) => typeof x === "string")).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("audit row parser and chain", () => {
  const chain: AuditRow[] = [];
  for (const event of ["backup.start", "backup.ok", "retain.delete"] as const) {
    chain.push(
      nextRow(chain.at(-1), {
        at: "2026-11-21T02:00:00.000Z",
        event,
        actor: "cli",
        databaseId: "shop",
        backupId: "20261121T020000Z-abcdef",
        details: { n: chain.length },
      }),
    );
  }

  it("refuses random text with IntegrityError only", () => {
    fc.assert(
      fc.property(jsonText, (text) => {
        const { error } = outcome(() => parseAuditRowText(text, "row"));
        if (error) expectTyped(error, ["IntegrityError"]);
      }),
    );
  });

  it("never verifies a chain with one row changed anywhere", () => {
    const oneRowChanged = fc
      .nat({ max: chain.length - 1 })
      .chain((index) => mutated(chain[index] as unknown as Json).map((doc) => ({ index, doc })));
    fc.assert(
      fc.property(oneRowChanged, ({ index, doc }) => {
        const { value, error } = outcome(() => parseAuditRowText(JSON.stringify(doc), "row"));
        if (error) return expectTyped(error, ["IntegrityError"]);
        const rows = chain.map((r, i) => (i === index ? (value as AuditRow) : r));
        const unchanged = JSON.stringify(doc) === JSON.stringify(chain[index]);
        expect(verifyChain(rows).ok).toBe(unchanged);
      }),
      { numRuns: 500 },
    );
  });
});

describe("zstd frame reader", () => {
  let valid: Buffer;
  beforeAll(async () => {
    valid = await through(Buffer.from("row\tvalue\n".repeat(20_000)), zstdCompressFrames({ frameBytes: 64 * 1024 }));
  });

  it("refuses random frame bodies before decoding, with CorruptStreamError only", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), fc.nat({ max: 64 << 20 }), (body, plainBytes) => {
        const { error } = outcome(() => assertBoundedFrame(Buffer.from(body), plainBytes, 0));
        if (error) expectTyped(error, ["CorruptStreamError"]);
      }),
      { numRuns: 1000 },
    );
  });

  it("fails on a damaged or cut stream with typed errors only", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: 10_000 }),
        fc.oneof(fc.constant("cut"), fc.constant("flip"), fc.constant("splice")),
        fc.uint8Array({ minLength: 1, maxLength: 64 }),
        async (at, how, noise) => {
          const i = at % valid.length;
          const damaged =
            how === "cut"
              ? valid.subarray(0, i)
              : how === "flip"
                ? Buffer.concat([
                    valid.subarray(0, i),
                    Buffer.from([(valid[i] as number) ^ 0xff]),
                    valid.subarray(i + 1),
                  ])
                : Buffer.concat([valid.subarray(0, i), Buffer.from(noise), valid.subarray(i + noise.length)]);
          await through(damaged, zstdDecompressFrames()).then(
            () => undefined,
            (err: unknown) => expectTyped(err, ["CorruptStreamError", "TruncatedStreamError"]),
          );
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("age reader", () => {
  const AGE_ERRORS = [
    "AgeHeaderError",
    "AgeHeaderMacError",
    "AgeNoIdentityMatchError",
    "AgePayloadAuthError",
    "TruncatedStreamError",
  ];
  let identity: string;
  let sealed: Buffer;
  beforeAll(async () => {
    const key = await keyPair();
    identity = key.identity;
    sealed = await through(randomBytes(150_000), await ageEncrypt([key.recipient]));
  });

  it("refuses random input and every damaged or cut file with age's typed errors only", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b)),
          fc.string().map((s) => Buffer.from(`age-encryption.org/v1\n${s}`)),
          fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })).map(([at, x]) => {
            const copy = Buffer.from(sealed);
            const i = at % copy.length;
            copy[i] = (copy[i] as number) ^ x;
            return copy;
          }),
          fc.nat().map((at) => sealed.subarray(0, at % sealed.length)),
        ),
        async (input) => {
          const error = await through(input, ageDecrypt([identity])).then(
            () => undefined,
            (err: unknown) => err ?? new Error("rejected with nothing"),
          );
          expect(error, "a damaged file decrypted").toBeDefined();
          expectTyped(error, AGE_ERRORS);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("verification summary parser", () => {
  const summary = sampleVerification("shop", "20261121T020000Z-abcdef", new Date("2026-11-21T03:00:00Z"), true);

  it("reads its own summaries back, and refuses random or mutated text with ManifestError only", () => {
    expect(parseVerificationSummary(JSON.stringify(summary), "k")).toEqual(summary);
    fc.assert(
      fc.property(
        fc.oneof(
          jsonText,
          mutated(summary as unknown as Json).map((v) => JSON.stringify(v)),
        ),
        (text) => {
          const { value, error } = outcome(() => parseVerificationSummary(text, "k"));
          if (error) expectTyped(error, ["ManifestError"]);
          else expect(typeof value?.ok).toBe("boolean");
        },
      ),
    );
  });
});

describe("SQL statement splitter", () => {
  it("returns statements that are trimmed, non-empty pieces of the text, in order, for any text", () => {
    fc.assert(
      fc.property(
        fc
          .array(fc.constantFrom("select 1", ";", "'", '"', "$$", "$a$", "--", "\n", "/*", "*/", "E'\\'", " x ", "✓"), {
            maxLength: 40,
          })
          .map((parts) => parts.join("")),
        (text) => {
          let from = 0;
          for (const s of splitStatements(text)) {
            expect(s.sql).not.toBe("");
            expect(s.sql).toBe(s.sql.trim());
            const at = text.indexOf(s.sql, from);
            expect(at).toBeGreaterThanOrEqual(from);
            from = at + s.sql.length;
          }
        },
      ),
    );
  });
});
