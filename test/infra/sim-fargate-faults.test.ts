import { readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { WORKER_DOCKERFILE } from "../../infra/sim/dockerfile.ts";
import { Sim } from "../../infra/sim/sim.ts";
import { identityFile } from "../helpers/fixture.ts";
import { createDatabase, sql } from "../helpers/pg.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * Faults that only Fargate's way of running a task shows, caught by npm run sim's task
 * sandbox: the synthesized template's flows run against the stand-ins, with the task
 * definitions or the image varied as a mistake would vary them. Nothing is mocked.
 */
const ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret";
const secretArn = (name: string) => `${ARN}:faults/${name}-AbCdEf`;

let configFile: string;
let sim: Sim | undefined;

beforeAll(async () => {
  process.env.AWS_ENDPOINT_URL_SNS = inject("s3Endpoint");
  process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = inject("s3Endpoint");
  process.env.AWS_ENDPOINT_URL_SSM = inject("s3Endpoint");
  const source = await createDatabase(inject("pgUrl"), "faultsrc");
  await sql(source.url, "create table t (id int primary key); insert into t select generate_series(1, 100);");
  const pg = new URL(inject("pgUrl"));
  const key = await identityFile();
  configFile = path.join(await tempDir("strongroom-faults-"), "sim.config.json");
  await writeFile(
    configFile,
    JSON.stringify({
      name: `faults${process.pid}`,
      prefix: "pg",
      bucket: { create: true },
      recipients: [key.recipient],
      identitySecretArn: secretArn("identity"),
      network: { create: true },
      databases: [
        { id: "shop", secretArn: secretArn("shop"), host: pg.hostname, port: Number(pg.port), dbname: source.name },
      ],
      sim: {
        secrets: {
          [secretArn("identity")]: key.identity,
          [secretArn("shop")]: {
            username: decodeURIComponent(pg.username),
            password: decodeURIComponent(pg.password),
          },
        },
      },
    }),
  );
});

afterEach(async () => {
  await sim?.stop();
  sim = undefined;
});

/** The sim with the image of `dockerfile`, and the verify task definitions' `User` removed, so they run as the image's user. */
async function simWithVerifyAsImageUser(dockerfile: string, log: string[]): Promise<Sim> {
  const started = await Sim.start({ configFile, sandbox: { dockerfile }, log: (l) => log.push(l) });
  for (const def of started.deployment.taskDefinitions.values()) {
    if (def.arn.includes("_verify_")) for (const c of def.containers) delete c.User;
  }
  return started;
}

describe("npm run sim fails where Fargate would", () => {
  it("a verify task run as the image's node user, from an image without VOLUME /tmp, cannot write its scratch volume: VerifyFlow fails", async () => {
    // GIVEN the verify task definition without `user: "0"` and the Dockerfile without VOLUME ["/tmp"]
    const dockerfile = path.join(await tempDir("strongroom-dockerfile-"), "Dockerfile");
    await writeFile(dockerfile, (await readFile(WORKER_DOCKERFILE, "utf8")).replace(/^VOLUME .*$/m, ""));
    const log: string[] = [];
    sim = await simWithVerifyAsImageUser(dockerfile, log);
    expect((await sim.run("BackupFlow", { databaseId: "shop" })).status).toBe("SUCCEEDED");

    // WHEN VerifyFlow runs the task
    const result = await sim.run("VerifyFlow", { databaseId: "shop" });

    // THEN the task fails on /tmp, as blocker 1 did on Fargate
    expect(result.status).toBe("FAILED");
    expect(result.states).toContain("Record failed verification");
    const task = log.filter((l) => l.startsWith("[Run verify task]")).join("\n");
    expect(task).toMatch(/EACCES/);
    expect(task).toMatch(/\/tmp\//);
  }, 180_000);

  it("the same task from the image as it is (VOLUME /tmp) gets past its scratch volume: VerifyFlow succeeds", async () => {
    const log: string[] = [];
    sim = await simWithVerifyAsImageUser(WORKER_DOCKERFILE, log);
    expect((await sim.run("BackupFlow", { databaseId: "shop" })).status).toBe("SUCCEEDED");
    const result = await sim.run("VerifyFlow", { databaseId: "shop" });
    expect(result.status, log.join("\n")).toBe("SUCCEEDED");
  }, 180_000);
});
