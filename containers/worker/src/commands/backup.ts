import { type Command, Option } from "commander";
import { auditFor, type CliContext, openStoreAt, printResult, withProgress } from "./context.ts";
import {
  auditOption,
  auditTableOption,
  backupIdArg,
  checkedOption,
  databaseIdOption,
  flagOption,
  jsonOption,
  recipientOption,
  signerOption,
  signingKeyOption,
  storeOption,
} from "./options.ts";

interface BackupFlags {
  db: string;
  store: string;
  recipient: string[];
  databaseId?: string;
  backupId?: string;
  allowSourceChange?: boolean;
  audit: string;
  auditTable?: string;
  json?: boolean;
}

export function backupCommand(parent: Command, ctx: CliContext): void {
  parent
    .command("backup")
    .description("back up one database: pg_dump (on a snapshot) → zstd → age → store; prints the backup id")
    .addOption(
      new Option("--db <url>", "postgres://user@host:port/dbname (password: prefer PGPASSWORD or DATABASE_URL)")
        .env("DATABASE_URL")
        .makeOptionMandatory(),
    )
    .addOption(storeOption())
    .addOption(recipientOption())
    .addOption(databaseIdOption())
    .addOption(
      checkedOption(
        "--backup-id <id>",
        "commit under this id (YYYYMMDDTHHMMSSZ-xxxxxx, unused) instead of a new one; the deployed flow chooses it",
        backupIdArg,
      ).env("STRONGROOM_BACKUP_ID"),
    )
    .addOption(
      flagOption(
        "--allow-source-change",
        "add to a series whose newest backup came from another server or database (it moved)",
        "STRONGROOM_ALLOW_SOURCE_CHANGE",
      ),
    )
    .addOption(auditOption())
    .addOption(signingKeyOption())
    .addOption(signerOption())
    .addOption(auditTableOption())
    .addOption(jsonOption())
    .addHelpText(
      "after",
      `
Examples:
  $ export DATABASE_URL=postgres://backup@db.internal:5432/shop PGPASSWORD=…
  $ strongroom backup --store s3://acme-backups/pg --recipient age1… --recipient age1…(break-glass)
  $ strongroom backup --db postgres://localhost/shop --store file:///var/backups/pg --recipient "$(cat recipient.txt)" --json`,
    )
    .action(async (o: BackupFlags) => {
      const { parsePgUrl } = await import("../pg/conn.ts");
      const { backup } = await import("../pipeline/backup.ts");
      const log = ctx.log();
      if (/^postgres(ql)?:\/\/[^/@]*:[^/@]+@/.test(o.db) && process.argv.some((a) => a.includes(o.db))) {
        log.warn(
          "the password in --db is visible to other local users in the process list; prefer DATABASE_URL or PGPASSWORD",
        );
      }
      const store = await openStoreAt(o.store);
      const audit = await auditFor(store, o);
      const manifest = await withProgress(ctx, "backup", (progress) =>
        backup({
          conn: parsePgUrl(o.db, "--db"),
          store,
          ...(audit ? { audit } : {}),
          recipients: o.recipient,
          ...(o.databaseId ? { databaseId: o.databaseId } : {}),
          ...(o.backupId ? { backupId: o.backupId } : {}),
          allowSourceChange: o.allowSourceChange === true,
          signal: ctx.signal,
          log,
          ...progress,
        }),
      );
      printResult(ctx, o.json, manifest, () => `${manifest.backupId}\n`);
    });
}
