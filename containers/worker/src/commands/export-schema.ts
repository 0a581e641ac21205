import { type Command, Option } from "commander";
import { UsageError } from "#core/errors.ts";
import { scanIdentifiers } from "../pg/table-name.ts";
import { auditFor, type CliContext, count, openBackupJob, openStoreAt, printResult, withProgress } from "./context.ts";
import { flagOption, jsonOption, readsBackup, splitList } from "./options.ts";

interface ExportSchemaFlags {
  store: string;
  backup: string;
  identity?: string;
  databaseId?: string;
  schema: string;
  target?: string;
  out?: string;
  recipient?: string[];
  outDatabaseId?: string;
  create?: boolean;
  owner: boolean;
  audit: string;
  auditTable?: string;
  json?: boolean;
}

export function exportSchemaCommand(parent: Command, ctx: CliContext): void {
  readsBackup(
    parent
      .command("export-schema")
      .description(
        "one schema (a tenant) of a backup: restored into a database that lacks it, or written as a backup of its own",
      ),
    "read",
  )
    .addOption(
      new Option(
        "--schema <name>",
        "the schema, as SQL writes it: tenant_42, or '\"Tenant 42\"'",
      ).makeOptionMandatory(),
    )
    .addOption(
      new Option(
        "--target <url>",
        "postgres:// URL of the database to restore it into (it must not have the schema)",
      ).env("STRONGROOM_TARGET_URL"),
    )
    .addOption(
      new Option(
        "--out <store>",
        "instead: write it as a new backup into this store (file:///… or s3://…), which strongroom restore reads",
      ),
    )
    .addOption(
      new Option("--recipient <age1…>", "with --out: age public key to encrypt the export to; repeat for several")
        .argParser(splitList)
        .env("STRONGROOM_RECIPIENTS"),
    )
    .addOption(
      new Option("--out-database-id <id>", "with --out: the export's database id (default: <database>.<schema>)"),
    )
    .addOption(flagOption("--create", "create the target database first when it does not exist", "STRONGROOM_CREATE"))
    .addOption(flagOption("--no-owner", "restore without owners and grants", "STRONGROOM_NO_OWNER"))
    .addOption(jsonOption())
    .addHelpText(
      "after",
      `
The schema, everything in it with its data, and its comments and grants are chosen from
the backup's table of contents as it streams past, restored in one transaction, and
checked table by table against the backup's row counts. Objects in other schemas that it
depends on (a foreign key to public.users, an extension) must already be in the target.

With --out, the schema is restored into a throwaway cluster of the backup's major and
backed up from there into the store given, encrypted to --recipient: a backup like any
other (strongroom list, restore and verify read it; so does age -d | zstd -d | pg_restore).

Examples:
  $ strongroom export-schema --store s3://acme-backups/pg --identity id.txt --schema tenant_42 --target postgres://localhost/tenant_42 --create
  $ strongroom export-schema --store s3://acme-backups/pg --identity id.txt --schema tenant_42 --out s3://tenant-handover/42 --recipient age1…`,
    )
    .action(async (o: ExportSchemaFlags) => {
      const { parsePgUrl } = await import("../pg/conn.ts");
      const { exportSchema } = await import("../pipeline/export-schema.ts");
      const { restore } = await import("../pipeline/restore.ts");
      const scanned = scanIdentifiers(o.schema, 0);
      if ("error" in scanned || scanned.parts.length !== 1 || scanned.end !== o.schema.length) {
        throw new UsageError(`--schema ${JSON.stringify(o.schema)} is not one schema name`, {
          hint: "write it as SQL does: tenant_42, or quoted to keep case and spaces: '\"Tenant 42\"'",
        });
      }
      const schema = scanned.parts[0] as string;
      if (!o.target === !o.out) {
        throw new UsageError("export-schema takes one of --target (restore it there) or --out (write a backup of it)", {
          hint: "strongroom export-schema --help shows both",
        });
      }
      if (o.out && !o.recipient?.length) {
        throw new UsageError("--out needs --recipient: the export is encrypted like any backup", {
          hint: "pass the public key (age1…) of whoever receives it; repeat for several",
        });
      }
      const job = await openBackupJob(o, "export-schema", ctx);
      if (o.out) {
        const out = await openStoreAt(o.out);
        const outAudit = await auditFor(out, o);
        const exported = await exportSchema({
          ...job,
          ...(outAudit ? { outAudit } : {}),
          schema,
          out,
          recipients: o.recipient ?? [],
          ...(o.outDatabaseId ? { outDatabaseId: o.outDatabaseId } : {}),
        });
        printResult(
          ctx,
          o.json,
          exported,
          () =>
            `exported schema ${schema} of ${exported.from.databaseId}/${exported.from.backupId} as backup ${exported.manifest.databaseId}/${exported.manifest.backupId} in ${o.out}\n`,
        );
        return;
      }
      const result = await withProgress(ctx, "restore", (progress) =>
        restore({
          ...job,
          target: parsePgUrl(o.target as string, "--target"),
          schema,
          create: o.create === true,
          noOwner: o.owner === false,
          ...progress,
        }),
      );
      printResult(
        ctx,
        o.json,
        { ...result, schema },
        () =>
          `restored schema ${schema} of ${result.backupId} into ${result.target}: ${count(result.tables, "table")}, ${count(result.rows, "row")}, counts verified\n`,
      );
    });
}
