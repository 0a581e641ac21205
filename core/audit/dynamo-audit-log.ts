import { ConditionalCheckFailedException, type DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand, ScanCommand } from "@aws-sdk/lib-dynamodb";
import { marshall } from "@aws-sdk/util-dynamodb";
import { AlreadyExistsError, IntegrityError, InvalidInputError } from "../errors.ts";
import { type AuditRow, canonicalJson, parseAuditRow } from "./audit-chain.ts";
import type { AuditLog } from "./audit-log.ts";

/**
 * The audit log in DynamoDB: pk = scope (`org` or `db#<id>`), sk = zero-padded seq.
 * Rows are written with `attribute_not_exists(sk)`; the writer's IAM role has
 * PutItem only, so rows cannot be updated or deleted (docs/architecture.md §4).
 */
export class DynamoAuditLog implements AuditLog {
  private readonly doc: DynamoDBDocumentClient;
  private readonly tableName: string;
  private readonly scope: string;

  constructor(client: DynamoDBClient, tableName: string, scope = "org") {
    this.doc = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
    this.tableName = tableName;
    this.scope = scope;
  }

  async head(): Promise<AuditRow | undefined> {
    const out = await this.doc.send(
      new QueryCommand({
        TableName: this.tableName,
        KeyConditionExpression: "pk = :pk",
        ExpressionAttributeValues: { ":pk": this.scope },
        ScanIndexForward: false,
        Limit: 1,
        ConsistentRead: true,
      }),
    );
    const item = out.Items?.[0];
    return item ? toRow(item) : undefined;
  }

  async putRow(row: AuditRow): Promise<void> {
    assertStorable(row);
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { pk: this.scope, sk: row.seq, ...row },
          ConditionExpression: "attribute_not_exists(sk)",
        }),
      );
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException || (err as Error).name === "ConditionalCheckFailedException") {
        // A retry of our own write whose answer was lost finds our row: that is success.
        const existing = await this.doc.send(
          new GetCommand({ TableName: this.tableName, Key: { pk: this.scope, sk: row.seq }, ConsistentRead: true }),
        );
        if (existing.Item && canonicalJson(toRow(existing.Item)) === canonicalJson(row)) return;
        throw new AlreadyExistsError(`audit row ${row.seq} already exists in ${this.scope}`, { cause: err });
      }
      // DynamoDB refuses some JSON that is otherwise fine (an empty key in details, a
      // string over its item size): a bad row, not a failing table.
      if ((err as Error).name === "ValidationException") {
        throw new InvalidInputError(`audit row cannot be stored in DynamoDB: ${(err as Error).message}`, {
          cause: err,
          hint: "details must have non-empty keys and fit in a 400 KB item",
        });
      }
      throw err;
    }
  }

  async *rows(fromSeq?: string): AsyncIterable<AuditRow> {
    let start: Record<string, unknown> | undefined;
    do {
      const out = await this.doc.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: fromSeq ? "pk = :pk and sk >= :from" : "pk = :pk",
          ExpressionAttributeValues: { ":pk": this.scope, ...(fromSeq ? { ":from": fromSeq } : {}) },
          ConsistentRead: true,
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
      );
      for (const item of out.Items ?? []) yield toRow(item);
      start = out.LastEvaluatedKey;
    } while (start);
  }
}

/** Every scope (partition) in an audit table. */
export async function dynamoAuditScopes(client: DynamoDBClient, tableName: string): Promise<string[]> {
  const doc = DynamoDBDocumentClient.from(client);
  const scopes = new Set<string>();
  let start: Record<string, unknown> | undefined;
  do {
    const out = await doc.send(
      new ScanCommand({
        TableName: tableName,
        ProjectionExpression: "pk",
        ConsistentRead: true,
        ...(start ? { ExclusiveStartKey: start } : {}),
      }),
    );
    for (const item of out.Items ?? []) scopes.add(String(item.pk));
    start = out.LastEvaluatedKey;
  } while (start);
  return [...scopes].sort();
}

/** The row in an item; one kept under another row's sort key is refused (rows could be reordered without touching a hash). */
function toRow(item: Record<string, unknown>): AuditRow {
  const { pk, sk, ...row } = item;
  if (sk !== row.seq) {
    throw new IntegrityError(`audit row ${String(pk)}/${String(sk)} holds seq ${JSON.stringify(row.seq)}`, {
      hint: "rows are append-only; someone with write access to the table moved or altered one",
    });
  }
  return parseAuditRow(row, `${String(pk)}/${String(sk)}`);
}

/**
 * Rows whose details DynamoDB cannot hold as they are (integers beyond 2^53, which it
 * would round; empty map keys; numbers outside its range) are refused as bad input
 * before the write, in the same words as the ones DynamoDB itself refuses.
 */
function assertStorable(row: AuditRow): void {
  try {
    marshall(row, { removeUndefinedValues: true });
  } catch (err) {
    throw new InvalidInputError(`audit row cannot be stored in DynamoDB: ${(err as Error).message}`, {
      cause: err,
      hint: "details must hold plain JSON with safe integers and non-empty keys",
    });
  }
}
