import { describe, expect, it } from "vitest";
import { serverEnv } from "./scratch-cluster.ts";

describe("the scratch server's environment", () => {
  it("is built from an allowlist: none of the worker's secrets, credentials or libpq settings reach it", () => {
    const worker: NodeJS.ProcessEnv = {
      STRONGROOM_IDENTITY: "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ",
      STRONGROOM_IDENTITY_FILE: "/etc/strongroom/identity.txt",
      STRONGROOM_STORE: "file:///var/backups/pg",
      AWS_ACCESS_KEY_ID: "AKIAEXAMPLE",
      AWS_SECRET_ACCESS_KEY: "secret",
      AWS_SESSION_TOKEN: "token",
      AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: "/v2/credentials/0b8d4f3c",
      AWS_CONTAINER_AUTHORIZATION_TOKEN: "token",
      DATABASE_URL: "postgres://app:pw@db/shop",
      PGPASSWORD: "pw",
      HOME: "/root",
      LD_PRELOAD: "/tmp/evil.so",
      PATH: "/opt/anything/bin:/usr/bin",
      LANG: "en_US.UTF-8",
    };
    expect(serverEnv(worker)).toEqual({ LC_ALL: "C", PATH: "/usr/bin:/bin" });
  });

  it("keeps the time zone, which is no secret, so that the server's clock reads as the worker's", () => {
    expect(serverEnv({ TZ: "Europe/Paris", AWS_SECRET_ACCESS_KEY: "secret" })).toEqual({
      LC_ALL: "C",
      PATH: "/usr/bin:/bin",
      TZ: "Europe/Paris",
    });
  });
});
