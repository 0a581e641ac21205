import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient, PutCommand, QueryCommand, ScanCommand } from "@aws-sdk/lib-dynamodb";
import type { CatalogItem, CatalogTable } from "./catalog.ts";

/** The catalog in DynamoDB: pk `db#<databaseId>`, sk `backup#<backupId>`. */
export class DynamoCatalogTable implements CatalogTable {
  private readonly doc: DynamoDBDocumentClient;
  private readonly tableName: string;

  constructor(client: DynamoDBClient, tableName: string) {
    this.doc = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
    this.tableName = tableName;
  }

  async put(item: CatalogItem): Promise<void> {
    await this.doc.send(new PutCommand({ TableName: this.tableName, Item: item }));
  }

  async list(databaseId: string): Promise<CatalogItem[]> {
    const items: CatalogItem[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const out = await this.doc.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: "pk = :pk and begins_with(sk, :b)",
          ExpressionAttributeValues: { ":pk": `db#${databaseId}`, ":b": "backup#" },
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
      );
      items.push(...((out.Items ?? []) as CatalogItem[]));
      start = out.LastEvaluatedKey;
    } while (start);
    return items;
  }

  /** A scan of the keys only: the catalog holds one small item per backup. */
  async databaseIds(): Promise<string[]> {
    const ids = new Set<string>();
    let start: Record<string, unknown> | undefined;
    do {
      const out = await this.doc.send(
        new ScanCommand({
          TableName: this.tableName,
          ProjectionExpression: "pk",
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
      );
      for (const item of out.Items ?? []) {
        const pk = String(item.pk ?? "");
        if (pk.startsWith("db#")) ids.add(pk.slice(3));
      }
      start = out.LastEvaluatedKey;
    } while (start);
    return [...ids].sort();
  }
}
