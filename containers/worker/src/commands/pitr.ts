import { type Command, Option } from "commander";
import { UsageError } from "#core/errors.ts";
import { type CliContext, openStoreAt, printResult, storeLogOptions } from "./context.ts";
import {
  checkedOption,
  flagOption,
  identitiesFrom,
  identityOption,
  jsonOption,
  positiveInt,
  recipientOption,
  signerOption,
  signingKeyOption,
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
    .addOption(recipientOption())
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
    .addOption(recipientOption())
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
    .command("wal")
    .description("the archived WAL: wal verify")
    .command("verify")
    .description(
      "for every base backup, whether the archive holds its WAL and how far it runs without a gap; the archive's age (the RPO now)",
    )
    .addOption(storeOption())
    .addOption(walDatabaseIdOption())
    .addOption(signerOption())
    .addOption(
      new Option("--max-wal-age <duration>", "not ok when the newest archived WAL is older (e.g. 15m, 1h)").env(
        "STRONGROOM_MAX_WAL_AGE",
      ),
    )
    .addOption(jsonOption())
    .action(async (o: CommonFlags & { signer?: string[]; maxWalAge?: string }) => {
      const { parseSigner } = await import("#core/audit/row-signature.ts");
      const signers = new Set((o.signer ?? []).map(parseSigner));
      if (signers.size === 0) {
        throw new UsageError("wal verify counts only base backups a signer it trusts signed, and none was given", {
          hint: "pass --signer srsigner1… (the database host's), or set STRONGROOM_SIGNERS",
        });
      }
      const { parseDuration } = await import("#core/gc.ts");
      const maxAge = o.maxWalAge !== undefined ? parseDuration(o.maxWalAge, "--max-wal-age") : undefined;
      const { verifyWal } = await import("../pitr/wal-verify.ts");
      const report = await verifyWal({
        store: await openStoreAt(o.store),
        databaseId: o.databaseId,
        signers,
        log: ctx.log(),
      });
      const stale = maxAge !== undefined && (report.newest === undefined || report.newest.ageSeconds * 1000 > maxAge);
      const result = { ...report, ok: report.ok && !stale };
      printResult(
        ctx,
        o.json,
        result,
        () =>
          `${[
            ...report.bases.map(
              (b) =>
                `${b.recoverable ? "✓" : "✗"} base ${b.baseId} (timeline ${b.timelines.join(" → ")}${b.offLatest ? `; not an ancestor of the newest timeline ${b.offLatest.latest}: recover it with --timeline ${b.timeline}` : ""}): recoverable from ${b.from.time} (${b.from.lsn}) through ${b.through.segment}${b.gap ? `; gap at ${b.gap}` : ""}${b.recoverable ? "" : "; its own WAL is not all archived"}`,
            ),
            report.newest
              ? `newest archived WAL: ${report.newest.name}, ${report.newest.ageSeconds} s ago${stale ? ` (older than --max-wal-age ${o.maxWalAge})` : ""}`
              : "no WAL archived",
          ].join("\n")}\n`,
      );
      if (!result.ok) {
        const { NotReadyError } = await import("#core/errors.ts");
        throw new NotReadyError(
          report.bases.length === 0
            ? `no base backup of ${o.databaseId}: nothing to recover from`
            : stale
              ? `the newest archived WAL is older than ${o.maxWalAge}`
              : "a gap in the archived WAL, or a base backup whose own WAL is missing",
          { hint: "archive_command's failures show in pg_stat_archiver and the server's log (docs/pitr.md)" },
        );
      }
    });

  // `strongroom restore --pitr …` lands here (main.ts): a physical recovery has none of a
  // logical restore's flags, and its own.
  parent
    .command("restore-pitr", { hidden: true })
    .description(
      "restore --pitr: recover a physical base backup and its archived WAL into --pgdata, to a point in time",
    )
    .addOption(new Option("--pitr", "a point-in-time recovery (this command)"))
    .addOption(storeOption())
    .addOption(walDatabaseIdOption())
    .addOption(
      new Option(
        "--identity <file>",
        "age identity file; its path goes into restore_command, so a file, not a variable",
      )
        .env("STRONGROOM_IDENTITY_FILE")
        .makeOptionMandatory(),
    )
    .addOption(signerOption())
    .addOption(signingKeyOption())
    .addOption(
      new Option("--to-time <timestamp>", "recover to this time (PostgreSQL's timestamptz: '2026-12-03 08:04:00+00')"),
    )
    .addOption(new Option("--to-lsn <lsn>", "recover to this WAL location (0/3000028)"))
    .addOption(new Option("--to-xid <xid>", "recover to this transaction id (with --base)"))
    .addOption(new Option("--to-name <name>", "recover to this restore point, pg_create_restore_point's (with --base)"))
    .addOption(new Option("--to-latest", "recover to the end of the archived WAL"))
    .addOption(
      new Option("--base <id>", "the base backup to start from (default: the newest that ended before the target)"),
    )
    .addOption(
      checkedOption(
        "--timeline <n>",
        "recover along this timeline (default: the newest one the base leads to, PostgreSQL's 'latest')",
        positiveInt("--timeline"),
      ),
    )
    .addOption(
      flagOption(
        "--archive",
        "the recovered server takes the source's place and archives its new timeline into the same archive (needs --recipient and --signing-key FILE); without it, archive_mode is off",
        "STRONGROOM_ARCHIVE",
      ),
    )
    .addOption(recipientOption().makeOptionMandatory(false))
    .addOption(new Option("--pgdata <dir>", "a new or empty directory for the recovered cluster").makeOptionMandatory())
    .addOption(
      flagOption(
        "--start",
        "start the recovered server and wait for PostgreSQL to say the target was reached",
        "STRONGROOM_START",
      ),
    )
    .addOption(
      checkedOption(
        "--port <port>",
        "with --start: the port the recovered server listens on (default: a free one)",
        positiveInt("--port"),
      ),
    )
    .addOption(jsonOption())
    .addHelpText(
      "after",
      `
Examples:
  $ strongroom restore --pitr --store s3://acme-backups/pg --database-id shop --identity identity.txt \
      --signer srsigner1… --to-time '2026-12-03 08:04:00+00' --pgdata /var/lib/postgresql/15/recovered --start`,
    )
    .action(
      async (
        o: CommonFlags & {
          identity: string;
          signer?: string[];
          toTime?: string;
          toLsn?: string;
          toXid?: string;
          toName?: string;
          toLatest?: boolean;
          base?: string;
          timeline?: number;
          archive?: boolean;
          recipient?: string[];
          signingKey?: string;
          pgdata: string;
          start?: boolean;
          port?: number;
        },
      ) => {
        const targets = [
          o.toTime !== undefined ? { kind: "time" as const, value: o.toTime } : undefined,
          o.toLsn !== undefined ? { kind: "lsn" as const, value: o.toLsn } : undefined,
          o.toXid !== undefined ? { kind: "xid" as const, value: o.toXid } : undefined,
          o.toName !== undefined ? { kind: "name" as const, value: o.toName } : undefined,
          o.toLatest ? { kind: "latest" as const } : undefined,
        ].filter((t) => t !== undefined);
        if (targets.length !== 1) {
          throw new UsageError(
            "restore --pitr needs exactly one of --to-time, --to-lsn, --to-xid, --to-name and --to-latest",
            {
              hint: "strongroom restore --pitr --help shows the usage",
            },
          );
        }
        let target = targets[0] as NonNullable<(typeof targets)[number]>;
        // recovery_target_time refuses ISO 8601's T and Z ("invalid value"): the same instant, as PostgreSQL writes it.
        if (target.kind === "time") {
          target = {
            kind: "time",
            value: target.value
              .trim()
              .replace(/^(\d{4}-\d{2}-\d{2})T/, "$1 ")
              .replace(/Z$/, "+00"),
          };
        }
        if (target.kind === "time" && Number.isNaN(Date.parse(target.value))) {
          throw new UsageError(`--to-time ${JSON.stringify(target.value)} is not a time`, {
            hint: "give a timestamp with its zone, as PostgreSQL prints now(): '2026-12-03 08:04:00+00'",
          });
        }
        if (target.kind === "lsn") (await import("#core/pitr/lsn.ts")).parseLsn(target.value);
        const options = await storeLogOptions(o);
        const signers = new Set([...(options.signers ?? []), ...(options.signer ? [options.signer.signer] : [])]);
        if (signers.size === 0) {
          throw new UsageError(
            "restore --pitr recovers only base backups and WAL signed by a signer it trusts, and none was given",
            {
              hint: "pass --signer srsigner1… (the database host's), or set STRONGROOM_SIGNERS",
            },
          );
        }
        if (o.archive && (o.signingKey === undefined || (o.recipient ?? []).length === 0)) {
          throw new UsageError(
            "--archive needs --recipient and --signing-key FILE for the recovered server's wal-push",
            {
              hint: "the key's path (never the key) goes into its archive_command: the database host's signing key file and the organisation's age recipient",
            },
          );
        }
        const identities = await identitiesFrom(o.identity, "restore --pitr", process.env, ctx.log());
        const { pitrRestore } = await import("../pitr/pitr-restore.ts");
        const { freePort } = await import("../service-process.ts");
        const result = await pitrRestore({
          store: await openStoreAt(o.store),
          databaseId: o.databaseId,
          identityFile: o.identity,
          identities,
          signers,
          target,
          ...(o.base !== undefined ? { baseId: o.base } : {}),
          ...(o.timeline !== undefined ? { timeline: o.timeline } : {}),
          ...(o.archive ? { archive: { recipients: o.recipient ?? [], signingKeyFile: o.signingKey as string } } : {}),
          pgdata: o.pgdata,
          ...(o.start ? { start: { port: o.port ?? (await freePort()) } } : {}),
          walFetch: { node: process.execPath, script: process.argv[1] as string, storeUrl: o.store },
          log: ctx.log(),
        });
        printResult(
          ctx,
          o.json,
          result,
          () =>
            `${[
              `recovered ${o.databaseId}/${result.baseId} into ${result.pgdata} along timeline${result.timeline.path.length > 1 ? "s" : ""} ${result.timeline.path.join(" → ")}; archived WAL continuous from ${result.wal.first} to ${result.wal.lastContiguous}`,
              result.started
                ? `the server runs on port ${result.started.port}, timeline ${result.started.timeline}: ${result.started.stoppedAt ?? "the end of the archive reached"}`
                : "start it (pg_ctl start -D …) to replay the WAL; PostgreSQL promotes it at the target",
            ].join("\n")}\n`,
        );
      },
    );

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
    .addOption(
      new Option(
        "--system-identifier <id>",
        "replay only WAL archived by this cluster (pg_control's; restore --pitr writes it)",
      ).env("STRONGROOM_SYSTEM_IDENTIFIER"),
    )
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
        o: CommonFlags & { identity?: string; signer?: string[]; systemIdentifier?: string },
      ) => {
        // Only --signer: a signing key this process may hold (STRONGROOM_SIGNING_KEY) could
        // sign what it replays, and a recovery trusts the database host alone.
        const { parseSigner } = await import("#core/audit/row-signature.ts");
        const signers = new Set((o.signer ?? []).map(parseSigner));
        if (signers.size === 0) {
          throw new UsageError("wal-fetch replays only WAL signed by a signer it trusts, and none was given", {
            hint: "pass --signer srsigner1… (the archiving host's, what `strongroom keygen --signing` printed), or set STRONGROOM_SIGNERS",
          });
        }
        const identities = await identitiesFrom(o.identity, "wal-fetch", process.env, ctx.log());
        const { fetchWal, withTimeout } = await import("../pitr/wal-archive.ts");
        const store = await openStoreAt(o.store);
        const result = await withTimeout(
          fetchWal(store, name, dest, {
            databaseId: o.databaseId,
            identities,
            signers,
            ...(o.systemIdentifier !== undefined ? { systemIdentifier: o.systemIdentifier } : {}),
          }),
          (o.timeout ?? 120) * 1000,
          `fetching ${name}`,
        );
        printResult(ctx, o.json, result, () => `fetched ${name}: ${result.plainBytes} bytes\n`);
      },
    );
}
