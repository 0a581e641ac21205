import type { Command } from "commander";
import type { AuditLog } from "#core/audit/audit-log.ts";
import { UncommittedBackupError } from "#core/errors.ts";
import type { LedgerProblem } from "#core/ledger.ts";
import type { Manifest } from "#core/manifest.ts";
import type { BaseManifest } from "#core/pitr/base-manifest.ts";
import { humanBytes } from "../progress.ts";
import { auditFor, type CliContext, count, openStoreAt, printResult, table } from "./context.ts";
import { databaseIdOption, jsonOption, readsLedger, storeOption } from "./options.ts";

export function listCommand(parent: Command, ctx: CliContext): void {
  readsLedger(
    parent
      .command("list")
      .description(
        "list committed backups: those whose backup.ok audit row records their manifest's SHA-256; any other manifest in the store is named, and the exit code is 1",
      )
      .addOption(storeOption())
      .addOption(databaseIdOption("only this database's backups (default: every database)")),
  )
    .addOption(jsonOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ strongroom list --store s3://acme-backups/pg\n  $ strongroom list --store file:///var/backups/pg --database-id shop --json",
    )
    .action(
      async (o: {
        store: string;
        databaseId?: string;
        audit: string;
        auditTable?: string;
        trustStore?: boolean;
        signingKey?: string;
        signer?: string[];
        json?: boolean;
      }) => {
        const { readLedgers } = await import("#core/ledger.ts");
        const store = await openStoreAt(o.store);
        const audit = await auditFor(store, o, ctx.log());
        const ledgers = await readLedgers(store, {
          now: new Date(),
          ...(o.databaseId ? { databaseId: o.databaseId } : {}),
          ...(audit ? { audit } : {}),
          trustStore: o.trustStore === true,
        });
        const manifests = ledgers.flatMap((l) => l.backups.map((b) => b.manifest));
        const physical = await baseBackups(store, o, ctx, audit);
        const problems = [...ledgers.flatMap((l) => l.problems), ...physical.problems];
        if (ledgers.some((l) => l.trustStore)) {
          ctx.log().warn("--trust-store: every manifest is listed, committed or not");
        }
        printResult(ctx, o.json, { backups: manifests, bases: physical.bases, problems }, () =>
          [
            manifests.length
              ? listTable(manifests)
              : physical.bases.length
                ? "no logical backups"
                : problems.length
                  ? "no committed backups"
                  : "no backups",
            ...(physical.bases.length ? ["", "base backups (point-in-time recovery):", baseTable(physical.bases)] : []),
            ...problems.map(problemLine),
          ]
            .join("\n")
            .concat("\n"),
        );
        if (problems.length > 0) {
          throw new UncommittedBackupError(
            `${count(problems.length, "manifest")} in the store ${problems.length === 1 ? "does" : "do"} not count: ${problems.map((p) => p.backupId ?? p.databaseId).join(", ")}`,
            {
              hint: "someone with write access to the store put or changed them, or they were made with --audit none; `strongroom audit verify` says more",
            },
          );
        }
      },
    );
}

/**
 * The base backups (docs/pitr.md) of the database, or of every database that has any, whose
 * manifests a signer given with --signer (or the --signing-key's own) signed; any other
 * manifest under `<db>/base/` is a problem, as an uncommitted logical one is.
 */
async function baseBackups(
  store: Awaited<ReturnType<typeof openStoreAt>>,
  o: { databaseId?: string; signingKey?: string; signer?: string[]; auditTable?: string },
  ctx: CliContext,
  audit: ((databaseId: string) => AuditLog) | undefined,
): Promise<{ bases: BaseManifest[]; problems: LedgerProblem[] }> {
  const { committedBasesIn, databaseIdsWithBases, readBases } = await import("#core/pitr/bases.ts");
  const ids = o.databaseId ? [o.databaseId] : await databaseIdsWithBases(store);
  if (ids.length === 0) return { bases: [], problems: [] };
  const { storeLogOptions } = await import("./context.ts");
  const options = await storeLogOptions(o);
  const signers = new Set([...(options.signers ?? []), ...(options.signer ? [options.signer.signer] : [])]);
  if (signers.size === 0 && !o.auditTable) {
    // A physical backup is listed only when a signer says it is the host's, or an audit table commits it: neither was given.
    const found = await Promise.all(ids.map(async (id) => (await readBases(store, id, new Set())).untrusted.length));
    if (found.some((n) => n > 0)) {
      ctx.log().warn("base backups are in the store, and no --signer says whose count: they are not listed", {
        databases: ids,
      });
    }
    return { bases: [], problems: [] };
  }
  const bases: BaseManifest[] = [];
  const problems: LedgerProblem[] = [];
  for (const id of ids) {
    const reading = await readBases(store, id, signers, await committedBasesIn(audit?.(id), id));
    bases.push(...reading.trusted);
    for (const u of reading.untrusted) problems.push({ kind: "unanchored", databaseId: id, message: u.problem });
  }
  return { bases, problems };
}

function baseTable(bases: BaseManifest[]): string {
  return table(
    ["BASE ID", "STOPPED (UTC)", "DATABASE", "SERVER", "TIMELINE", "WAL (START → STOP)", "STORED"],
    bases.map((b) => [
      b.baseId,
      b.stoppedAt.replace("T", " ").replace(/\.\d+Z$/, "Z"),
      b.databaseId,
      b.server.version,
      String(b.timeline),
      `${b.startLsn} → ${b.stopLsn}`,
      humanBytes(b.object.storedBytes),
    ]),
  );
}

const problemLine = (p: LedgerProblem) => `NOT COUNTED  ${p.databaseId}  ${p.message}`;

const shortRecipient = (r: string) => `${r.slice(0, 10)}…${r.slice(-6)}`;

function listTable(manifests: Manifest[]): string {
  return table(
    ["BACKUP ID", "FINISHED (UTC)", "DATABASE", "SERVER", "DUMP", "STORED", "RECIPIENTS"],
    manifests.map((m) => [
      m.backupId,
      m.finishedAt.replace("T", " ").replace(/\.\d+Z$/, "Z"),
      m.databaseId === m.database ? m.database : `${m.databaseId} (${m.database})`,
      m.server.version,
      humanBytes(m.objects.find((o) => o.role === "dump")?.plainBytes ?? 0),
      humanBytes(m.objects.reduce((n, o) => n + o.storedBytes, 0)),
      m.recipients.map(shortRecipient).join(", "),
    ]),
  );
}
