import { describe, expect, it } from "vitest";
import { clientConfigFromEnv, credentialsFromEnv } from "./aws-env.ts";

describe("SDK settings from an environment", () => {
  it("leaves the process's own environment to the SDK's default chain, as in Lambda and ECS", () => {
    expect(credentialsFromEnv(process.env)).toEqual({});
    expect(clientConfigFromEnv(process.env, "DYNAMODB")).toEqual({});
  });

  it("reads another environment's keys, region and service endpoint, and only those", () => {
    const env = {
      AWS_ACCESS_KEY_ID: "ASIAFUNCTION",
      AWS_SECRET_ACCESS_KEY: "s",
      AWS_SESSION_TOKEN: "",
      AWS_REGION: "eu-central-1",
      AWS_ENDPOINT_URL: "http://127.0.0.1:1",
      AWS_ENDPOINT_URL_DYNAMODB: "http://127.0.0.1:2",
    };
    expect(clientConfigFromEnv(env, "DYNAMODB")).toEqual({
      region: "eu-central-1",
      endpoint: "http://127.0.0.1:2",
      credentials: { accessKeyId: "ASIAFUNCTION", secretAccessKey: "s" },
    });
    expect(clientConfigFromEnv(env, "SSM").endpoint).toBe("http://127.0.0.1:1");
    expect(credentialsFromEnv({ AWS_ACCESS_KEY_ID: "only-half" })).toEqual({});
  });
});
