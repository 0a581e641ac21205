import { type Command, Option } from "commander";
import type { VerificationSummary } from "#core/verification.ts";
import { type CliContext, openStoreAt, printResult } from "./context.ts";
import { databaseIdOption, jsonOption, storeOption } from "./options.ts";

export function catalogCommand(parent: Command, ctx: CliContext): void {
  parent
    .command("catalog")
    .description("the DynamoDB backup catalog")
    .command("rebuild")
    .description(
      "rebuild catalog items from the manifests and verification summaries in a store (payloads without a manifest are skipped)",
    )
    .addOption(storeOption())
    .addOption(
      new Option("--table <name>", "DynamoDB catalog table (endpoint from AWS_ENDPOINT_URL_DYNAMODB)")
        .env("STRONGROOM_CATALOG_TABLE")
        .makeOptionMandatory(),
    )
    .addOption(databaseIdOption("only this database's backups (default: every database)"))
    .addOption(jsonOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ strongroom catalog rebuild --store s3://acme-backups/pg --table strongroom-catalog\n  $ strongroom catalog rebuild --store s3://acme-backups/pg --table strongroom-catalog --database-id shop --json",
    )
    .action(async (o: { store: string; table: string; databaseId?: string; json?: boolean }) => {
      const { DynamoDBClient } = await import("@aws-sdk/client-dynamodb");
      const { listManifests } = await import("#core/backup-index.ts");
      const { catalogRecord } = await import("#core/catalog/catalog.ts");
      const { DynamoCatalogTable } = await import("#core/catalog/dynamo-catalog-table.ts");
      const { listVerifications } = await import("#core/verification.ts");
      const catalog = new DynamoCatalogTable(new DynamoDBClient({}), o.table);
      const store = await openStoreAt(o.store);
      const manifests = await listManifests(store, o.databaseId);
      const verifications = new Map<string, VerificationSummary[]>();
      for (const m of manifests) {
        let mine = verifications.get(m.databaseId);
        if (!mine) {
          mine = await listVerifications(store, m.databaseId);
          verifications.set(m.databaseId, mine);
        }
        await catalog.put(catalogRecord(m, mine));
      }
      printResult(ctx, o.json, { items: manifests.length }, () => `catalogued ${manifests.length} backups\n`);
    });
}
