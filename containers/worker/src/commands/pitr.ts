import { type Command, Option } from "commander";
import { UsageError } from "#core/errors.ts";
import { type CliContext, openStoreAt, printResult, storeLogOptions } from "./context.ts";
import {
  checkedOption,
  identitiesFrom,
  identityOption,
  jsonOption,
  positiveInt,
  signerOption,
  signingKeyOption,
  splitList,
  storeOption,
} from "./options.ts";

const walDatabaseIdOption = () =>
  new Option("--database-id <id>", "the database's id in the store: its WAL goes under <id>/wal/, beside its backups")
    .env("STRONGROOM_DATABASE_ID")
    .makeOptionMandatory();

const timeoutOption = () =>
  checkedOption(
    "--timeout <seconds>",
    "give up (and let PostgreSQL try again) when the store has not answered in this long (default: 120)",
    positiveInt("--timeout"),
  ).env("STRONGROOM_WAL_TIMEOUT");

interface CommonFlags {
  store: string;
  databaseId: string;
  timeout?: number;
  json?: boolean;
}

/**
 * `wal-push` (archive_command) and `wal-fetch` (restore_command): PostgreSQL's contracts
 * for both, as docs/pitr.md gives them. Exit codes: wal-push 0 only once the file is
 * stored, else 1 (never above 125, which would restart the archiver); wal-fetch 0, 1 only
 * when the store says the file is not there, 126 for anything else, so that recovery
 * stops instead of promoting a half-recovered cluster (main.ts maps them).
 */
export function pitrCommands(parent: Command, ctx: CliContext): void {
  parent
    .command("wal-push")
    .description(
      "archive_command: archive one WAL file (zstd, age, signed) into the store; exit 0 only once it is stored",
    )
    .argument("<path>", "the file PostgreSQL names with %p")
    .addOption(storeOption())
    .addOption(walDatabaseIdOption())
    .addOption(
      new Option(
        "--recipient <age1…>",
        "age public key to encrypt to; repeat for several (in the env var, comma-separated)",
      )
        .argParser(splitList)
        .env("STRONGROOM_RECIPIENTS")
        .makeOptionMandatory(),
    )
    .addOption(signingKeyOption())
    .addOption(timeoutOption())
    .addOption(jsonOption())
    .addHelpText(
      "after",
      `
In postgresql.conf (the key and settings in the environment of the server's service, not in the command):
  archive_mode = on
  archive_command = 'strongroom wal-push %p'

Examples:
  $ strongroom wal-push pg_wal/000000010000000000000003 --store s3://acme-backups/pg --database-id shop \\
      --recipient age1… --signing-key /etc/strongroom/signing.key`,
    )
    .action(async (file: string, o: CommonFlags & { recipient: string[]; signingKey?: string }) => {
      const { signer } = await storeLogOptions(o);
      if (!signer) {
        throw new UsageError("wal-push signs every file it archives, and no signing key was given", {
          hint: "pass --signing-key FILE (strongroom keygen --signing), or set STRONGROOM_SIGNING_KEY to the key itself; restores replay only WAL signed by it",
        });
      }
      const { pushWal, withTimeout } = await import("../pitr/wal-archive.ts");
      const store = await openStoreAt(o.store);
      const result = await withTimeout(
        pushWal(store, file, { databaseId: o.databaseId, recipients: o.recipient, signer }),
        (o.timeout ?? 120) * 1000,
        `archiving ${file}`,
      );
      printResult(ctx, o.json, result, () =>
        result.outcome === "stored"
          ? `archived ${result.name}: ${result.plainBytes} bytes, ${result.storedBytes} stored\n`
          : `${result.name} was already archived with the same content\n`,
      );
    });

  parent
    .command("basebackup")
    .description(
      "take a physical base backup: pg_basebackup → zstd → age → store, committed once the WAL it needs is archived",
    )
    .addOption(
      new Option(
        "--db <url>",
        "postgres://user@host:port/dbname of a role with REPLICATION (password: PGPASSWORD or DATABASE_URL)",
      )
        .env("DATABASE_URL")
        .makeOptionMandatory(),
    )
    .addOption(storeOption())
    .addOption(walDatabaseIdOption())
    .addOption(
      new Option(
        "--recipient <age1…>",
        "age public key to encrypt to; repeat for several (in the env var, comma-separated)",
      )
        .argParser(splitList)
        .env("STRONGROOM_RECIPIENTS")
        .makeOptionMandatory(),
    )
    .addOption(signingKeyOption())
    .addOption(
      checkedOption(
        "--wal-wait <seconds>",
        "how long to wait for the server to archive the WAL the backup needs before giving up uncommitted (default: 300)",
        positiveInt("--wal-wait"),
      ).env("STRONGROOM_WAL_WAIT"),
    )
    .addOption(jsonOption())
    .addHelpText(
      "after",
      `
The server must archive into the same store and database id (archive_command = 'strongroom wal-push %p …').

Examples:
  $ DATABASE_URL=postgres://replicator@db:5432/postgres strongroom basebackup --store s3://acme-backups/pg \
      --database-id shop --recipient age1… --signing-key /etc/strongroom/signing.key`,
    )
    .action(async (o: CommonFlags & { db: string; recipient: string[]; signingKey?: string; walWait?: number }) => {
      const { signer } = await storeLogOptions(o);
      if (!signer) {
        throw new UsageError("basebackup signs the base backup it commits, and no signing key was given", {
          hint: "pass --signing-key FILE (the one archive_command's wal-push uses), or set STRONGROOM_SIGNING_KEY",
        });
      }
      const { parsePgUrl } = await import("../pg/conn.ts");
      const { baseBackup } = await import("../pitr/base-backup.ts");
      const manifest = await baseBackup({
        store: await openStoreAt(o.store),
        conn: parsePgUrl(o.db, "--db"),
        databaseId: o.databaseId,
        recipients: o.recipient,
        signer,
        ...(o.walWait !== undefined ? { walWaitMs: o.walWait * 1000 } : {}),
        log: ctx.log(),
        signal: ctx.signal,
      });
      printResult(
        ctx,
        o.json,
        manifest,
        () =>
          `base backup ${o.databaseId}/${manifest.baseId}: ${manifest.startLsn} to ${manifest.stopLsn} on timeline ${manifest.timeline}, ${manifest.object.storedBytes} bytes stored\n`,
      );
    });

  parent
    .command("wal-fetch")
    .description(
      "restore_command: fetch one archived WAL file, checked against its signature, to where PostgreSQL asks; exit 1 only when it is not archived",
    )
    .argument("<name>", "the file's name PostgreSQL asks for with %f")
    .argument("<dest>", "where PostgreSQL wants it, %p")
    .addOption(storeOption())
    .addOption(walDatabaseIdOption())
    .addOption(identityOption())
    .addOption(signerOption())
    .addOption(signingKeyOption())
    .addOption(timeoutOption())
    .addOption(jsonOption())
    .addHelpText(
      "after",
      `
Written into the recovered cluster by \`restore --pitr\`; by hand:
  restore_command = 'strongroom wal-fetch %f %p'

Exit codes: 0 fetched; 1 not in the archive (recovery ends there); 126 anything else
(the store unreachable, a file that is not what its signature says): recovery stops.`,
    )
    .action(
      async (
        name: string,
        dest: string,
        o: CommonFlags & { identity?: string; signer?: string[]; signingKey?: string },
      ) => {
        const options = await storeLogOptions(o);
        const signers = new Set([...(options.signers ?? []), ...(options.signer ? [options.signer.signer] : [])]);
        if (signers.size === 0) {
          throw new UsageError("wal-fetch replays only WAL signed by a signer it trusts, and none was given", {
            hint: "pass --signer srsigner1… (the archiving host's, what `strongroom keygen --signing` printed), or set STRONGROOM_SIGNERS",
          });
        }
        const identities = await identitiesFrom(o.identity, "wal-fetch", process.env, ctx.log());
        const { fetchWal, withTimeout } = await import("../pitr/wal-archive.ts");
        const store = await openStoreAt(o.store);
        const result = await withTimeout(
          fetchWal(store, name, dest, { databaseId: o.databaseId, identities, signers }),
          (o.timeout ?? 120) * 1000,
          `fetching ${name}`,
        );
        printResult(ctx, o.json, result, () => `fetched ${name}: ${result.plainBytes} bytes\n`);
      },
    );
}
