import { spawn } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import * as os from "node:os";
import { constants } from "node:os";
import * as path from "node:path";
import type { Readable } from "node:stream";
import { ImageConfigError, SandboxUnavailableError } from "#core/errors.ts";
import type { ContainerDefinition, TaskVolume } from "./deployment.ts";
import { type ImageConfig, readImageConfig, WORKER_DOCKERFILE } from "./dockerfile.ts";

/**
 * A container definition's command run as Fargate would run it, so that the sim fails
 * wherever Fargate would. bubblewrap (as root) gives the process:
 *
 * - the definition's `User`, else the image's `USER`, else root; names resolved in this
 *   machine's /etc/passwd and /etc/group, which stand in for the image's (IMAGE_USERS
 *   for the image's own users this machine lacks); supplementary groups as Docker sets
 *   them; as root, Docker's default capabilities and no others;
 * - this machine's root filesystem, read-only, as the image's: the worker runs from the
 *   checkout with this machine's node and PostgreSQL binaries, and nothing of the
 *   checkout is writable;
 * - writable only the definition's mount points, each volume a fresh empty directory,
 *   root-owned 0755 as Fargate creates a bind-mount volume, unless the image declares a
 *   VOLUME at that path: then the owner and mode of the image's directory there (Docker
 *   copies it into the volume; its contents, empty for /tmp, are not copied);
 * - the environment Docker and the ECS agent give a container and nothing of the sim's:
 *   containerEnvironment;
 * - its own PID and IPC namespaces, a minimal /proc and /dev, /dev/shm writable by all,
 *   the machine's /tmp hidden; the network shared, so tasks reach the stand-ins and
 *   PostgreSQL on 127.0.0.1.
 *
 * An EBS volume configured at launch is a fresh directory too, root-owned 0755 as a new
 * filesystem's root is, for a root container user (other users: refused).
 *
 * Not modelled: a writable root filesystem (refused), EFS and host volumes (refused), the
 * task's CPU, memory and ephemeral storage limits, networking and security groups, IAM.
 * bubblewrap also sets no_new_privs, which Docker does not by default: a setuid program
 * in the task does not gain its owner's rights (the worker runs none).
 */

const SETPRIV = "/usr/bin/setpriv";
/**
 * The machine's paths that stand in for the image's own files (the worker from the
 * checkout, the Node that runs it). The sandbox hides the machine's /tmp, so a checkout
 * under /tmp (a CI clone) is bound back, read-only, as the image would have it.
 */
const IMAGE_PATHS = [path.resolve(import.meta.dirname, "../.."), path.dirname(process.execPath)];

function underTmp(p: string): boolean {
  return p === "/tmp" || p.startsWith("/tmp/");
}

/** The image paths under /tmp, without one inside another. */
export function imagePathsUnderTmp(): string[] {
  const under = [...new Set(IMAGE_PATHS.filter(underTmp))].sort();
  return under.filter((p, i) => !under.slice(0, i).some((q) => p.startsWith(`${q}/`)));
}
const ENV = "/usr/bin/env";

/** Docker's default capabilities: a container running as root has these (Fargate can add only SYS_PTRACE). */
export const DOCKER_CAPABILITIES = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_NET_RAW",
  "CAP_SYS_CHROOT",
  "CAP_MKNOD",
  "CAP_AUDIT_WRITE",
  "CAP_SETFCAP",
] as const;

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/**
 * Users the worker image has that this machine may lack: the node images create `node`
 * with uid and gid 1000. Only the numbers reach the kernel, so whoever holds uid 1000
 * here, if anyone, does not matter beyond what that uid may read.
 */
export const IMAGE_USERS: Readonly<Record<string, PasswdEntry>> = {
  node: { name: "node", uid: 1000, gid: 1000, home: "/home/node" },
};

/** /etc/passwd and /etc/group, this machine's standing in for the image's. */
export interface UserDb {
  users: PasswdEntry[];
  groups: Array<{ name: string; gid: number }>;
}

export function readUserDb(etc = "/etc"): UserDb {
  const fields = (file: string) =>
    readFileSync(path.join(etc, file), "utf8")
      .split("\n")
      .filter((l) => l !== "" && !l.startsWith("#"))
      .map((l) => l.split(":"));
  return {
    users: fields("passwd").map(([name = "", , uid = "", gid = "", , home = "/"]) => ({
      name,
      uid: Number(uid),
      gid: Number(gid),
      home,
    })),
    groups: fields("group").map(([name = "", , gid = ""]) => ({ name, gid: Number(gid) })),
  };
}

export interface TaskUser {
  uid: number;
  gid: number;
  /** HOME, which Docker sets from the user's passwd entry unless the image or the definition does. */
  home: string;
  /**
   * The user has a passwd entry, so Docker gives it its supplementary groups from
   * /etc/group (initgroups); a bare uid, or an image user this machine lacks, gets none.
   */
  initGroups: boolean;
}

/**
 * A container's user as Docker resolves it: `name`, `uid`, `name:group`, `uid:gid`. A
 * uid without a passwd entry runs with gid 0 and HOME=/; a name without one cannot start.
 */
export function resolveUser(spec: string, db: UserDb): TaskUser {
  const parts = spec.split(":");
  const [userPart, groupPart] = parts;
  if (!userPart || parts.length > 2 || groupPart === "") {
    throw new ImageConfigError(`user ${JSON.stringify(spec)} is not name, uid, name:group or uid:gid`);
  }
  let user: TaskUser;
  if (/^\d+$/.test(userPart)) {
    const uid = Number(userPart);
    const entry = db.users.find((u) => u.uid === uid);
    user = { uid, gid: entry?.gid ?? 0, home: entry?.home ?? "/", initGroups: entry !== undefined };
  } else {
    const entry = db.users.find((u) => u.name === userPart);
    const known = entry ?? IMAGE_USERS[userPart];
    if (!known) {
      // Docker's own words; ECS reports the container as CannotStartContainerError.
      throw new ImageConfigError(`unable to find user ${userPart}: no matching entries in passwd file`, {
        hint: "name a user the image has, or a uid",
      });
    }
    user = { uid: known.uid, gid: known.gid, home: known.home, initGroups: entry !== undefined };
  }
  if (groupPart !== undefined) {
    const gid = /^\d+$/.test(groupPart) ? Number(groupPart) : db.groups.find((g) => g.name === groupPart)?.gid;
    if (gid === undefined) {
      throw new ImageConfigError(`unable to find group ${groupPart}: no matching entries in group file`, {
        hint: "name a group the image has, or a gid",
      });
    }
    user.gid = gid;
  }
  return user;
}

/**
 * The whole environment of a container: the image's ENV, then what the ECS agent and the
 * sim add (`agentVariables`), then the definition's Environment and Secrets, which win as
 * they do in ECS; HOME from the user when none of those set it, as Docker does. Nothing
 * else of the sim's process: no TMPDIR, LANG or the sim's own PATH.
 */
export function containerEnvironment(
  image: ImageConfig,
  user: TaskUser,
  agentVariables: Record<string, string>,
  variables: Record<string, string>,
): Record<string, string> {
  const env = { ...image.env, ...agentVariables, ...variables };
  env.HOME ??= user.home;
  return env;
}

export interface SandboxedContainer {
  definition: Pick<ContainerDefinition, "User" | "ReadonlyRootFilesystem" | "MountPoints">;
  /** The task definition's volumes, which the mount points name. */
  volumes: TaskVolume[];
  /** What runs, standing in for the image's entrypoint: absolute paths on this machine. */
  argv: string[];
  /** The definition's Environment and its Secrets' values. */
  variables: Record<string, string>;
  /** What the ECS agent and the sim add: see LocalTasks.agentVariables. */
  agentVariables: Record<string, string>;
}

export interface RunningTask {
  stdout: Readable;
  stderr: Readable;
  /** The container's exit code (128 + n for signal n), once it has exited and its volumes are gone. */
  exitCode: Promise<number>;
  /** ECS StopTask: SIGTERM to the container's first process. */
  stop: () => void;
}

export interface TaskSandboxOptions {
  /** The image's Dockerfile, whose final stage gives USER, ENV and VOLUME. @default containers/worker/Dockerfile */
  dockerfile?: string;
  /** @default /usr/bin/bwrap */
  bwrap?: string;
  /** Where each task's volumes are made, and removed when it exits. @default os.tmpdir() */
  volumesDir?: string;
}

export class TaskSandbox {
  readonly image: ImageConfig;
  private readonly bwrap: string;
  private readonly volumesDir: string;

  private constructor(image: ImageConfig, bwrap: string, volumesDir: string) {
    this.image = image;
    this.bwrap = bwrap;
    this.volumesDir = volumesDir;
  }

  /** Checks that this machine can run the sandbox, and reads the image's Dockerfile. */
  static open(options: TaskSandboxOptions = {}): TaskSandbox {
    const bwrap = options.bwrap ?? "/usr/bin/bwrap";
    const noSandbox =
      "or run the sim without the task sandbox (npm run sim -- --no-sandbox), which models none of Fargate's user, filesystem and environment";
    if (!existsSync(bwrap)) {
      throw new SandboxUnavailableError(`bubblewrap is not installed (no ${bwrap}): the sim runs each ECS task in it`, {
        hint: `apt-get install bubblewrap (./scripts/bootstrap.sh --tests installs it), ${noSandbox}`,
      });
    }
    if (!existsSync(SETPRIV)) {
      throw new SandboxUnavailableError(
        `setpriv is not installed (no ${SETPRIV}): the sandbox switches to the task's user with it`,
        {
          hint: `apt-get install util-linux, ${noSandbox}`,
        },
      );
    }
    if (process.getuid?.() !== 0) {
      throw new SandboxUnavailableError(
        "the task sandbox needs root: it mounts the task's volumes and runs the task as its own user",
        {
          hint: `run the sim as root, ${noSandbox}`,
        },
      );
    }
    return new TaskSandbox(
      readImageConfig(options.dockerfile ?? WORKER_DOCKERFILE),
      bwrap,
      options.volumesDir ?? os.tmpdir(),
    );
  }

  /** The user a container definition runs as: its User, else the image's USER, else root. */
  userOf(definition: Pick<ContainerDefinition, "User">, db: UserDb = readUserDb()): TaskUser {
    return resolveUser(definition.User ?? this.image.user ?? "root", db);
  }

  /**
   * Starts the container. Throws ImageConfigError when its user does not resolve (ECS:
   * the container cannot start), SandboxUnavailableError for what the sandbox cannot model.
   */
  run(container: SandboxedContainer): RunningTask {
    const { definition } = container;
    if (definition.ReadonlyRootFilesystem !== true) {
      throw new SandboxUnavailableError(
        "the task sandbox models only a read-only root filesystem: it binds this machine's root as the image's, and cannot give a task a writable copy",
        {
          hint: "set readonlyRootFilesystem: true on the container (the worker's are), or run the sim with --no-sandbox",
        },
      );
    }
    const user = this.userOf(definition);
    const env = containerEnvironment(this.image, user, container.agentVariables, container.variables);
    const taskDir = mkdtempSync(path.join(this.volumesDir, "strongroom-task-"));
    let args: string[];
    try {
      args = this.bwrapArgs(user, this.mounts(taskDir, definition, container.volumes, user), container.argv);
    } catch (err) {
      rmSync(taskDir, { recursive: true, force: true });
      throw err;
    }
    // The environment reaches bwrap as its own, never in its arguments, where `ps` shows them.
    const child = spawn(this.bwrap, args, { env, stdio: ["ignore", "pipe", "pipe", "pipe"] });
    let childPid: number | undefined;
    let exited = false;
    let info = "";
    const infoFd = child.stdio[3] as Readable;
    infoFd.on("data", (chunk: Buffer) => {
      info += chunk.toString();
    });
    infoFd.on("end", () => {
      try {
        childPid = (JSON.parse(info) as { "child-pid"?: number })["child-pid"];
      } catch {
        // bwrap failed before it started the container; its message is on stderr.
      }
    });
    const exitCode = new Promise<number>((resolve, reject) => {
      child.once("error", (err) => {
        exited = true;
        rmSync(taskDir, { recursive: true, force: true });
        reject(err);
      });
      child.once("close", (code, signal) => {
        exited = true;
        rmSync(taskDir, { recursive: true, force: true });
        resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0));
      });
    });
    return {
      stdout: child.stdout as Readable,
      stderr: child.stderr as Readable,
      exitCode,
      stop: () => {
        if (exited) return;
        // The container's first process, as ECS signals it; before bwrap has started it,
        // bwrap itself, which takes the container with it (--die-with-parent).
        if (childPid === undefined) child.kill("SIGTERM");
        else process.kill(childPid, "SIGTERM");
      },
    };
  }

  /** Each mount point's volume as a fresh directory under `taskDir`, owned as Fargate would create it. */
  private mounts(
    taskDir: string,
    definition: SandboxedContainer["definition"],
    volumes: TaskVolume[],
    user: TaskUser,
  ): Array<{ source: string; target: string; readOnly: boolean }> {
    const made = new Map<string, string>();
    return (definition.MountPoints ?? []).map((mount) => {
      const target = path.posix.normalize(mount.ContainerPath).replace(/(.)\/$/, "$1");
      const volume = volumes.find((v) => v.Name === mount.SourceVolume);
      if (!volume)
        throw new Error(`mount point ${target} names volume ${mount.SourceVolume}, which the task definition lacks`);
      if (volume.EFSVolumeConfiguration !== undefined || volume.Host?.SourcePath) {
        throw new SandboxUnavailableError(
          `volume ${volume.Name} is EFS or a host path: the task sandbox models Fargate bind mounts and EBS volumes only`,
          { hint: "run the sim with --no-sandbox" },
        );
      }
      const ebs = volume.ConfiguredAtLaunch === true;
      if (ebs && user.uid !== 0) {
        // ECS gives a non-root container user group access to the volume (the ECS
        // developer guide, "Non-root user behavior"); the sandbox models root only.
        throw new SandboxUnavailableError(
          `volume ${volume.Name} is an EBS volume and the container's user is not root: the task sandbox does not model ECS's group access for other users`,
          { hint: "run the sim with --no-sandbox" },
        );
      }
      if (!existsSync(target)) {
        // A container's runtime makes a missing mount point in the image; this read-only root cannot.
        throw new SandboxUnavailableError(
          `the task sandbox can mount volume ${volume.Name} only where this machine has a directory, and it has no ${target}`,
          { hint: `create ${target} on this machine, or run the sim with --no-sandbox` },
        );
      }
      let source = made.get(volume.Name);
      if (!source) {
        source = path.join(taskDir, String(made.size));
        mkdirSync(source);
        // Fargate makes a bind-mount volume root-owned 0755; a VOLUME the image declares at
        // the path starts as a copy of the image's directory, whose owner and mode this
        // machine's directory stands in for (Debian's /tmp: root, 1777). An EBS volume is
        // a new filesystem ECS formats and mounts: its root is root's, 0755, whatever the
        // image declares there.
        const image = !ebs && this.image.volumes.includes(target) ? statSync(target) : undefined;
        chownSync(source, image?.uid ?? 0, image?.gid ?? 0);
        chmodSync(source, image ? image.mode & 0o7777 : 0o755);
        made.set(volume.Name, source);
      }
      return { source, target, readOnly: mount.ReadOnly === true };
    });
  }

  private bwrapArgs(
    user: TaskUser,
    mounts: Array<{ source: string; target: string; readOnly: boolean }>,
    argv: string[],
  ): string[] {
    const tmpMounted = mounts.some((m) => underTmp(m.target));
    const image = imagePathsUnderTmp().flatMap((p) => ["--ro-bind", p, p]);
    return [
      "--die-with-parent",
      // The entrypoint is PID 1 of its own namespace, as in a task without initProcessEnabled:
      // it gets ECS's SIGTERM only if it handles it, and reaps its own children.
      "--unshare-pid",
      "--as-pid-1",
      "--unshare-ipc",
      // Tells us the container's PID, for stop().
      "--info-fd",
      "3",
      "--ro-bind",
      "/",
      "/",
      "--proc",
      "/proc",
      "--dev",
      "/dev",
      // Docker gives every container a /dev/shm tmpfs (PostgreSQL's dynamic shared memory).
      "--perms",
      "1777",
      "--tmpfs",
      "/dev/shm",
      // The machine's /tmp holds the sim's, the tests' and their clusters' files; the
      // image's is empty, and read-only like the rest of the root unless a volume is there.
      // (Image paths under /tmp are bound into it before it turns read-only.)
      ...(tmpMounted ? [] : ["--perms", "1777", "--tmpfs", "/tmp", ...image, "--remount-ro", "/tmp"]),
      ...mounts.flatMap((m) => [m.readOnly ? "--ro-bind" : "--bind", m.source, m.target]),
      // Over a volume at /tmp, the image's own files stay where the image has them.
      ...(tmpMounted ? image : []),
      "--chdir",
      "/",
      "--cap-drop",
      "ALL",
      // setpriv needs SETUID and SETGID to become a non-root user, which drops every
      // capability; root keeps Docker's defaults.
      ...(user.uid === 0 ? DOCKER_CAPABILITIES : (["CAP_SETUID", "CAP_SETGID"] as const)).flatMap((c) => [
        "--cap-add",
        c,
      ]),
      SETPRIV,
      `--reuid=${user.uid}`,
      `--regid=${user.gid}`,
      user.initGroups ? "--init-groups" : "--clear-groups",
      "--",
      // bwrap sets PWD, which Docker does not.
      ENV,
      "-u",
      "PWD",
      "--",
      ...argv,
    ];
  }
}
