import { type Command, Option } from "commander";
import { databaseNameProblem } from "#core/database-name.ts";
import { UsageError } from "#core/errors.ts";
import type { PgConn } from "../pg/conn.ts";
import { type CliContext, count, openBackupJob, printResult, withProgress } from "./context.ts";
import { checkedOption, flagOption, jsonOption, positiveInt, readsBackup } from "./options.ts";

interface RestoreFlags {
  store: string;
  backup: string;
  target: string;
  targetDatabase?: string;
  identity?: string;
  create?: boolean;
  databaseId?: string;
  jobs: number;
  stagingDir?: string;
  clean?: boolean;
  owner: boolean;
  role?: string;
  audit: string;
  auditTable?: string;
  json?: boolean;
}

export function restoreCommand(parent: Command, ctx: CliContext): void {
  readsBackup(
    parent.command("restore").description("restore a backup into a database, then verify per-table row counts"),
    "restore",
  )
    .addOption(
      new Option("--target <url>", "postgres:// URL of the (empty) database to restore into (see --create)")
        .env("STRONGROOM_TARGET_URL")
        .makeOptionMandatory(),
    )
    .addOption(
      new Option(
        "--target-database <name>",
        "the database to restore into, taken as it is (any characters; not percent-encoded), instead of the URL's",
      ).env("STRONGROOM_TARGET_DATABASE"),
    )
    .addOption(
      checkedOption(
        "--jobs <n>",
        "parallel pg_restore jobs; >1 stages the decrypted archive in a private temp dir",
        positiveInt("--jobs"),
      )
        .default(1)
        .env("STRONGROOM_JOBS"),
    )
    .addOption(
      new Option("--staging-dir <dir>", "where --jobs stages the archive (default: the temp dir)").env(
        "STRONGROOM_STAGING_DIR",
      ),
    )
    .addOption(
      flagOption(
        "--create",
        "create the target database first when it does not exist (needs CREATEDB)",
        "STRONGROOM_CREATE",
      ),
    )
    .addOption(
      flagOption(
        "--clean",
        "drop the backup's objects in the target first (target may be non-empty)",
        "STRONGROOM_CLEAN",
      ),
    )
    .addOption(
      flagOption(
        "--no-owner",
        "restore without owners and grants (when roles cannot be created)",
        "STRONGROOM_NO_OWNER",
      ),
    )
    .addOption(
      new Option(
        "--role <name>",
        "restore as this role (SET ROLE after connecting): the dump's objects and the code in it (CHECK constraints, defaults, triggers, index expressions) run with its privileges, not the connecting user's",
      ).env("STRONGROOM_RESTORE_ROLE"),
    )
    .addOption(jsonOption())
    .addHelpText(
      "after",
      `
Examples:
  $ createdb shop_restored
  $ STRONGROOM_TARGET_URL=postgres://localhost/shop_restored strongroom restore --store s3://acme-backups/pg --identity identity.txt
  $ strongroom restore --store s3://acme-backups/pg --target postgres://localhost/shop_copy --create --identity identity.txt
  $ strongroom restore --store file:///var/backups/pg --backup 20260421T020000Z-abc234 --target postgres://localhost/x --identity id.txt --jobs 4
  $ strongroom restore --store s3://acme-backups/pg --target postgres://admin@localhost/shop_copy --role shop_owner --no-owner --identity identity.txt

A restore runs code the backed-up database's roles wrote (CHECK constraints, defaults,
triggers, index expressions) as the role restoring. --role makes that a less privileged
one; a superuser connecting is still a RESET ROLE away for code written to escape, so for
a backup you do not trust, connect (--target) as the less privileged role itself.`,
    )
    .action(async (o: RestoreFlags) => {
      const { assertRestoreFlags, restore } = await import("../pipeline/restore.ts");
      assertRestoreFlags({ clean: o.clean === true, jobs: o.jobs });
      const target = await restoreTarget(o);
      const job = await openBackupJob(o, "restore", ctx);
      const result = await withProgress(ctx, "restore", (progress) =>
        restore({
          ...job,
          target,
          jobs: o.jobs,
          ...(o.stagingDir ? { stagingDir: o.stagingDir } : {}),
          clean: o.clean === true,
          create: o.create === true,
          noOwner: o.owner === false,
          ...(o.role !== undefined ? { role: o.role } : {}),
          ...progress,
        }),
      );
      printResult(
        ctx,
        o.json,
        result,
        () =>
          `restored ${result.backupId} into ${result.target}: ${count(result.tables, "table")}, ${count(result.rows, "row")}, counts verified\n`,
      );
    });
}

/**
 * The connection restore writes into: --target, with --target-database naming the
 * database apart from the URL. RestoreFlow's plan passes the name that way, as one
 * `--target-database=NAME` argument, so no character of it goes through URL parsing.
 * A name the server would cut short (over 63 bytes) is refused here, whatever named it.
 */
export async function restoreTarget(
  o: Pick<RestoreFlags, "target" | "targetDatabase">,
  env: NodeJS.ProcessEnv = process.env,
): Promise<PgConn> {
  const { parsePgUrl } = await import("../pg/conn.ts");
  const database = o.targetDatabase === undefined ? undefined : { name: o.targetDatabase, flag: "--target-database" };
  const target = parsePgUrl(o.target, "--target", env, database);
  const problem = databaseNameProblem(target.database);
  if (problem !== undefined) {
    throw new UsageError(`the target database's name ${problem}`, {
      hint: "restore into a database whose name PostgreSQL can hold",
    });
  }
  return target;
}
