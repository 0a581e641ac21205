import { S3Client } from "@aws-sdk/client-s3";
import type { JSONSchemaType } from "ajv";
import { optional } from "#core/json-schema.ts";
import { type ProbeReport, probeDestination } from "#core/probe.ts";
import { S3Store, s3ClientConfigFromEnv } from "#core/store/s3-store.ts";
import { lambda } from "../common/lambda.ts";

/** Probes a bucket/prefix: list, write, read back, delete, versioning and Object Lock. */
export interface DestinationProbeInput {
  /** s3://bucket/prefix; defaults to the deployment's store. */
  store?: string;
}

export const schema: JSONSchemaType<DestinationProbeInput> = {
  type: "object",
  additionalProperties: false,
  properties: { store: optional({ type: "string", pattern: "^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$" }) },
};

export interface Deps {
  s3: S3Client;
  storeUrl: string;
}

export const createHandler = (deps: Deps) =>
  lambda<DestinationProbeInput, ProbeReport>(schema, async (input) =>
    probeDestination(new S3Store(input.store ?? deps.storeUrl, { client: deps.s3 }), { actor: "destination-probe" }),
  );

/** What the deployed function is given, from its environment (npm run sim passes the template's). */
export const depsFromEnv = (env: NodeJS.ProcessEnv = process.env): Deps => ({
  s3: new S3Client(s3ClientConfigFromEnv(env)),
  storeUrl: env.STORE_URL ?? "",
});

export const handler = createHandler(depsFromEnv());
