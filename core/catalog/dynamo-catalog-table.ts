import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient, PutCommand, QueryCommand } from "@aws-sdk/lib-dynamodb";
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
}
