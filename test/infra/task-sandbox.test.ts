import { writeFile } from "node:fs/promises";
import * as path from "node:path";
import { createInterface } from "node:readline";
import { CreateSecretCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { ImageConfigError, SandboxUnavailableError } from "#core/errors.ts";
import type { ContainerDefinition, Deployment, TaskVolume } from "../../infra/sim/deployment.ts";
import { WORKER_DOCKERFILE } from "../../infra/sim/dockerfile.ts";
import { LocalTasks } from "../../infra/sim/local-tasks.ts";
import { simClients } from "../../infra/sim/provision.ts";
import {
  imagePathsUnderTmp,
  readUserDb,
  resolveUser,
  type SandboxedContainer,
  TaskSandbox,
} from "../../infra/sim/task-sandbox.ts";
import { tempDir } from "../helpers/temp.ts";

/**
 * The task sandbox runs real processes under bubblewrap, as root, the way Fargate runs a
 * container. Each test states a Fargate rule and shows it from inside a container.
 */
const root = path.resolve(import.meta.dirname, "../..");
/** The image's `node` as the sandbox runs it: this machine's, or the node images' uid 1000. */
const node = resolveUser("node", readUserDb());

/** A Dockerfile like the worker's, but without `VOLUME ["/tmp"]`. */
async function dockerfileWithoutVolume(): Promise<string> {
  const file = path.join(await tempDir("strongroom-dockerfile-"), "Dockerfile");
  await writeFile(file, "FROM node:22-bookworm-slim\nENV NODE_ENV=production\nUSER node\n");
  return file;
}

/** The worker's task definitions' shape: a read-only root and a scratch volume at /tmp. */
const scratchAtTmp: Pick<SandboxedContainer, "definition" | "volumes"> = {
  definition: { ReadonlyRootFilesystem: true, MountPoints: [{ ContainerPath: "/tmp", SourceVolume: "scratch" }] },
  volumes: [{ Name: "scratch" }],
};

/** Runs `script` with node in the sandbox; its last stdout line is JSON. */
async function inside(
  sandbox: TaskSandbox,
  script: string,
  container: Partial<SandboxedContainer> = {},
): Promise<{ exitCode: number; result: Record<string, unknown>; stderr: string }> {
  const task = sandbox.run({
    ...scratchAtTmp,
    variables: {},
    agentVariables: {},
    ...container,
    argv: [process.execPath, "-e", script],
  });
  const lines: string[] = [];
  createInterface({ input: task.stdout }).on("line", (l) => lines.push(l));
  let stderr = "";
  task.stderr.on("data", (c: Buffer) => {
    stderr += c.toString();
  });
  const exitCode = await task.exitCode;
  return { exitCode, result: JSON.parse(lines.at(-1) ?? "{}") as Record<string, unknown>, stderr };
}

/** A script that tries to create a file at each path, and reports /tmp's owner and mode, and who it is. */
const probe = (paths: string[]) => `
const fs = require("node:fs");
const writes = {};
for (const p of ${JSON.stringify(paths)}) {
  try { fs.writeFileSync(p, "x"); writes[p] = "ok"; fs.rmSync(p); } catch (e) { writes[p] = e.code; }
}
const t = fs.statSync("/tmp");
console.log(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), tmp: { uid: t.uid, gid: t.gid, mode: (t.mode & 0o7777).toString(8) }, writes }));
`;

/**
 * A listing of /tmp without the machine paths that stand in for the image's files (a
 * checkout under /tmp, as a CI clone is): the sandbox binds those back, read-only.
 */
function withoutImagePaths<T extends { entries?: string[] }>(result: T): T {
  const planted = new Set(imagePathsUnderTmp().map((p) => p.split("/")[2]));
  return { ...result, entries: (result.entries ?? []).filter((e) => !planted.has(e)) };
}

describe("the task sandbox models Fargate's bind-mount volumes", () => {
  it("a non-root user cannot create a file in a volume at /tmp the image does not declare: Fargate creates it root-owned 0755", async () => {
    // GIVEN the image's USER node, and no VOLUME in its Dockerfile
    const sandbox = TaskSandbox.open({ dockerfile: await dockerfileWithoutVolume() });
    // WHEN the container writes to its scratch volume
    const { exitCode, result } = await inside(sandbox, probe(["/tmp/file"]));
    // THEN the volume is root's, 0755, and node is refused
    expect(exitCode).toBe(0);
    expect(result).toEqual({
      uid: node.uid,
      gid: node.gid,
      tmp: { uid: 0, gid: 0, mode: "755" },
      writes: { "/tmp/file": "EACCES" },
    });
  });

  it("the same user can when the image declares VOLUME /tmp: the volume starts as the image's /tmp, 1777", async () => {
    const sandbox = TaskSandbox.open({ dockerfile: WORKER_DOCKERFILE });
    const { result } = await inside(sandbox, probe(["/tmp/file"]));
    expect(result).toMatchObject({
      uid: node.uid,
      tmp: { uid: 0, gid: 0, mode: "1777" },
      writes: { "/tmp/file": "ok" },
    });
  });

  it("each task gets a fresh, empty volume", async () => {
    const sandbox = TaskSandbox.open();
    const leave = `require("node:fs").writeFileSync("/tmp/left", "x"); console.log(JSON.stringify({}))`;
    expect((await inside(sandbox, leave)).exitCode).toBe(0);
    const { result } = await inside(
      sandbox,
      `console.log(JSON.stringify({ entries: require("node:fs").readdirSync("/tmp") }))`,
    );
    expect(withoutImagePaths(result)).toEqual({ entries: [] });
  });
});

describe("the task sandbox models a read-only root filesystem", () => {
  it("with ReadonlyRootFilesystem, neither the image's user nor root can write to / or the checkout (EROFS)", async () => {
    const sandbox = TaskSandbox.open();
    const paths = [
      "/sandbox-probe",
      path.join(root, "sandbox-probe"),
      path.join(root, "node_modules", "sandbox-probe"),
    ];
    for (const User of [undefined, "0"]) {
      const { result } = await inside(sandbox, probe(paths), {
        definition: { ...scratchAtTmp.definition, ...(User ? { User } : {}) },
      });
      expect(result.uid, `user ${User ?? "from the image"}`).toBe(User === "0" ? 0 : node.uid);
      expect(result.writes).toEqual(Object.fromEntries(paths.map((p) => [p, "EROFS"])));
    }
  });

  it("a container with no volume at /tmp sees the image's empty, read-only /tmp, not this machine's", async () => {
    const sandbox = TaskSandbox.open();
    const { result } = await inside(
      sandbox,
      `const fs = require("node:fs"); let w; try { fs.writeFileSync("/tmp/x", ""); w = "ok"; } catch (e) { w = e.code; }
       console.log(JSON.stringify({ entries: fs.readdirSync("/tmp"), write: w }))`,
      { definition: { ReadonlyRootFilesystem: true }, volumes: [] },
    );
    expect(withoutImagePaths(result)).toEqual({ entries: [], write: "EROFS" });
  });

  it("refuses a writable root filesystem, which it cannot model, naming the option that can", () => {
    const sandbox = TaskSandbox.open();
    expect(() =>
      sandbox.run({ ...scratchAtTmp, definition: {}, argv: ["/bin/true"], variables: {}, agentVariables: {} }),
    ).toThrow(SandboxUnavailableError);
  });
});

describe("the task sandbox runs the container as its user, with Docker's rights", () => {
  it("root gets exactly Docker's default capabilities; any other user none", async () => {
    const sandbox = TaskSandbox.open();
    const caps = `console.log(JSON.stringify({ eff: require("node:fs").readFileSync("/proc/self/status", "utf8").match(/CapEff:\\s*(\\w+)/)[1] }))`;
    const asRoot = await inside(sandbox, caps, { definition: { ...scratchAtTmp.definition, User: "0" } });
    // The well-known CapEff of a Docker container running as root.
    expect(asRoot.result).toEqual({ eff: "00000000a80425fb" });
    const asNode = await inside(sandbox, caps);
    expect(asNode.result).toEqual({ eff: "0000000000000000" });
  });

  it("resolves users as Docker does: a name by /etc/passwd, a bare uid with gid 0 and HOME=/, the image's node by its uid", () => {
    const db = readUserDb();
    expect(resolveUser("0", db)).toEqual({ uid: 0, gid: 0, home: "/root", initGroups: true });
    expect(resolveUser("root", db)).toEqual({ uid: 0, gid: 0, home: "/root", initGroups: true });
    const postgres = db.users.find((u) => u.name === "postgres");
    expect(resolveUser("postgres", db)).toMatchObject({ uid: postgres?.uid, gid: postgres?.gid });
    expect(resolveUser("4242", db)).toEqual({ uid: 4242, gid: 0, home: "/", initGroups: false });
    expect(resolveUser("4242:4343", db)).toMatchObject({ uid: 4242, gid: 4343 });
    expect(resolveUser("root:postgres", db)).toMatchObject({ uid: 0, gid: postgres?.gid });
    const machineNode = db.users.find((u) => u.name === "node");
    expect(resolveUser("node", db)).toEqual(
      machineNode
        ? { uid: machineNode.uid, gid: machineNode.gid, home: machineNode.home, initGroups: true }
        : { uid: 1000, gid: 1000, home: "/home/node", initGroups: false },
    );
    expect(() => resolveUser("nobody-here", db)).toThrow(ImageConfigError);
    expect(() => resolveUser("node:", db)).toThrow(/is not name, uid, name:group or uid:gid/);
  });

  it("stopping a task sends SIGTERM to the container's first process, PID 1 of its own namespace", async () => {
    const sandbox = TaskSandbox.open();
    const task = sandbox.run({
      ...scratchAtTmp,
      variables: {},
      agentVariables: {},
      argv: [
        process.execPath,
        "-e",
        `process.on("SIGTERM", () => { console.log("pid " + process.pid + " got SIGTERM"); process.exit(143); }); console.log("ready"); setInterval(() => {}, 1000);`,
      ],
    });
    const lines: string[] = [];
    const reader = createInterface({ input: task.stdout });
    await new Promise<void>((resolve) =>
      reader.on("line", (l) => {
        lines.push(l);
        if (l === "ready") resolve();
      }),
    );
    task.stop();
    expect(await task.exitCode).toBe(143);
    expect(lines).toContain("pid 1 got SIGTERM");
  });

  it("without bubblewrap the sim refuses to start, saying how to install it", () => {
    let err: unknown;
    try {
      TaskSandbox.open({ bwrap: "/nonexistent/bwrap" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SandboxUnavailableError);
    expect((err as SandboxUnavailableError).message).toMatch(/^bubblewrap is not installed/);
    expect((err as SandboxUnavailableError).hint).toMatch(/apt-get install bubblewrap/);
    expect((err as SandboxUnavailableError).hint).toMatch(/--no-sandbox/);
  });
});

/** `container` run by LocalTasks as a flow's `ecs:runTask.sync` state runs it, `entrypoint` standing in for the image's. */
async function runTask(container: ContainerDefinition, entrypoint: string[], lines: string[]): Promise<unknown> {
  const taskDefinition = "arn:aws:ecs:us-east-1:123456789012:task-definition/t:1";
  const deployment = {
    place: { account: "123456789012", region: "us-east-1" },
    flows: new Map(),
    functions: new Map(),
    taskDefinitions: new Map([
      [
        taskDefinition,
        { arn: taskDefinition, containers: [container], volumes: [{ Name: "scratch" }] as TaskVolume[] },
      ],
    ]),
  } as unknown as Deployment;
  const tasks = new LocalTasks({
    deployment,
    clients: simClients(),
    record: { published: [], metrics: [] },
    log: (l) => lines.push(l),
    entrypoint,
  });
  const handler = tasks.handlersFor({
    name: "Flow",
    arn: "arn:aws:states:us-east-1:123456789012:stateMachine:Flow",
    roleArn: "arn:aws:iam::123456789012:role/FlowRole",
    definition: { StartAt: "Run", States: { Run: { Type: "Task", Resource: "arn:aws:states:::ecs:runTask.sync" } } },
  }).Run;
  return handler?.({ Cluster: "arn:aws:ecs:us-east-1:123456789012:cluster/c", TaskDefinition: taskDefinition });
}

describe("an ECS task in the sim", () => {
  const ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret";
  beforeAll(() => {
    // One moto serves S3 and Secrets Manager, as the sim would start it.
    process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = inject("s3Endpoint");
  });

  it("gets as its environment exactly the image's ENV, the definition's variables and secrets, and the documented agent and stand-in variables: nothing of the sim's leaks", async () => {
    // GIVEN a variable in the sim's environment that no task may see
    process.env.STRONGROOM_CANARY = "leaked";
    const secretName = `sandbox-env-${process.pid}-${Date.now()}`;
    await new SecretsManagerClient({}).send(
      new CreateSecretCommand({ Name: secretName, SecretString: JSON.stringify({ password: "s3cret" }) }),
    );
    const container: ContainerDefinition = {
      Name: "worker",
      ReadonlyRootFilesystem: true,
      MountPoints: [{ ContainerPath: "/tmp", SourceVolume: "scratch" }],
      Environment: [{ Name: "STRONGROOM_STORE", Value: "s3://bucket/pg" }],
      Secrets: [{ Name: "PGPASSWORD", ValueFrom: `${ARN}:${secretName}-AbCdEf:password::` }],
    };
    const lines: string[] = [];
    try {
      // WHEN the flow runs the task
      // The image's entrypoint replaced by one that prints its environment.
      await runTask(container, [process.execPath, "-e", "console.log(JSON.stringify(process.env))"], lines);
    } finally {
      delete process.env.STRONGROOM_CANARY;
    }
    // THEN its environment holds exactly these
    const env = JSON.parse((lines.at(-1) ?? "").replace(/^\[Run\] /, "")) as Record<string, string>;
    const endpoints = Object.keys(process.env).filter((k) => k.startsWith("AWS_ENDPOINT_URL"));
    expect(Object.keys(env).sort()).toEqual(
      [
        // the image: Docker's PATH, the Dockerfile's ENV, HOME of its user
        "PATH",
        "NODE_ENV",
        "STRONGROOM_STAGING_DIR",
        "STRONGROOM_SCRATCH_DIR",
        "HOME",
        // the ECS agent
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        // the sim's stand-ins for AWS's endpoints and the task role's credentials
        ...endpoints,
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        ...(process.env.AWS_SESSION_TOKEN ? ["AWS_SESSION_TOKEN"] : []),
        ...(process.env.PG_BIN_DIRS ? ["PG_BIN_DIRS"] : []),
        // the task definition
        "STRONGROOM_STORE",
        "PGPASSWORD",
      ].sort(),
    );
    expect(env).toMatchObject({
      HOME: node.home,
      PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      STRONGROOM_STAGING_DIR: "/tmp",
      AWS_EXECUTION_ENV: "AWS_ECS_FARGATE",
      PGPASSWORD: "s3cret",
    });
    expect(env.TMPDIR).toBeUndefined();
    expect(env.STRONGROOM_CANARY).toBeUndefined();
  });

  it("whose user the image lacks does not start, as Docker refuses it: TaskFailedToStart, no exit code", async () => {
    const container: ContainerDefinition = { ...scratchAtTmp.definition, Name: "worker", User: "nobody-here" };
    const err = (await runTask(container, ["/bin/true"], []).catch((e: unknown) => e)) as Error;
    expect(err.name).toBe("States.TaskFailed");
    expect(JSON.parse(err.message)).toMatchObject({
      StopCode: "TaskFailedToStart",
      StoppedReason: "CannotStartContainerError: unable to find user nobody-here: no matching entries in passwd file",
      Containers: [{ Name: "worker", LastStatus: "STOPPED", Reason: "CannotStartContainerError" }],
    });
  });
});
