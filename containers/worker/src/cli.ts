import { readFile } from "node:fs/promises";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import { Command, Option } from "commander";
import { listManifests } from "#core/backup-index.ts";
import { InvalidIdentityError, UsageError } from "#core/errors.ts";
import { createLogger, type LogFormat, type Logger, type LogLevel } from "#core/log.ts";
import type { Manifest } from "#core/manifest.ts";
import { openStore } from "#core/store/open-store.ts";
import {
  absoluteStoreUrl,
  applyFlagEnv,
  auditFor,
  auditOption,
  auditTableOption,
  type CliContext,
  databaseIdOption,
  flagOption,
  jsonOption,
  storeOption,
  table,
} from "./cli-common.ts";
import { registerControlCommands } from "./commands/control.ts";
import { writeIdentityFile } from "./identity-file.ts";
import { parsePgUrl } from "./pg/conn.ts";
import { backup } from "./pipeline/backup.ts";
import { restore } from "./pipeline/restore.ts";
import { humanBytes, progress } from "./progress.ts";
import { parseIdentities } from "./stages/age-stream.ts";
import { WORKER_VERSION } from "./version.ts";

export type { CliContext } from "./cli-common.ts";

interface GlobalOptions {
  logFormat: LogFormat;
  logLevel: LogLevel;
}

function splitList(value: string, previous: string[] = []): string[] {
  return [...previous, ...value.split(/[\s,]+/).filter((v) => v !== "")];
}

function positiveInt(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1)
      throw new UsageError(`${flag} must be a positive integer, got ${JSON.stringify(value)}`);
    return n;
  };
}

async function readIdentityFile(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new InvalidIdentityError(`cannot read identity file ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`, {
      cause: err,
      hint: "pass the file written by `strongroom keygen` (or age-keygen) with --identity",
    });
  }
  return parseIdentities(text);
}

function shortRecipient(r: string): string {
  return `${r.slice(0, 10)}…${r.slice(-6)}`;
}

function listTable(manifests: Manifest[]): string {
  const header = ["BACKUP ID", "FINISHED (UTC)", "DATABASE", "SERVER", "DUMP", "STORED", "RECIPIENTS"];
  return table(
    header,
    manifests.map((m) => {
      const dump = m.objects.find((o) => o.role === "dump");
      return [
        m.backupId,
        m.finishedAt.replace("T", " ").replace(/\.\d+Z$/, "Z"),
        m.databaseId === m.database ? m.database : `${m.databaseId} (${m.database})`,
        m.server.version,
        humanBytes(dump?.plainBytes ?? 0),
        humanBytes(m.objects.reduce((n, o) => n + o.storedBytes, 0)),
        m.recipients.map(shortRecipient).join(", "),
      ];
    }),
  );
}

export function buildProgram(ctx: CliContext): Command {
  const program = new Command("strongroom")
    .description("PostgreSQL backups you own and can prove: pg_dump → zstd → age → your store")
    .version(WORKER_VERSION)
    .addOption(
      new Option("--log-format <format>", "log lines on stderr: text or json")
        .choices(["text", "json"])
        .default("text")
        .env("STRONGROOM_LOG_FORMAT"),
    )
    .addOption(
      new Option("--log-level <level>", "least severe level logged")
        .choices(["debug", "info", "warn", "error"])
        .default("info")
        .env("STRONGROOM_LOG_LEVEL"),
    )
    .hook("preAction", (_program, action) => applyFlagEnv(action))
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride()
    .configureOutput({ writeOut: (s) => ctx.stdout(s), writeErr: (s) => process.stderr.write(s) });

  const logger = (): Logger => {
    const g = program.opts<GlobalOptions>();
    return createLogger({ format: g.logFormat, level: g.logLevel });
  };
  program
    .command("keygen")
    .description("generate an age X25519 identity (private, mode 0600) and print its recipient (public)")
    .addOption(
      new Option("--out <file>", "where to write the identity")
        .default("strongroom-identity.txt")
        .env("STRONGROOM_IDENTITY_FILE"),
    )
    .addOption(
      flagOption(
        "--force",
        "replace an existing identity file (the old one is kept beside it as <file>.bak-<time>)",
        "STRONGROOM_FORCE",
      ),
    )
    .addOption(jsonOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ strongroom keygen --out ~/.strongroom/identity.txt\n  age1…   (pass this to `backup --recipient`; keep the file offline)",
    )
    .action(async (o: { out: string; force?: boolean; json?: boolean }) => {
      const identity = await generateX25519Identity();
      const recipient = await identityToRecipient(identity);
      const now = new Date();
      const written = await writeIdentityFile(
        o.out,
        `# created: ${now.toISOString()}\n# public key: ${recipient}\n${identity}\n`,
        { force: o.force === true, now },
      );
      if (written.previous) {
        logger().warn("the previous identity was kept; backups encrypted to it still need it", {
          previous: written.previous,
        });
      }
      ctx.stdout(
        o.json
          ? `${JSON.stringify({ recipient, identityFile: written.file, ...(written.previous ? { previousIdentityFile: written.previous } : {}) })}\n`
          : `${recipient}\n`,
      );
    });

  program
    .command("backup")
    .description("back up one database: pg_dump (on a snapshot) → zstd → age → store; prints the backup id")
    .addOption(
      new Option("--db <url>", "postgres://user@host:port/dbname (password: prefer PGPASSWORD or DATABASE_URL)")
        .env("DATABASE_URL")
        .makeOptionMandatory(),
    )
    .addOption(storeOption())
    .addOption(
      new Option("--recipient <age1…>", "age public key to encrypt to; repeat for several (env: comma-separated)")
        .argParser(splitList)
        .env("STRONGROOM_RECIPIENTS")
        .makeOptionMandatory(),
    )
    .addOption(databaseIdOption())
    .addOption(
      flagOption(
        "--allow-source-change",
        "add to a series whose newest backup came from another server or database (it moved)",
        "STRONGROOM_ALLOW_SOURCE_CHANGE",
      ),
    )
    .addOption(auditOption())
    .addOption(auditTableOption())
    .addOption(jsonOption())
    .addHelpText(
      "after",
      `
Examples:
  $ export DATABASE_URL=postgres://backup@db.internal:5432/shop PGPASSWORD=…
  $ strongroom backup --store s3://acme-backups/pg --recipient age1… --recipient age1…(break-glass)
  $ strongroom backup --db postgres://localhost/shop --store file:///var/backups/pg --recipient "$(cat recipient.txt)" --json`,
    )
    .action(
      async (o: {
        db: string;
        store: string;
        recipient: string[];
        databaseId?: string;
        allowSourceChange?: boolean;
        audit: string;
        auditTable?: string;
        json?: boolean;
      }) => {
        const log = logger();
        if (/^postgres(ql)?:\/\/[^/@]*:[^/@]+@/.test(o.db) && process.argv.some((a) => a.includes(o.db))) {
          log.warn(
            "the password in --db is visible to other local users in the process list; prefer DATABASE_URL or PGPASSWORD",
          );
        }
        const bar = progress("backup");
        try {
          const store = openStore(absoluteStoreUrl(o.store));
          const audit = auditFor(store, o);
          const manifest = await backup({
            conn: parsePgUrl(o.db, "--db"),
            store,
            ...(audit ? { audit } : {}),
            recipients: o.recipient,
            ...(o.databaseId ? { databaseId: o.databaseId } : {}),
            allowSourceChange: o.allowSourceChange === true,
            signal: ctx.signal,
            log,
            onProgress: (done) => bar.update(done),
          });
          bar.stop();
          ctx.stdout(o.json ? `${JSON.stringify(manifest, null, 2)}\n` : `${manifest.backupId}\n`);
        } finally {
          bar.stop();
        }
      },
    );

  program
    .command("list")
    .description("list committed backups (a backup exists if and only if its manifest does)")
    .addOption(storeOption())
    .addOption(databaseIdOption())
    .addOption(jsonOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ strongroom list --store s3://acme-backups/pg\n  $ strongroom list --store file:///var/backups/pg --database-id shop --json",
    )
    .action(async (o: { store: string; databaseId?: string; json?: boolean }) => {
      const manifests = await listManifests(openStore(absoluteStoreUrl(o.store)), o.databaseId);
      if (o.json) ctx.stdout(`${JSON.stringify(manifests, null, 2)}\n`);
      else ctx.stdout(manifests.length ? `${listTable(manifests)}\n` : "no backups\n");
    });

  program
    .command("restore")
    .description("restore a backup into a database, then verify per-table row counts")
    .addOption(storeOption())
    .addOption(new Option("--backup <id>", "backup id, or latest").default("latest").env("STRONGROOM_BACKUP"))
    .addOption(
      new Option("--target <url>", "postgres:// URL of the (empty) database to restore into")
        .env("STRONGROOM_TARGET_URL")
        .makeOptionMandatory(),
    )
    .addOption(
      new Option("--identity <file>", "age identity file (AGE-SECRET-KEY-1…)")
        .env("STRONGROOM_IDENTITY_FILE")
        .makeOptionMandatory(),
    )
    .addOption(databaseIdOption())
    .addOption(
      new Option("--jobs <n>", "parallel pg_restore jobs; >1 stages the decrypted archive in a private temp dir")
        .argParser(positiveInt("--jobs"))
        .default(1)
        .env("STRONGROOM_JOBS"),
    )
    .addOption(
      new Option("--staging-dir <dir>", "where --jobs stages the archive (default: the temp dir)").env(
        "STRONGROOM_STAGING_DIR",
      ),
    )
    .addOption(
      flagOption(
        "--clean",
        "drop the backup's objects in the target first (target may be non-empty)",
        "STRONGROOM_CLEAN",
      ),
    )
    .addOption(
      flagOption(
        "--no-owner",
        "restore without owners and grants (when roles cannot be created)",
        "STRONGROOM_NO_OWNER",
      ),
    )
    .addOption(auditOption())
    .addOption(auditTableOption())
    .addOption(jsonOption())
    .addHelpText(
      "after",
      `
Examples:
  $ createdb shop_restored
  $ STRONGROOM_TARGET_URL=postgres://localhost/shop_restored strongroom restore --store s3://acme-backups/pg --identity identity.txt
  $ strongroom restore --store file:///var/backups/pg --backup 20260421T020000Z-abc234 --target postgres://localhost/x --identity id.txt --jobs 4`,
    )
    .action(
      async (o: {
        store: string;
        backup: string;
        target: string;
        identity: string;
        databaseId?: string;
        jobs: number;
        stagingDir?: string;
        clean?: boolean;
        owner: boolean;
        audit: string;
        auditTable?: string;
        json?: boolean;
      }) => {
        const log = logger();
        const identities = await readIdentityFile(o.identity);
        const bar = progress("restore");
        try {
          const store = openStore(absoluteStoreUrl(o.store));
          const audit = auditFor(store, o);
          const result = await restore({
            store,
            ...(audit ? { audit } : {}),
            backup: o.backup,
            ...(o.databaseId ? { databaseId: o.databaseId } : {}),
            target: parsePgUrl(o.target, "--target"),
            identities,
            jobs: o.jobs,
            ...(o.stagingDir ? { stagingDir: o.stagingDir } : {}),
            clean: o.clean === true,
            noOwner: o.owner === false,
            signal: ctx.signal,
            log,
            onProgress: (done) => bar.update(done),
          });
          bar.stop();
          ctx.stdout(
            o.json
              ? `${JSON.stringify(result, null, 2)}\n`
              : `restored ${result.backupId} into ${result.target}: ${result.tables} tables, ${result.rows} rows, counts verified\n`,
          );
        } finally {
          bar.stop();
        }
      },
    );

  registerControlCommands(program, ctx, logger);
  return program;
}
