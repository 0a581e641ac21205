import { readFileSync } from "node:fs";
import * as path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { generateSigningKey } from "#core/audit/row-signature.ts";
import { InvalidConfigError, StrongroomError } from "#core/errors.ts";
import { dstProblems } from "../../infra/config/dst.ts";
import {
  DEFAULTS,
  fargateMemoryOptions,
  loadConfig,
  parseConfig,
  scheduleProblem,
} from "../../infra/config/load-config.ts";
import { largestTask } from "../../infra/stacks/strongroom-stack.ts";
import { mutated } from "../fuzz/mutate.ts";

const root = path.resolve(import.meta.dirname, "../..");
const example = () => JSON.parse(readFileSync(path.join(root, "strongroom.config.example.json"), "utf8"));

function problemsOf(raw: unknown, purpose: "deploy" | "sim" = "deploy"): string[] {
  try {
    parseConfig(raw, "c.json", purpose);
  } catch (err) {
    expect(err).toBeInstanceOf(StrongroomError);
    expect((err as StrongroomError).name).toBe("InvalidConfigError");
    return (err as Error).message.split("\n").slice(1);
  }
  return [];
}

describe("strongroom.config.json", () => {
  it("accepts the example and fills each database's settings from the defaults", () => {
    const config = parseConfig(example(), "example");
    expect(config.databases.map((d) => [d.id, d.schedule, d.timeZone, d.retention])).toEqual([
      ["shop", "cron(0 4 * * ? *)", "Europe/Berlin", { daily: 7, weekly: 4, monthly: 12 }],
      ["billing", "cron(30 1 * * ? *)", "Europe/Berlin", { daily: 14, weekly: 4, monthly: 12 }],
    ]);
    expect(config.databases[0]?.task).toEqual({ cpu: 1024, memoryMiB: 2048, ephemeralGiB: 21 });
  });

  it("accepts docs/sim.md's npm run sim config for the sim, and refuses it for a deploy", () => {
    const page = readFileSync(path.join(root, "docs/sim.md"), "utf8");
    const after = page.slice(page.indexOf("The config is a normal one"));
    const block = /```json\n([\s\S]*?)```/.exec(after)?.[1] as string;
    const config = parseConfig(JSON.parse(block), "docs/sim.md", "sim");
    expect(Object.keys(config.sim?.secrets ?? {})).toEqual([config.identitySecretArn, config.databases[0]?.secretArn]);
    expect(problemsOf(JSON.parse(block))).toEqual([
      "sim: holds secret values for `npm run sim` only; remove it from a config you deploy",
    ]);
  });

  it("gives every database a daily verification by default, unverified after two days, and checks a verify schedule like any other", () => {
    const config = parseConfig(example(), "example");
    expect(config.databases.map((d) => d.verify)).toEqual([
      { schedule: "cron(0 5 * * ? *)", deep: false, maxAgeDays: 2, skipExtensions: [], storage: "auto" },
      { schedule: "cron(0 5 * * ? *)", deep: false, maxAgeDays: 2, skipExtensions: [], storage: "auto" },
    ]);
    const raw = example();
    raw.databases[1].verify = { schedule: "cron(0 5 * * SUN *)", deep: "yes" };
    expect(problemsOf(raw)).toEqual([
      "databases[1].verify.deep: must be boolean",
      "databases[1].verify.schedule: cron(…) needs ? in exactly one of day-of-month and day-of-week",
    ]);
    raw.databases[1].verify = { schedule: "cron(0 5 * * SUN *)" };
    expect(problemsOf(raw)).toEqual([
      "databases[1].verify.schedule: cron(…) needs ? in exactly one of day-of-month and day-of-week",
    ]);
  });

  it("puts a database's verify runs on an EBS volume when its verify.storage says ebs, and refuses any other kind", () => {
    const raw = example();
    raw.databases[0].verify = { storage: "ebs" };
    expect(parseConfig(raw, "example").databases.map((d) => d.verify.storage)).toEqual(["ebs", "auto"]);
    raw.databases[0].verify = { storage: "gp3" };
    expect(problemsOf(raw)).toEqual([
      expect.stringMatching(/^databases\[0\]\.verify\.storage: must be (one of|equal to one of)/),
    ]);
  });

  it("takes the extensions verify skips as names, and refuses what is not one (no flags, no SQL)", () => {
    const raw = example();
    raw.databases[0].verify = { skipExtensions: ["aws_s3", "aws_commons", "uuid-ossp"] };
    expect(parseConfig(raw, "example").databases[0]?.verify.skipExtensions).toEqual([
      "aws_s3",
      "aws_commons",
      "uuid-ossp",
    ]);
    raw.databases[0].verify = { skipExtensions: ["--deep", "x; drop table t", "aws_s3", "aws_s3"] };
    expect(problemsOf(raw).join("\n")).toMatch(/databases\[0\]\.verify\.skipExtensions/);
    expect(problemsOf(raw).length).toBeGreaterThanOrEqual(2);
  });

  it("reports every problem at once, one line each, naming the field: the schema's first, then the checks after it", () => {
    const raw = example();
    raw.surprise = 1;
    raw.alarmEmail = "ops";
    raw.recipients = ["AGE-SECRET-KEY-1QQQ", "age1short"];
    raw.defaults.timeZone = "Mars/Olympus";
    raw.databases[0].schedule = "cron(0 2 * * * *)";
    raw.databases[1].id = "shop";
    raw.databases[1].secretArn = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:rds/billing";
    raw.databases[1].retention = { daily: 0, weekly: 0, monthly: 0 };
    raw.databases[1].task = { cpu: 256, memoryMiB: 4096 };
    expect(problemsOf(raw)).toEqual([
      "surprise: unknown field",
      "alarmEmail: must be an email address",
      "databases[1].secretArn: must be the full ARN of a Secrets Manager secret, with the 6-character suffix (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf)",
      "recipients[0]: a recipient is a private identity (AGE-SECRET-KEY-1…), not a public key",
      'recipients[1]: invalid recipient "age1s…" (9 characters)',
      'defaults.timeZone: unknown time zone "Mars/Olympus" (use an IANA name, e.g. Europe/Berlin)',
      "databases[0].schedule: cron(…) needs ? in exactly one of day-of-month and day-of-week",
      "databases[1].retention: keeps nothing (0/0/0)",
      "databases[1].task: memoryMiB 4096 does not go with cpu 256 on Fargate (512, 1024, 2048 MiB)",
      'databases[1].id: duplicate id "shop"',
    ]);
  });

  it("skips only the checks that read a value the schema failed, and reports that value's problem instead", () => {
    const raw = example();
    // Not checked further: a task size that is not one, a retention that is not numbers.
    raw.defaults.task = { cpu: "big" };
    raw.databases[1].retention = { daily: "all" };
    // Checked as usual, beside them.
    raw.databases[1].timeZone = "Mars/Olympus";
    expect(problemsOf(raw)).toEqual([
      "defaults.task.cpu: must be integer",
      "defaults.task.cpu: must be equal to one of the allowed values",
      "databases[1].retention.daily: must be integer",
      'databases[1].timeZone: unknown time zone "Mars/Olympus" (use an IANA name, e.g. Europe/Berlin)',
    ]);
  });

  it("refuses a config changed in several places anywhere with InvalidConfigError only, one problem a line, or accepts it", () => {
    fc.assert(
      fc.property(mutated(example()).chain(mutated).chain(mutated), (raw) => {
        let lines: string[] | undefined;
        try {
          parseConfig(raw, "c.json");
        } catch (err) {
          expect(err).toBeInstanceOf(InvalidConfigError);
          lines = (err as InvalidConfigError).problems;
        }
        if (lines === undefined) return;
        expect(lines.length).toBeGreaterThan(0);
        for (const line of lines) expect(line).toMatch(/^c\.json: [^\n]+$/);
      }),
      { numRuns: 300 },
    );
  });

  it("names a file it cannot read, and why in words", () => {
    expect(() => loadConfig("/nonexistent/strongroom.config.json")).toThrow(
      "cannot read /nonexistent/strongroom.config.json: no such file",
    );
  });

  it("names a missing field, a wrong shape and a secret ARN without its suffix", () => {
    const raw = example();
    delete raw.identitySecretArn;
    raw.bucket = { create: true, name: "both" };
    raw.databases[0].secretArn = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:rds/shop";
    expect(problemsOf(raw)).toEqual([
      "identitySecretArn: required",
      'bucket: must be {"create": true, "objectLock"?: {"mode", "days"}} or {"name": "existing-bucket"}',
      "databases[0].secretArn: must be the full ARN of a Secrets Manager secret, with the 6-character suffix (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf)",
    ]);
  });

  it("refuses the sim section in a config to deploy, and accepts it for npm run sim", () => {
    const raw = { ...example(), sim: { secrets: {} } };
    expect(problemsOf(raw)).toEqual([
      "sim: holds secret values for `npm run sim` only; remove it from a config you deploy",
    ]);
    expect(problemsOf(raw, "sim")).toEqual([]);
  });

  it.each([
    ["cron(0 2 * * ? *)", undefined],
    ["cron(15 3 ? * MON-FRI *)", undefined],
    ["rate(1 day)", undefined],
    ["rate(12 hours)", undefined],
    ["at(2026-12-01T02:00:00)", undefined],
    ["rate(1 days)", 'write rate(1 unit): "1 day", "2 days"'],
    ["cron(0 2 * * *)", "cron(…) takes 6 fields (minutes hours day-of-month month day-of-week year), got 5"],
    ["0 2 * * *", '"0 2 * * *" is not rate(…), cron(…) or at(…)'],
    ["cron(0 2 * * ? *)\nrate(1 day)", '"cron(0 2 * * ? *)\\nrate(1 day)" is not rate(…), cron(…) or at(…)'],
  ])("checks the schedule expression %j", (expression, problem) => {
    expect(scheduleProblem(expression)).toBe(problem);
  });
});

describe("where a task connects (ECS refuses to start a task whose secret lacks a key its definition names)", () => {
  it("takes host, port and dbname from the config for an RDS-managed secret, which holds only username and password", () => {
    const config = parseConfig(example(), "example");
    expect(config.databases.map((d) => d.connection)).toEqual([
      {
        tls: "rds",
        host: "shop.cluster-abc123.eu-central-1.rds.amazonaws.com",
        port: 5432,
        dbname: "shop",
        fromSecret: [],
      },
      {
        tls: "rds",
        host: "billing.cluster-abc123.eu-central-1.rds.amazonaws.com",
        port: 5433,
        dbname: "billing",
        fromSecret: [],
      },
    ]);
    expect(config.restoreTargets[0]?.connection).toEqual({ tls: "rds", fromSecret: ["host", "port", "dbname"] });
  });

  it("refuses at synth a database whose host or dbname is neither in the config nor said to be in its secret", () => {
    const raw = example();
    delete raw.databases[0].host;
    delete raw.databases[1].dbname;
    raw.restoreTargets[0].secretHas = ["port"];
    expect(problemsOf(raw)).toEqual([
      'databases[0].host: required (an RDS-managed secret holds only username and password); or add "host" to secretHas if the secret holds it',
      'databases[1].dbname: required (an RDS-managed secret holds only username and password); or add "dbname" to secretHas if the secret holds it',
      'restoreTargets[0].host: required (an RDS-managed secret holds only username and password); or add "host" to secretHas if the secret holds it',
      'restoreTargets[0].dbname: required (an RDS-managed secret holds only username and password); or add "dbname" to secretHas if the secret holds it',
    ]);
  });

  it("refuses a value given in the config and also said to be in the secret, and a key the secret cannot hold", () => {
    const raw = example();
    raw.databases[0].secretHas = ["host"];
    expect(problemsOf(raw)).toEqual(["databases[0].host: given here and listed in secretHas; take it from one place"]);
    raw.databases[0].secretHas = ["password"];
    expect(problemsOf(raw)).toEqual(["databases[0].secretHas[0]: must be equal to one of the allowed values"]);
  });

  it("warns when a database has no restore secret, since restores then need the backup role to CREATE DATABASE", () => {
    const raw = example();
    delete raw.databases[1].restoreSecretArn;
    const config = parseConfig(raw, "c.json");
    expect(config.databases[1]?.restoreSecretArn).toBe(raw.databases[1].secretArn);
    expect(config.warnings.filter((w) => w.includes("restoreSecretArn"))).toEqual([
      "databases[1].restoreSecretArn: not set, so restores connect with the backup secret; its role must be able to CREATE DATABASE, which a least-privilege backup role cannot",
    ]);
  });
});

describe("a database with walArchiving", () => {
  const signer = generateSigningKey().signer;
  const withWal = (fields: Record<string, unknown>) => {
    const raw = example();
    raw.databases[0] = { ...raw.databases[0], ...fields };
    return raw;
  };

  it("takes the host's signers and the archive-age limit, and gives the database its wal settings", () => {
    const config = parseConfig(withWal({ walArchiving: true, walSigners: [signer], maxWalAgeMinutes: 15 }), "c.json");
    expect(config.databases[0]?.wal).toEqual({ signers: [signer], maxAgeMinutes: 15 });
    expect(parseConfig(withWal({ walArchiving: true, walSigners: [signer] }), "c.json").databases[0]?.wal).toEqual({
      signers: [signer],
    });
    expect(config.databases[1]?.wal).toBeUndefined();
  });

  it("takes base backups by mode (physical or both) only with walArchiving; logical by default", () => {
    expect(parseConfig(example(), "c.json").databases[0]?.mode).toBe("logical");
    expect(
      parseConfig(withWal({ walArchiving: true, walSigners: [signer], mode: "physical" }), "c.json").databases[0]?.mode,
    ).toBe("physical");
    expect(problemsOf(withWal({ mode: "both" }))).toEqual([
      'databases[0].mode: "both" takes base backups, which need "walArchiving": true (and walSigners): the server must archive its WAL here',
    ]);
    expect(problemsOf(withWal({ walArchiving: true, walSigners: [signer], mode: "wal" })).join("\n")).toMatch(/mode/);
  });

  it("refuses more than 16 walSigners, the most the retention function takes", () => {
    const many = Array.from({ length: 17 }, (_, i) => `srsigner1${String(i).padStart(43, "A")}`);
    expect(problemsOf(withWal({ walArchiving: true, walSigners: many })).join("\n")).toMatch(
      /databases\[0\]\.walSigners: .*16/,
    );
  });

  it("refuses walArchiving without a signer, a signer that is not one, and the wal fields without walArchiving", () => {
    expect(problemsOf(withWal({ walArchiving: true }))).toEqual([
      expect.stringMatching(
        /^databases\[0\]\.walSigners: required with walArchiving: the database host's public signer/,
      ),
    ]);
    expect(problemsOf(withWal({ walArchiving: true, walSigners: ["srsigner1x", `${signer}\n`] }))).toEqual([
      expect.stringMatching(/^databases\[0\]\.walSigners\[0\]: not a strongroom signer/),
      expect.stringMatching(/^databases\[0\]\.walSigners\[1\]: not a strongroom signer/),
    ]);
    expect(problemsOf(withWal({ walSigners: [signer], maxWalAgeMinutes: 15 }))).toEqual([
      'databases[0]: walSigners and maxWalAgeMinutes belong to a database with "walArchiving": true',
    ]);
    expect(problemsOf(withWal({ walArchiving: "false", walSigners: [signer] })).join("\n")).toMatch(/walArchiving/);
    expect(problemsOf(withWal({ walArchiving: true, walSigners: [signer], maxWalAgeMinutes: 0 })).join("\n")).toMatch(
      /maxWalAgeMinutes/,
    );
  });
});

describe("Fargate task sizes", () => {
  it("sizes restore-target tasks to hold any database: the largest CPU/memory pair, and the most ephemeral storage", () => {
    const size = (cpu: number, memoryMiB: number, ephemeralGiB: number) => ({ task: { cpu, memoryMiB, ephemeralGiB } });
    const task = largestTask([size(1024, 2048, 100), size(2048, 8192, 21), size(512, 1024, 50)]);
    expect(task).toEqual({ cpu: 2048, memoryMiB: 8192, ephemeralGiB: 100 });
    expect(fargateMemoryOptions(task.cpu)).toContain(task.memoryMiB);
  });

  /** AWS's table of supported task CPU and memory (Amazon ECS developer guide, task size), in MiB. */
  const GB = 1024;
  const range = (from: number, to: number, step: number) =>
    Array.from({ length: (to - from) / step + 1 }, (_, i) => (from + i * step) * GB);
  const AWS_TABLE: Record<number, number[]> = {
    256: [512, 1 * GB, 2 * GB],
    512: range(1, 4, 1),
    1024: range(2, 8, 1),
    2048: range(4, 16, 1),
    4096: range(8, 30, 1),
    8192: range(16, 60, 4),
    16384: range(32, 120, 8),
  };

  it.each(Object.keys(AWS_TABLE).map(Number))("accepts exactly AWS's memory sizes for cpu %i", (cpu) => {
    expect(fargateMemoryOptions(cpu)).toEqual(AWS_TABLE[cpu]);
  });

  it("refuses 256 CPU with 1536 MiB, which AWS does not offer", () => {
    const raw = example();
    raw.databases[0].task = { cpu: 256, memoryMiB: 1536 };
    expect(problemsOf(raw)).toEqual([
      "databases[0].task: memoryMiB 1536 does not go with cpu 256 on Fargate (512, 1024, 2048 MiB)",
    ]);
  });
});

describe("schedules across daylight-saving changes (EventBridge Scheduler skips a local time that does not exist, runs a repeated one once)", () => {
  const from = new Date("2027-01-01T00:00:00Z");

  it("warns about a schedule in a gap or an overlap of its zone, naming the day", () => {
    const raw = example();
    raw.databases[0].schedule = "cron(0 2 * * ? *)";
    const config = parseConfig(raw, "example");
    expect(config.warnings).toEqual([
      expect.stringMatching(
        /^databases\[0\]\.schedule: 02:00 does not exist on \d{4}-03-\d\d in Europe\/Berlin: that run is skipped$/,
      ),
      expect.stringMatching(
        /^databases\[0\]\.schedule: 02:00 happens twice on \d{4}-10-\d\d in Europe\/Berlin: it runs once$/,
      ),
    ]);
    expect(parseConfig(example(), "example").warnings).toEqual([]);
  });

  it.each([
    [
      "cron(0 2 * * ? *)",
      "Europe/Berlin",
      [
        "02:00 does not exist on 2027-03-28 in Europe/Berlin: that run is skipped",
        "02:00 happens twice on 2027-10-31 in Europe/Berlin: it runs once",
      ],
    ],
    ["cron(30 1 * * ? *)", "America/New_York", ["01:30 happens twice on 2027-11-07 in America/New_York: it runs once"]],
    [
      "cron(0 2 * * ? *)",
      "Pacific/Auckland",
      [
        "02:00 does not exist on 2027-09-26 in Pacific/Auckland: that run is skipped",
        "02:00 happens twice on 2027-04-04 in Pacific/Auckland: it runs once",
      ],
    ],
    ["cron(0 2 * * ? *)", "UTC", []],
    [
      "cron(0,30 1-2 * * ? *)",
      "Europe/London",
      [
        "01:00 does not exist on 2027-03-28 in Europe/London: that run is skipped",
        "01:00 happens twice on 2027-10-31 in Europe/London: it runs once",
        "01:30 does not exist on 2027-03-28 in Europe/London: that run is skipped",
        "01:30 happens twice on 2027-10-31 in Europe/London: it runs once",
      ],
    ],
    ["rate(1 day)", "Europe/Berlin", []],
  ])("%s in %s", (expression, zone, expected) => {
    expect(dstProblems(expression, zone, from)).toEqual(expected);
  });

  it("never has a problem with the default schedules, in any time zone", () => {
    const bad = Intl.supportedValuesOf("timeZone").flatMap((zone) =>
      [DEFAULTS.schedule, DEFAULTS.verify.schedule].flatMap((e) => dstProblems(e, zone, from)),
    );
    expect(bad).toEqual([]);
  });
});
