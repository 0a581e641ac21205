import { type Command, Option } from "commander";
import { UsageError } from "#core/errors.ts";
import { BACKUP_ID_PATTERN } from "#core/keys.ts";
import {
  auditFor,
  type CliContext,
  openStoreAt,
  printResult,
  type SigningFlags,
  storeLogOptions,
  withProgress,
} from "./context.ts";
import {
  auditOption,
  auditTableOption,
  checkedOption,
  flagOption,
  identitiesFrom,
  identityOption,
  jsonOption,
  manifestSha256Option,
  positiveInt,
  recipientOption,
  signerOption,
  signingKeyOption,
  storeOption,
} from "./options.ts";

/**
 * The base backups `--audit-table` commits (taken where no host key is: `basebackup
 * --audit-table`), by id; none without the option.
 */
async function committedIn(
  store: Awaited<ReturnType<typeof openStoreAt>>,
  o: { databaseId: string; auditTable?: string },
): Promise<Map<string, string>> {
  if (!o.auditTable) return new Map();
  const audit = await auditFor(store, { audit: "none", auditTable: o.auditTable });
  const { committedBasesIn } = await import("#core/pitr/bases.ts");
  return committedBasesIn(audit?.(o.databaseId), o.databaseId);
}

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
    .command("wal-archiver")
    .description(
      "one long-lived process that archives what PostgreSQL has ready, in parallel; archive_command is its small client, strongroom-wal-wait",
    )
    .addOption(
      new Option("--pgdata <dir>", "the server's data directory (its pg_wal/archive_status says what is ready)")
        .env("PGDATA")
        .makeOptionMandatory(),
    )
    .addOption(
      new Option(
        "--spool <dir>",
        "where a marker says a file is stored, for strongroom-wal-wait (a directory the server's user may write)",
      )
        .env("STRONGROOM_SPOOL")
        .makeOptionMandatory(),
    )
    .addOption(storeOption())
    .addOption(walDatabaseIdOption())
    .addOption(recipientOption())
    .addOption(signingKeyOption())
    .addOption(
      checkedOption("--parallel <n>", "files pushed at once (default: 4)", positiveInt("--parallel")).env(
        "STRONGROOM_WAL_PARALLEL",
      ),
    )
    .addOption(timeoutOption())
    .addHelpText(
      "after",
      `
Run it as the server's OS user, beside the server (a systemd unit), with a spool of
that user's own (one per cluster), and make archive_command its client, which exits 0
once the archiver has stored that very file and runs wal-push itself when no archiver is alive:
  archive_command = '/usr/lib/strongroom/strongroom-wal-wait /var/lib/strongroom/spool 60 %f %p -- strongroom wal-push %p'

Examples:
  $ strongroom wal-archiver --pgdata /var/lib/postgresql/15/main --spool /var/lib/strongroom/spool \
      --store s3://acme-backups/pg --database-id shop --recipient age1… --signing-key /etc/strongroom/signing.key`,
    )
    .action(
      async (
        o: CommonFlags & { pgdata: string; spool: string; recipient: string[]; signingKey?: string; parallel?: number },
      ) => {
        const { signer } = await storeLogOptions(o);
        if (!signer) {
          throw new UsageError("wal-archiver signs every file it archives, and no signing key was given", {
            hint: "pass --signing-key FILE (the one wal-push uses), or set STRONGROOM_SIGNING_KEY",
          });
        }
        const { mkdir } = await import("node:fs/promises");
        await mkdir(o.spool, { recursive: true, mode: 0o755 });
        const { runArchiver } = await import("../pitr/wal-archiver.ts");
        const counters = await runArchiver({
          store: await openStoreAt(o.store),
          databaseId: o.databaseId,
          recipients: o.recipient,
          signer,
          pgdata: o.pgdata,
          spool: o.spool,
          ...(o.parallel !== undefined ? { parallel: o.parallel } : {}),
          ...(o.timeout !== undefined ? { timeoutMs: o.timeout * 1000 } : {}),
          log: ctx.log(),
          signal: ctx.signal,
        });
        printResult(
          ctx,
          o.json,
          counters,
          () =>
            `stopped: ${counters.stored} archived, ${counters.alreadyStored} already archived, ${counters.failed} failed attempts\n`,
        );
      },
    );

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
    .addOption(auditTableOption())
    .addOption(
      flagOption(
        "--unsigned",
        "write the manifest unsigned and commit nothing: the caller's audit row commits it (BackupFlow's task); uncommitted, it counts for no one",
        "STRONGROOM_UNSIGNED",
      ),
    )
    .addOption(
      checkedOption("--base-id <id>", "the base's id, chosen by a flow beforehand (default: a new one)", (v) => {
        if (!new RegExp(BACKUP_ID_PATTERN).test(v)) throw new UsageError(`--base-id: not a backup id: ${v}`);
        return v;
      }),
    )
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
    .action(
      async (
        o: CommonFlags & {
          db: string;
          recipient: string[];
          signingKey?: string;
          auditTable?: string;
          unsigned?: boolean;
          baseId?: string;
          walWait?: number;
        },
      ) => {
        const { signer } = o.unsigned ? { signer: undefined } : await storeLogOptions(o);
        if (!signer && !o.auditTable && !o.unsigned) {
          throw new UsageError(
            "basebackup commits a base backup by signing it, or in an audit table, and got neither a signing key nor --audit-table",
            {
              hint: "on the database host pass --signing-key FILE (the one archive_command's wal-push uses); elsewhere (a backup server without the host's key) pass --audit-table TABLE",
            },
          );
        }
        const { parsePgUrl } = await import("../pg/conn.ts");
        const { baseBackup } = await import("../pitr/base-backup.ts");
        const store = await openStoreAt(o.store);
        // Where no host key is, the manifest goes unsigned and the audit table's row commits its bytes.
        const audit = signer || o.unsigned ? undefined : await auditFor(store, { audit: "none", ...o }, ctx.log());
        const manifest = await baseBackup({
          store,
          conn: parsePgUrl(o.db, "--db"),
          databaseId: o.databaseId,
          recipients: o.recipient,
          ...(signer ? { signer } : {}),
          ...(o.baseId !== undefined ? { baseId: o.baseId } : {}),
          ...(o.walWait !== undefined ? { walWaitMs: o.walWait * 1000 } : {}),
          log: ctx.log(),
          signal: ctx.signal,
        });
        if (audit) {
          const { appendAudit } = await import("#core/audit/audit-log.ts");
          const { getBytes } = await import("#core/store/object-store.ts");
          const { baseKeys, serializeBaseManifest } = await import("#core/pitr/base-manifest.ts");
          const { createHash } = await import("node:crypto");
          const { IntegrityError } = await import("#core/errors.ts");
          // The bytes this process wrote, never whatever the store holds now: a writer could
          // have replaced them since. And the store must still hold them, or nothing is committed.
          const bytes = Buffer.from(serializeBaseManifest(manifest));
          const stored = await getBytes(store, baseKeys(o.databaseId, manifest.baseId).manifest);
          if (!stored.equals(bytes)) {
            throw new IntegrityError(
              `the manifest of base ${o.databaseId}/${manifest.baseId} changed in the store after it was written`,
              {
                hint: "someone else writes this store's base/ prefix: find who (its access log), then take the base backup again",
              },
            );
          }
          await appendAudit(audit(o.databaseId), {
            event: "backup.ok",
            actor: "cli",
            databaseId: o.databaseId,
            backupId: manifest.baseId,
            at: new Date().toISOString(),
            details: { kind: "base", manifestSha256: createHash("sha256").update(bytes).digest("hex") },
          });
        }
        printResult(
          ctx,
          o.json,
          manifest,
          () =>
            `base backup ${o.databaseId}/${manifest.baseId}: ${manifest.startLsn} to ${manifest.stopLsn} on timeline ${manifest.timeline}, ${manifest.object.storedBytes} bytes stored${audit ? ", committed in the audit table" : ""}\n`,
        );
      },
    );

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
    .addOption(auditTableOption())
    .addOption(
      new Option("--max-wal-age <duration>", "not ok when the newest archived WAL is older (e.g. 15m, 1h)").env(
        "STRONGROOM_MAX_WAL_AGE",
      ),
    )
    .addOption(jsonOption())
    .action(async (o: CommonFlags & { signer?: string[]; maxWalAge?: string; auditTable?: string }) => {
      const { parseSigner } = await import("#core/audit/row-signature.ts");
      const signers = new Set((o.signer ?? []).map(parseSigner));
      if (signers.size === 0) {
        throw new UsageError("wal verify counts only base backups a signer it trusts signed, and none was given", {
          hint: "pass --signer srsigner1… (the database host's), or set STRONGROOM_SIGNERS",
        });
      }
      const { parseDuration } = await import("#core/gc.ts");
      const maxAge = o.maxWalAge !== undefined ? parseDuration(o.maxWalAge, "--max-wal-age") : undefined;
      const { verifyWal } = await import("#core/pitr/wal-verify.ts");
      const store = await openStoreAt(o.store);
      const report = await verifyWal({
        store,
        databaseId: o.databaseId,
        signers,
        committed: await committedIn(store, o),
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
                `${b.recoverable ? "✓" : "✗"} base ${b.baseId} (timeline ${b.timelines.join(" → ")}${b.offLatest ? `; not an ancestor of the newest timeline ${b.offLatest.latest}: recover it with --timeline ${b.timeline}` : ""}): recoverable from ${b.from.time} (${b.from.lsn}) through ${b.through.segment}${b.gap ? `; gap at ${b.gap}` : ""}${b.recoverable ? "" : "; its own WAL is not all archived"}${(b.missingHistory ?? []).map((t) => `\n    timeline ${t}'s WAL is archived but its history file is not: a recovery to the latest point stops before it`).join("")}${(b.otherLines ?? []).map((l) => `\n    also timeline ${l.timeline} (--timeline ${l.timeline}): through ${l.through}${l.gap ? `; gap at ${l.gap}` : ""}`).join("")}`,
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
              : "a gap in the archived WAL, a missing timeline history, or a base backup whose own WAL is missing",
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
    .addOption(auditTableOption())
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
          auditTable?: string;
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
        if (target.kind === "time") target = { kind: "time", value: recoveryTime(target.value, "--to-time") };
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
        const store = await openStoreAt(o.store);
        const result = await pitrRestore({
          store,
          databaseId: o.databaseId,
          identityFile: o.identity,
          identities,
          signers,
          target,
          ...(o.base !== undefined ? { baseId: o.base } : {}),
          ...(o.timeline !== undefined ? { timeline: o.timeline } : {}),
          committed: await committedIn(store, o),
          ...(o.archive ? { archive: { recipients: o.recipient ?? [], signingKeyFile: o.signingKey as string } } : {}),
          pgdata: o.pgdata,
          ...(o.start ? { start: { port: o.port ?? (await freePort()) } } : {}),
          walFetch: await thisProgram(o.store),
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

  // `strongroom verify --pitr …` lands here (main.ts).
  parent
    .command("verify-pitr", { hidden: true })
    .description(
      "verify --pitr: prove a base backup and its archived WAL recover, by recovering them into a scratch cluster to a point in the window, and checking it",
    )
    .addOption(new Option("--pitr", "a point-in-time recovery's verification (this command)"))
    .addOption(storeOption())
    .addOption(walDatabaseIdOption())
    .addOption(identityOption())
    .addOption(signerOption())
    .addOption(signingKeyOption())
    .addOption(auditOption())
    .addOption(auditTableOption())
    .addOption(new Option("--to-time <timestamp>", "recover to this time (default: a random point in the window)"))
    .addOption(new Option("--to-lsn <lsn>", "recover to this WAL location (default: a random point in the window)"))
    .addOption(
      new Option(
        "--random-within <duration>",
        "the random point lies in WAL archived this recently (e.g. 24h, 7d; default 24h)",
      ).env("STRONGROOM_RANDOM_WITHIN"),
    )
    .addOption(new Option("--base <id>", "the base backup to recover (default: the newest on the newest timeline)"))
    .addOption(manifestSha256Option())
    .addOption(
      new Option("--checks <file>", "SQL file: each statement must return one row holding true, or no rows").env(
        "STRONGROOM_CHECKS",
      ),
    )
    .addOption(
      new Option("--checks-database <name>", "the database the --checks run in")
        .default("postgres")
        .env("STRONGROOM_CHECKS_DATABASE"),
    )
    .addOption(
      new Option("--scratch-dir <dir>", "where the scratch cluster's directory goes (default: the temp dir)").env(
        "STRONGROOM_SCRATCH_DIR",
      ),
    )
    .addOption(
      flagOption("--keep", "leave the recovered cluster running, and its directory, for inspection", "STRONGROOM_KEEP"),
    )
    .addOption(jsonOption())
    .addHelpText(
      "after",
      `
Checks: wal (every WAL file from the base to the point fetched, signed and as its header
says, none missing after it), base (unpacked as its signed manifest says), recovery
(PostgreSQL's own log: stopped at the point, promoted), amcheck (every index and table of
every database), user-sql (--checks). Exit 0 verified, 1 failed, 3 inconclusive (no
server of the base's major here).

Examples:
  $ strongroom verify --pitr --store s3://acme-backups/pg --database-id shop --identity identity.txt --signer srsigner1…
  $ strongroom verify --pitr --store file:///var/backups/pg --database-id shop --identity identity.txt \
      --signer srsigner1… --to-time '2026-12-03 08:04:00+00' --checks checks.sql --json`,
    )
    .action(
      async (
        o: CommonFlags &
          SigningFlags & {
            identity?: string;
            audit: string;
            auditTable?: string;
            toTime?: string;
            toLsn?: string;
            randomWithin?: string;
            base?: string;
            manifestSha256?: string;
            checks?: string;
            checksDatabase: string;
            scratchDir?: string;
            keep?: boolean;
          },
      ) => {
        if (o.manifestSha256 !== undefined && o.base === undefined) {
          throw new UsageError(
            "verify --pitr --manifest-sha256 names the manifest of one base backup: give it with --base",
            {
              hint: "VerifyFlow's plan passes both",
            },
          );
        }
        if (o.toTime !== undefined && o.toLsn !== undefined) {
          throw new UsageError("verify --pitr takes one of --to-time and --to-lsn", {
            hint: "or neither: a random point in the window, the default",
          });
        }
        const target =
          o.toTime !== undefined
            ? { kind: "time" as const, value: recoveryTime(o.toTime, "--to-time") }
            : o.toLsn !== undefined
              ? { kind: "lsn" as const, value: o.toLsn }
              : undefined;
        if (target?.kind === "lsn") (await import("#core/pitr/lsn.ts")).parseLsn(target.value);
        const { parseDuration } = await import("#core/gc.ts");
        const within = o.randomWithin !== undefined ? parseDuration(o.randomWithin, "--random-within") : undefined;
        const { parseSigner } = await import("#core/audit/row-signature.ts");
        // Only --signer decides what is replayed, as for wal-fetch: never the key this process signs its rows with.
        const signers = new Set((o.signer ?? []).map(parseSigner));
        if (signers.size === 0) {
          throw new UsageError(
            "verify --pitr recovers only base backups and WAL signed by a signer it trusts, and none was given",
            {
              hint: "pass --signer srsigner1… (the database host's), or set STRONGROOM_SIGNERS",
            },
          );
        }
        const checks = o.checks
          ? { file: o.checks, text: await readChecksFile(o.checks), database: o.checksDatabase }
          : undefined;
        const identities = await identitiesFrom(o.identity, "verify --pitr", process.env, ctx.log());
        const store = await openStoreAt(o.store);
        const audit = await auditFor(store, o, ctx.log());
        const { verifyPitr } = await import("../pitr/pitr-verify.ts");
        const result = await withProgress(ctx, "verify --pitr", (progress) =>
          verifyPitr({
            store,
            databaseId: o.databaseId,
            identities,
            signers,
            ...(target ? { target } : {}),
            ...(within !== undefined ? { randomWithinMs: within } : {}),
            ...(o.base !== undefined ? { baseId: o.base } : {}),
            ...(o.manifestSha256 !== undefined ? { manifestSha256: o.manifestSha256 } : {}),
            ...(checks ? { checks } : {}),
            ...(o.scratchDir ? { scratchDir: o.scratchDir } : {}),
            keep: o.keep === true,
            audit: audit?.(o.databaseId),
            log: ctx.log(),
            ...(ctx.signal ? { signal: ctx.signal } : {}),
            ...(progress.onPhase ? { onPhase: progress.onPhase } : {}),
          }),
        );
        printResult(ctx, o.json, result, () => {
          const lines = result.checks.map(
            (c) =>
              `${c.skipped ? "-" : c.ok ? "✓" : result.outcome === "inconclusive" ? "?" : "✗"} ${c.name.padEnd(9)} ${c.seconds.toFixed(1).padStart(6)} s  ${c.detail}`,
          );
          const point =
            result.point.kind === "latest"
              ? "the end of the archive"
              : `${result.point.chosen === "random" ? "a random point, " : ""}${result.point.kind === "lsn" ? "LSN" : "time"} ${result.point.value}`;
          const verdict = result.ok
            ? `verified point-in-time recovery of ${result.databaseId}/${result.baseId} to ${point}: base ${result.rto.baseSeconds.toFixed(1)} s + WAL ${result.rto.walSeconds.toFixed(1)} s + replay ${result.rto.replaySeconds.toFixed(1)} s (${result.wal.files} WAL files, ${result.wal.bytes} bytes)`
            : result.outcome === "inconclusive"
              ? `${result.databaseId}/${result.baseId} INCONCLUSIVE: not verified and not failed`
              : `${result.databaseId}/${result.baseId} FAILED point-in-time verification (to ${point})`;
          return `${lines.join("\n")}\n${verdict}\n${result.kept ? `kept: ${result.kept}\n` : ""}`;
        });
        if (result.outcome === "inconclusive") {
          const { VerificationInconclusiveError } = await import("#core/errors.ts");
          throw new VerificationInconclusiveError(`verification of base ${result.baseId} is inconclusive`, {
            hint: "install the server of the base backup's major (its postgresql package), or run verify --pitr where it is",
          });
        }
        if (!result.ok) {
          const { VerificationFailedError } = await import("#core/errors.ts");
          const failed = result.checks.filter((c) => !c.ok && !c.skipped).map((c) => c.name);
          throw new VerificationFailedError(
            `base ${result.baseId} failed point-in-time verification: ${failed.join(", ")}`,
            {
              hint: `each check's detail is above${o.json ? " (in the JSON result)" : ""} and in ${result.stored.full} (encrypted)`,
            },
          );
        }
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

/**
 * A time as recovery_target_time takes it: ISO 8601's T and Z, which PostgreSQL refuses
 * ("invalid value"), rewritten to the same instant as PostgreSQL writes it.
 */
function recoveryTime(text: string, flag: string): string {
  const value = text
    .trim()
    .replace(/^(\d{4}-\d{2}-\d{2})T/, "$1 ")
    .replace(/Z$/, "+00");
  if (Number.isNaN(Date.parse(value.replace(" ", "T").replace(/([+-]\d\d)$/, "$1:00")))) {
    throw new UsageError(`${flag} ${JSON.stringify(text)} is not a time`, {
      hint: "give a timestamp with its zone, as PostgreSQL prints now(): '2026-12-03 08:04:00+00'",
    });
  }
  return value;
}

async function readChecksFile(file: string): Promise<string> {
  const { readFile } = await import("node:fs/promises");
  const { fileProblem } = await import("#core/errors.ts");
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read --checks ${file}: ${fileProblem(err)}`, {
      hint: "pass a file of SQL statements, each returning one row holding true, or no rows",
    });
  }
}

/** How the recovered server runs this program: node and its script, or the single executable alone. */
async function thisProgram(storeUrl: string): Promise<{ node: string; script?: string; storeUrl: string }> {
  const sea = await import("node:sea").catch(() => undefined);
  return sea?.isSea()
    ? { node: process.execPath, storeUrl }
    : { node: process.execPath, script: process.argv[1] as string, storeUrl };
}
