import { randomUUID } from "node:crypto";
import { CreateTableCommand, DynamoDBClient } from "@aws-sdk/client-dynamodb";

/** A client for the rig's DynamoDB Local (or AWS_ENDPOINT_URL_DYNAMODB's endpoint). */
export function dynamoClient(): DynamoDBClient {
  return new DynamoDBClient({ region: process.env.AWS_REGION ?? "us-east-1" });
}

/** A fresh pk/sk table, as infra creates for the audit log and the catalog. */
export async function createTable(client: DynamoDBClient, prefix: string): Promise<string> {
  const name = `${prefix}-${randomUUID()}`;
  await client.send(
    new CreateTableCommand({
      TableName: name,
      BillingMode: "PAY_PER_REQUEST",
      AttributeDefinitions: [
        { AttributeName: "pk", AttributeType: "S" },
        { AttributeName: "sk", AttributeType: "S" },
      ],
      KeySchema: [
        { AttributeName: "pk", KeyType: "HASH" },
        { AttributeName: "sk", KeyType: "RANGE" },
      ],
    }),
  );
  return name;
}
