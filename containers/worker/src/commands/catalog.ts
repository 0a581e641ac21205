import { type Command, Option } from "commander";
import { auditFor, type CliContext, openStoreAt, printResult } from "./context.ts";
import { databaseIdOption, jsonOption, readsLedger, storeOption } from "./options.ts";

export function catalogCommand(parent: Command, ctx: CliContext): void {
  readsLedger(
    parent
      .command("catalog")
      .description("the DynamoDB backup catalog")
      .command("rebuild")
      .description(
        "rebuild catalog items from the committed backups in a store and their audited verifications (anything the audit log does not commit is skipped)",
      )
      .addOption(storeOption())
      .addOption(
        new Option("--table <name>", "DynamoDB catalog table (endpoint from AWS_ENDPOINT_URL_DYNAMODB)")
          .env("STRONGROOM_CATALOG_TABLE")
          .makeOptionMandatory(),
      )
      .addOption(databaseIdOption("only this database's backups (default: every database)")),
  )
    .addOption(jsonOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ strongroom catalog rebuild --store s3://acme-backups/pg --table strongroom-catalog\n  $ strongroom catalog rebuild --store s3://acme-backups/pg --table strongroom-catalog --database-id shop --json",
    )
    .action(
      async (o: {
        store: string;
        table: string;
        databaseId?: string;
        audit: string;
        auditTable?: string;
        signingKey?: string;
        signer?: string[];
        trustStore?: boolean;
        json?: boolean;
      }) => {
        const { DynamoDBClient } = await import("@aws-sdk/client-dynamodb");
        const { catalogRecord } = await import("#core/catalog/catalog.ts");
        const { DynamoCatalogTable } = await import("#core/catalog/dynamo-catalog-table.ts");
        const { readLedgers } = await import("#core/ledger.ts");
        const catalog = new DynamoCatalogTable(new DynamoDBClient({}), o.table);
        const store = await openStoreAt(o.store);
        const audit = await auditFor(store, o);
        const ledgers = await readLedgers(store, {
          now: new Date(),
          ...(o.databaseId ? { databaseId: o.databaseId } : {}),
          ...(audit ? { audit } : {}),
          trustStore: o.trustStore === true,
        });
        let items = 0;
        for (const ledger of ledgers) {
          for (const p of ledger.problems) ctx.log().warn(`not catalogued: ${p.message}`, { databaseId: p.databaseId });
          for (const b of ledger.backups) {
            // Audited verifications only; their timings where the audit row has them.
            const verifications = b.verifications.map((v) => ({
              ...v,
              databaseId: b.databaseId,
              rto: { restoreSeconds: v.restoreSeconds ?? 0 },
              ...(v.excluded ? { excludedExtensions: v.excluded } : {}),
            }));
            await catalog.put(catalogRecord(b.manifest, verifications));
            items++;
          }
        }
        printResult(ctx, o.json, { items }, () => `catalogued ${items} backups\n`);
      },
    );
}
