import { randomUUID } from "node:crypto";
import { pathToFileURL } from "node:url";
import { DeleteItemCommand, PutItemCommand } from "@aws-sdk/client-dynamodb";
import { marshall } from "@aws-sdk/util-dynamodb";
import { DynamoAuditLog } from "#core/audit/dynamo-audit-log.ts";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { FileStore } from "#core/store/file-store.ts";
import { createTable, dynamoClient } from "../helpers/dynamo.ts";
import { newStore } from "../helpers/fixture.ts";
import { tempDir } from "../helpers/temp.ts";
import { auditLogContract } from "./audit-log.contract.ts";

auditLogContract("DynamoDB (DynamoDB Local)", async () => {
  const admin = dynamoClient();
  const table = await createTable(admin, "audit");
  const scope = `db#${randomUUID()}`;
  return {
    open: () => new DynamoAuditLog(dynamoClient(), table, scope),
    overwrite: async (row, atSeq) => {
      await admin.send(new PutItemCommand({ TableName: table, Item: marshall({ ...row, pk: scope, sk: atSeq }) }));
    },
    remove: async (seq) => {
      await admin.send(new DeleteItemCommand({ TableName: table, Key: marshall({ pk: scope, sk: seq }) }));
    },
  };
});

auditLogContract("object store (file)", async () => {
  const url = pathToFileURL(await tempDir("strongroom-audit-")).href;
  const raw = new StoreAuditLog(new FileStore(url), "org");
  const store = new FileStore(url);
  return {
    open: () => new StoreAuditLog(new FileStore(url), "org"),
    overwrite: async (row, atSeq) => {
      await store.delete(raw.keyOf(atSeq));
      await store.putIfAbsent(raw.keyOf(atSeq), JSON.stringify(row));
    },
    remove: (seq) => store.delete(raw.keyOf(seq)),
  };
});

auditLogContract("object store (moto S3)", async () => {
  const { store, url } = await newStore("s3");
  const raw = new StoreAuditLog(store, "org");
  const { S3Store } = await import("#core/store/s3-store.ts");
  return {
    open: () => new StoreAuditLog(new S3Store(url), "org"),
    overwrite: async (row, atSeq) => {
      await store.delete(raw.keyOf(atSeq));
      await store.putIfAbsent(raw.keyOf(atSeq), JSON.stringify(row));
    },
    remove: (seq) => store.delete(raw.keyOf(seq)),
  };
});
