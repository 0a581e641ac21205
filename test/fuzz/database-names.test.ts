import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { databaseNameProblem } from "#core/database-name.ts";
import { InvalidInputError } from "#core/errors.ts";
import { StaticSettings } from "#core/flows/flow-settings.ts";
import { planRestore } from "#core/flows/plan.ts";
import { buildProgram } from "#worker/cli.ts";
import { restoreTarget } from "#worker/commands/restore.ts";
import { parsePgUrl } from "#worker/pg/conn.ts";

/**
 * A database name travels as text through RestoreFlow's plan, the task's argv, the
 * worker's option parser and its connection settings. Every character a name may hold
 * must arrive as it left, or the name must be refused before any task runs: restoring
 * into a database the user did not name (`a%3Db` for `a=b`, or, for `..`, the task's own
 * PGDATABASE, the production database) is the failure.
 */
const settings = new StaticSettings({
  databases: [
    {
      id: "shop",
      backupTaskDefinition: "arn:backup-shop:1",
      restoreTaskDefinition: "arn:restore-shop:1",
      verifyTaskDefinition: "arn:verify-shop:1",
      retention: { daily: 7, weekly: 4, monthly: 12, timeZone: "UTC" },
      verify: { deep: false, maxAgeDays: 8 },
    },
  ],
  restoreTargets: [],
});
const latest = async () => ({ backupId: "20261120T020000Z-abcdef", manifestSha256: "ab".repeat(32) });

/** What an ECS task's secrets give the worker: the source database's connection. */
const taskEnv: NodeJS.ProcessEnv = { PGHOST: "db.internal", PGPORT: "5432", PGUSER: "app", PGDATABASE: "shop" };

/** Characters that mean something to URLs, conninfo strings, shells and option parsers. */
const awkward = fc.constantFrom(
  ..."'\"=/%?#&@:;\\ -.+$`*,",
  "%2F",
  "%3D",
  "%25",
  "ü",
  "✓",
  "𝄞",
  "\t",
  "\n",
  "\u0000",
  "\uD800",
);
const nameLike = fc.oneof(
  fc.string({ unit: fc.oneof(awkward, fc.string({ unit: "grapheme", minLength: 1, maxLength: 1 })), maxLength: 70 }),
  fc.constantFrom("..", ".", "-x", "--help", "postgres://evil/x", "host=evil dbname=x", "a%3Db"),
);

/** The worker's restore options, parsed from `argv` by the real CLI, without running the restore. */
async function parsedByWorker(argv: string[]): Promise<{ target: string; targetDatabase?: string }> {
  const { program } = buildProgram({ signal: new AbortController().signal, stdout: () => undefined });
  const restore = program.commands.find((c) => c.name() === "restore");
  let flags: { target: string; targetDatabase?: string } | undefined;
  restore?.action((o: { target: string; targetDatabase?: string }) => {
    flags = o;
  });
  await program.parseAsync([...argv, "--store", "file:///nowhere"], { from: "user" });
  if (!flags) throw new Error("the restore command did not run");
  return flags;
}

describe("database names from RestoreFlow's input to the worker's connection", () => {
  it("arrive unchanged, or are refused by the plan as InvalidInputError before any task runs", async () => {
    await fc.assert(
      fc.asyncProperty(nameLike, async (database) => {
        let plan: Awaited<ReturnType<typeof planRestore>>;
        try {
          plan = await planRestore(settings, { databaseId: "shop", target: { database } }, latest);
        } catch (err) {
          expect(err).toBeInstanceOf(InvalidInputError);
          expect(databaseNameProblem(database)).toBeDefined();
          return;
        }
        expect(databaseNameProblem(database)).toBeUndefined();
        const conn = await restoreTarget(await parsedByWorker(plan.command), taskEnv);
        expect(conn.database).toBe(database);
        // The rest of the connection is still the task's.
        expect([conn.host, conn.port, conn.user]).toEqual(["db.internal", 5432, "app"]);
      }),
    );
  });

  it("in a postgres:// URL, percent-encoded, mean what they mean to libpq (every %XX decoded, no dot segments)", () => {
    fc.assert(
      fc.property(
        nameLike.filter((n) => databaseNameProblem(n) === undefined),
        fc.constantFrom("postgres://", "postgresql://app@db.example:6432", "postgres://[::1]"),
        fc.constantFrom("", "?sslmode=disable", "?application_name=x%3Dy"),
        (database, base, query) => {
          const conn = parsePgUrl(`${base}/${encodeURIComponent(database)}${query}`, "--target", {});
          expect(conn.database).toBe(database);
        },
      ),
    );
  });

  it("refuses a --target URL and a --target-database that name different databases, as a usage error", async () => {
    await expect(restoreTarget({ target: "postgres://db/shop", targetDatabase: "shop_copy" }, {})).rejects.toThrow(
      '--target names database "shop" and --target-database names "shop_copy"',
    );
    expect((await restoreTarget({ target: "postgres://db/a%3Db", targetDatabase: "a=b" }, {})).database).toBe("a=b");
  });

  it("refuses a target database over 63 bytes, however it was named, before connecting", async () => {
    const long = "ü".repeat(32);
    for (const o of [
      { target: "postgres://db", targetDatabase: long },
      { target: `postgres://db/${encodeURIComponent(long)}` },
    ]) {
      await expect(restoreTarget(o, {})).rejects.toMatchObject({
        name: "UsageError",
        message: expect.stringContaining("is 64 bytes in UTF-8"),
      });
    }
  });
});
