import type { Command } from "commander";
import type { Manifest } from "#core/manifest.ts";
import { humanBytes } from "../progress.ts";
import { type CliContext, openStoreAt, printResult, table } from "./context.ts";
import { databaseIdOption, jsonOption, storeOption } from "./options.ts";

export function listCommand(parent: Command, ctx: CliContext): void {
  parent
    .command("list")
    .description("list committed backups (a backup exists if and only if its manifest does)")
    .addOption(storeOption())
    .addOption(databaseIdOption("only this database's backups (default: every database)"))
    .addOption(jsonOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ strongroom list --store s3://acme-backups/pg\n  $ strongroom list --store file:///var/backups/pg --database-id shop --json",
    )
    .action(async (o: { store: string; databaseId?: string; json?: boolean }) => {
      const { listManifests } = await import("#core/backup-index.ts");
      const manifests = await listManifests(await openStoreAt(o.store), o.databaseId);
      printResult(ctx, o.json, manifests, () => (manifests.length ? `${listTable(manifests)}\n` : "no backups\n"));
    });
}

const shortRecipient = (r: string) => `${r.slice(0, 10)}…${r.slice(-6)}`;

function listTable(manifests: Manifest[]): string {
  return table(
    ["BACKUP ID", "FINISHED (UTC)", "DATABASE", "SERVER", "DUMP", "STORED", "RECIPIENTS"],
    manifests.map((m) => [
      m.backupId,
      m.finishedAt.replace("T", " ").replace(/\.\d+Z$/, "Z"),
      m.databaseId === m.database ? m.database : `${m.databaseId} (${m.database})`,
      m.server.version,
      humanBytes(m.objects.find((o) => o.role === "dump")?.plainBytes ?? 0),
      humanBytes(m.objects.reduce((n, o) => n + o.storedBytes, 0)),
      m.recipients.map(shortRecipient).join(", "),
    ]),
  );
}
