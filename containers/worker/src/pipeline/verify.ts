import { availableParallelism, totalmem } from "node:os";
import { Readable, Transform, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { auditedJob } from "#core/audit/audit-log.ts";
import { type BackupStats, parseStats, type RestoreRequirements } from "#core/backup-stats.ts";
import { count } from "#core/count.ts";
import { AbortedError, isStrongroomError, StrongroomError } from "#core/errors.ts";
import { verificationKeys } from "#core/keys.ts";
import type { Logger } from "#core/log.ts";
import { type Manifest, manifestObject } from "#core/manifest.ts";
import {
  type CheckName,
  type CheckResult,
  summarize,
  VERIFICATION_FORMAT,
  type Verification,
  type VerificationOutcome,
} from "#core/verification.ts";
import { findPgBin } from "../pg/binaries.ts";
import { connect, libpqEnv, type PgConn } from "../pg/conn.ts";
import {
  createScratchDatabase,
  type MissingRequirement,
  missingExtensions,
  missingLocales,
  scratchSettings,
} from "../pg/requirements.ts";
import { serverInfo } from "../pg/server-info.ts";
import type { Exclusion } from "../pg/toc.ts";
import { describeExit, spawnTool } from "../pg/tool-process.ts";
import {
  amcheckCheck,
  type CheckOutcome,
  constraintsCheck,
  rowCountsCheck,
  userSqlCheck,
} from "../pg/verify-checks.ts";
import { ageEncrypt } from "../stages/age-stream.ts";
import { type ArchiveStats, ArchiveStatsTap, structureFingerprintOf } from "../stages/archive-stats.ts";
import { sha256Tap } from "../stages/sha256-tap.ts";
import { WORKER_VERSION } from "../version.ts";
import type { BackupJobOptions } from "./backup-job.ts";
import { restore, withoutTables } from "./restore.ts";
import { openScratch, type Scratch } from "./scratch.ts";
import { assertMatches, assertStoredSize, dumpStages, getSealed, naming } from "./sealed-object.ts";

export interface VerifyOptions extends BackupJobOptions {
  /** "auto": a throwaway cluster of the backup's major; else a server to create a database on. */
  scratch: "auto" | PgConn;
  /** `--checks FILE`: its name and text. */
  checks?: { file: string; text: string };
  /** Run amcheck over every index and table. */
  deep?: boolean;
  /** Leave the scratch database (and an auto cluster's directory) for inspection. */
  keep?: boolean;
  /** Where an auto cluster's directory goes. @default os.tmpdir() */
  scratchDir?: string;
  /** No restore: every object downloaded, decrypted, decompressed and checked against the manifest. */
  integrityOnly?: boolean;
  /** Restore and check without these extensions and what depends on them: a result "verified with exclusions". */
  skipExtensions?: readonly string[];
  /**
   * pg_restore's parallel jobs. Above 1 the decrypted archive is staged (0600, in a 0700
   * directory) beside the scratch cluster, whose files are plaintext there anyway, and
   * restored with -j. @default 1
   */
  jobs?: number;
  /** Where a url scratch stages the archive for jobs > 1 (an auto one: its scratchDir). @default os.tmpdir() */
  stagingDir?: string;
}

export interface VerifyResult extends Verification {
  /** Where the result was stored: the encrypted full result and the plaintext summary. */
  stored: { full: string; summary: string };
  /** With --keep: the scratch database left behind. */
  kept?: string;
}

/**
 * Errors that say the backup does not restore: the `restore` check fails with them.
 * Anything else (no server of the major, the store unreachable, a wrong identity)
 * means the verification could not run, and is thrown.
 */
const BACKUP_FAULTS = new Set([
  "RestoreFailedError",
  "IntegrityError",
  "CorruptStreamError",
  "TruncatedStreamError",
  "AgePayloadAuthError",
  "ManifestError",
  "MissingRolesError",
]);

/**
 * Proves a backup restores and is complete: restores it into a scratch database (a
 * throwaway cluster of the backup's server major, or a fresh database on a given
 * server), runs the checks, stores the result (encrypted in full, summarized in
 * plaintext) and records verify.start and verify.ok / verify.fail. The scratch cluster
 * or database is removed afterwards, on failure and on SIGTERM too, unless `keep`.
 */
export async function verify(options: VerifyOptions): Promise<VerifyResult> {
  const { manifest, sha256 } = options.backup;
  const now = options.now ?? (() => new Date());
  const at = now();
  options.log.info("verifying backup", { databaseId: manifest.databaseId, backupId: manifest.backupId });
  return auditedJob(
    {
      log: options.audit,
      kind: "verify",
      job: { actor: options.actor ?? "cli", databaseId: manifest.databaseId, backupId: manifest.backupId },
      now,
      // The manifest's SHA-256 in every row: a verification counts for exactly the manifest
      // it restored (core/ledger.ts), never for another one put under the same id.
      start: options.integrityOnly
        ? { kind: "integrity", manifestSha256: sha256 }
        : {
            kind: "restore",
            manifestSha256: sha256,
            scratch: options.scratch === "auto" ? "auto" : "url",
            deep: options.deep === true,
          },
      ok: (r) => ({
        kind: r.kind,
        manifestSha256: sha256,
        checks: r.checks.map((c) => c.name),
        rtoSeconds: r.rto.restoreSeconds,
        // Extension names and a count: what the restore left out, no table names.
        ...(r.excluded ? { excluded: r.excluded.extensions, excludedObjects: r.excluded.objects } : {}),
      }),
      // What the scratch lacked, by kind and name (extensions and locales, no tables).
      inconclusive: (r) =>
        r.outcome === "inconclusive"
          ? {
              kind: r.kind,
              manifestSha256: sha256,
              missing: (r.missing ?? []).map((m) => `${m.kind} ${m.name}${m.version ? ` ${m.version}` : ""}`),
            }
          : undefined,
      // Check names only: the details may name tables.
      failed: (r) =>
        r.ok
          ? undefined
          : {
              kind: r.kind,
              manifestSha256: sha256,
              error: "VerificationFailedError",
              failedChecks: r.checks.filter((c) => !c.ok).map((c) => c.name),
            },
    },
    () => (options.integrityOnly ? verifyIntegrity(options, manifest, at) : verifyManifest(options, manifest, at)),
  );
}

/** The backup's stats, or the error that says the backup is damaged (a failed restore check). */
async function readStats(options: VerifyOptions, manifest: Manifest): Promise<BackupStats | StrongroomError> {
  const statsEntry = manifestObject(manifest, "stats");
  try {
    return parseStats(
      (await getSealed(options.store, statsEntry, options.identities)).toString("utf8"),
      statsEntry.key,
    );
  } catch (err) {
    if (isStrongroomError(err) && BACKUP_FAULTS.has(err.name)) return err;
    throw err;
  }
}

/**
 * Before restoring: does the scratch server have what the backup needs (its locales,
 * extensions in their versions, preloaded libraries)? Creates the target database with
 * the backup's encoding and locale on the way. Missing anything, the verification is
 * inconclusive: the restore would fail for the verifier's sake, not the backup's.
 */
async function preflight(
  scratch: Scratch,
  required: RestoreRequirements,
  skip: readonly string[],
  log: Logger,
): Promise<{ check: CheckOutcome; missing: MissingRequirement[] }> {
  // An extension the restore leaves out is not needed of the scratch server.
  const req = { ...required, extensions: required.extensions.filter((e) => !skip.includes(e.name)) };
  const missing = await missingLocales(scratch.server, req);
  if (missing.length === 0) {
    try {
      await createScratchDatabase(scratch.server, scratch.target.database, req);
      log.info("created the target database", {
        target: scratch.target.database,
        encoding: req.database.encoding,
        locale: req.database.locale ?? req.database.collate,
      });
    } catch (err) {
      const d = req.database;
      missing.push({
        kind: "locale",
        name: d.locale ?? d.collate,
        detail: `the scratch database cannot be created as the backup's was (encoding ${d.encoding}, ${d.provider} locale ${d.locale ?? d.collate}): ${(err as Error).message}`,
      });
    }
  }
  if (missing.length === 0) missing.push(...(await missingExtensions(scratch.target, req)));
  if (missing.length > 0) return { check: { ok: false, detail: missing.map((m) => m.detail).join("; ") }, missing };
  const locales = new Set([req.database.collate, req.database.ctype, ...req.collations.map((c) => c.locale)]);
  return {
    check: {
      ok: true,
      detail: `the scratch server has the backup's ${count(req.extensions.length, "extension")} and ${count(locales.size, "locale")}; database created with encoding ${req.database.encoding}, ${req.database.provider} locale ${req.database.locale ?? req.database.collate}`,
    },
    missing,
  };
}

async function verifyManifest(options: VerifyOptions, manifest: Manifest, at: Date): Promise<VerifyResult> {
  const started = performance.now();
  const stats = await readStats(options, manifest);
  const requirements = stats instanceof StrongroomError ? undefined : stats.requirements;
  options.onPhase?.("preparing the scratch database");
  const scratch = await openScratch(manifest, {
    scratch: options.scratch,
    purpose: "verify",
    ...(options.scratchDir ? { scratchDir: options.scratchDir } : {}),
    ...(options.env ? { env: options.env } : {}),
    log: options.log,
    settings: (database, hasLibrary) => scratchSettings(requirements, database, hasLibrary),
  });
  let kept: string | undefined;
  try {
    const target = scratch.target;
    const checks: CheckResult[] = [];
    let missing: MissingRequirement[] = [];
    if (requirements) {
      const t0 = performance.now();
      const pre = await preflight(scratch, requirements, options.skipExtensions ?? [], options.log);
      missing = pre.missing;
      checks.push(done("preflight", t0, pre.check));
    }
    const archive = new ArchiveStatsTap();
    const restoreStarted = performance.now();
    let restored = missing.length === 0;
    let excluded: Exclusion | undefined;
    const jobs = options.jobs ?? 1;
    const stagingDir = options.scratch === "auto" ? options.scratchDir : options.stagingDir;
    try {
      if (stats instanceof StrongroomError) throw stats;
      if (missing.length > 0) throw new InconclusiveMarker();
      // The backup resolved and checked once, in the preamble; the restore's own rows are
      // not written (this job's are verify.*).
      const result = await restore({
        store: options.store,
        backup: options.backup,
        target,
        identities: options.identities,
        // Preflight created it with the backup's locale; an older backup's, restore creates.
        create: requirements === undefined,
        rowCounts: false,
        tap: archive,
        jobs,
        // Staged beside the auto cluster: the same volume, sized for both (infra sizes it).
        ...(stagingDir ? { stagingDir } : {}),
        ...(options.skipExtensions?.length ? { skipExtensions: options.skipExtensions } : {}),
        log: options.log,
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
        ...(options.onPhase ? { onPhase: options.onPhase } : {}),
        ...(options.env ? { env: options.env } : {}),
      });
      excluded = result.excluded?.extensions.length ? result.excluded : undefined;
      const without = excluded
        ? ` without ${count(excluded.extensions.length, "extension")} (${excluded.extensions.join(", ")}) and ${count(excluded.entries.length - excluded.extensions.length, "entry", "entries")} that depend on them`
        : "";
      checks.push(
        done("restore", restoreStarted, {
          ok: true,
          detail: `restored into PostgreSQL ${scratch.serverVersion}${jobs > 1 ? ` with ${jobs} jobs` : ""}${without}`,
        }),
      );
    } catch (err) {
      if (options.signal?.aborted || err instanceof AbortedError) throw err;
      if (err instanceof InconclusiveMarker) {
        checks.push({
          name: "restore",
          ok: false,
          skipped: true,
          detail: "not run: the scratch server lacks what the backup needs",
          seconds: 0,
        });
      } else {
        if (!(isStrongroomError(err) && BACKUP_FAULTS.has(err.name))) throw err;
        restored = false;
        checks.push(done("restore", restoreStarted, { ok: false, detail: `${err.name}: ${err.message}` }));
      }
    }
    const restoreSeconds = (performance.now() - restoreStarted) / 1000;

    const checksStarted = performance.now();
    const names: CheckName[] = ["row-counts", "schema", "constraints"];
    if (options.deep) names.push("amcheck");
    if (options.checks) names.push("user-sql");
    if (!restored || stats instanceof StrongroomError) {
      const why = missing.length > 0 ? "the scratch server lacks what the backup needs" : "the restore failed";
      for (const name of names) checks.push({ name, ok: false, skipped: true, detail: `not run: ${why}`, seconds: 0 });
    } else {
      const archiveStats = archive.result();
      const dumpStats = stats;
      const client = await connect(target, "strongroom-verify");
      try {
        const server = await serverInfo(client);
        for (const name of names) {
          options.onPhase?.(name === "row-counts" ? "counting rows" : "checks");
          const t0 = performance.now();
          const outcome = await runCheck(name, {
            options,
            manifest,
            target,
            archive: archiveStats,
            client,
            dumpStats: excluded ? withoutTables(dumpStats, excluded) : dumpStats,
            serverMajor: server.major,
            expectedStructure: excluded ? structureFingerprintOf(excluded.kept) : archiveStats?.structureFingerprint,
          });
          checks.push(done(name, t0, outcome));
        }
      } finally {
        await client.end().catch(() => undefined);
      }
    }
    const checksSeconds = (performance.now() - checksStarted) / 1000;
    const outcome: VerificationOutcome =
      missing.length > 0 ? "inconclusive" : checks.every((c) => c.ok) ? "verified" : "failed";
    const verification: Verification = {
      format: VERIFICATION_FORMAT,
      kind: "restore",
      ok: outcome === "verified",
      outcome,
      ...(missing.length > 0 ? { missing } : {}),
      ...(excluded
        ? {
            excluded: {
              extensions: excluded.extensions,
              objects: excluded.entries.length,
              entries: excluded.entries.map((e) => ({ desc: e.desc, schema: e.namespace, name: e.tag })),
            },
          }
        : {}),
      databaseId: manifest.databaseId,
      backupId: manifest.backupId,
      at: at.toISOString(),
      scratch: {
        kind: options.scratch === "auto" ? "auto" : "url",
        serverVersion: scratch.serverVersion,
        ...(scratch.isolation ? { isolation: scratch.isolation } : {}),
      },
      checks,
      rto: {
        restoreSeconds,
        checksSeconds,
        totalSeconds: (performance.now() - started) / 1000,
        dumpBytes: manifestObject(manifest, "dump").plainBytes,
        storedBytes: manifest.objects.reduce((n, o) => n + o.storedBytes, 0),
        jobs,
      },
      worker: { version: WORKER_VERSION, cores: availableParallelism(), memoryMiB: Math.round(totalmem() / 2 ** 20) },
    };
    const stored = await storeResult(options, manifest, at, verification);
    if (options.keep) kept = scratch.describe;
    const said = {
      verified: excluded ? "backup verified with exclusions" : "backup verified",
      failed: "backup failed verification",
      inconclusive: "verification inconclusive: the scratch server lacks what the backup needs",
    };
    options.log.info(said[outcome], {
      databaseId: manifest.databaseId,
      backupId: manifest.backupId,
      ...(outcome === "inconclusive"
        ? { missing: missing.map((m) => `${m.kind} ${m.name}`) }
        : { failed: checks.filter((c) => !c.ok).map((c) => c.name) }),
      ...(excluded ? { excluded: excluded.extensions } : {}),
    });
    return { ...verification, stored, ...(kept ? { kept } : {}) };
  } finally {
    if (!kept)
      await scratch
        .dispose()
        .catch((err: unknown) => options.log.warn("could not remove the scratch database", { error: String(err) }));
  }
}

/**
 * `--integrity-only`: no scratch cluster. Every object is downloaded, its size and
 * stored SHA-256 checked, decrypted (age authenticates every chunk) and, for the dump,
 * decompressed frame by frame; the plain byte count must be the manifest's, and the plain
 * SHA-256 too where it has one (format 1; format 2 dumps are proven by each frame's checksum).
 * Nothing plain is written anywhere. It proves the bytes, not that they restore.
 */
async function verifyIntegrity(options: VerifyOptions, manifest: Manifest, at: Date): Promise<VerifyResult> {
  const started = performance.now();
  let outcome: CheckOutcome;
  try {
    for (const entry of manifest.objects) {
      if (entry.role !== "dump") {
        await getSealed(options.store, entry, options.identities);
        continue;
      }
      await assertStoredSize(options.store, entry);
      const { read, stored, decrypt, decompress } = dumpStages(options.store, entry, options.identities, options);
      // Format 2 dumps: the decoder checks every frame's checksum; hashing again would cost 0.56 core-s/GB.
      const plain = entry.plainSha256 !== undefined ? sha256Tap() : undefined;
      const signal = options.signal ? { signal: options.signal } : {};
      options.onPhase?.("downloading", { totalBytes: entry.plainBytes });
      let seen = 0;
      const progress = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          seen += chunk.length;
          options.onProgress?.(seen, entry.plainBytes);
          callback(null, chunk);
        },
      });
      // When a stage fails, the others are torn down and may report that first (a
      // premature close); the stage's own typed error is the verdict.
      let typed: unknown;
      for (const stage of [decrypt, decompress]) {
        stage.once("error", (err) => {
          if (typed === undefined && isStrongroomError(err)) typed = err;
        });
      }
      await naming(entry, async () =>
        pipeline(read, stored, decrypt, decompress, progress, ...(plain ? [plain] : []), discard(), signal).catch(
          (err: unknown) => {
            throw typed ?? err;
          },
        ),
      );
      assertMatches(entry, stored.result(), plain?.result() ?? { bytes: seen });
    }
    outcome = {
      ok: true,
      detail: `${manifest.objects.length} objects: sizes and SHA-256s, stored and plain, as the manifest records`,
    };
  } catch (err) {
    if (options.signal?.aborted || err instanceof AbortedError) throw err;
    if (!(isStrongroomError(err) && BACKUP_FAULTS.has(err.name))) throw err;
    outcome = { ok: false, detail: `${err.name}: ${err.message}` };
  }
  const check = done("integrity", started, outcome);
  const verification: Verification = {
    format: VERIFICATION_FORMAT,
    kind: "integrity",
    ok: check.ok,
    outcome: check.ok ? "verified" : "failed",
    databaseId: manifest.databaseId,
    backupId: manifest.backupId,
    at: at.toISOString(),
    checks: [check],
    rto: {
      restoreSeconds: check.seconds,
      checksSeconds: 0,
      totalSeconds: (performance.now() - started) / 1000,
      dumpBytes: manifestObject(manifest, "dump").plainBytes,
      storedBytes: manifest.objects.reduce((n, o) => n + o.storedBytes, 0),
    },
    worker: { version: WORKER_VERSION, cores: availableParallelism(), memoryMiB: Math.round(totalmem() / 2 ** 20) },
  };
  const stored = await storeResult(options, manifest, at, verification);
  return { ...verification, stored };
}

interface CheckContext {
  options: VerifyOptions;
  manifest: Manifest;
  target: PgConn;
  archive: ArchiveStats | undefined;
  client: Awaited<ReturnType<typeof connect>>;
  dumpStats: ReturnType<typeof parseStats>;
  serverMajor: number;
  /** The structure fingerprint of what was restored: the archive's, or its kept entries'. */
  expectedStructure: string | undefined;
}

async function runCheck(name: CheckName, c: CheckContext): Promise<CheckOutcome> {
  try {
    switch (name) {
      case "row-counts":
        return await rowCountsCheck(c.client, c.dumpStats);
      case "schema":
        return await schemaCheck(c);
      case "constraints":
        return c.archive
          ? await constraintsCheck(c.client, c.archive.notValidConstraints)
          : { ok: false, detail: "the archive's table of contents could not be read" };
      case "amcheck":
        return await amcheckCheck(c.client, c.serverMajor);
      case "user-sql":
        return await userSqlCheck(
          c.client,
          c.target,
          c.options.checks?.file ?? "",
          c.options.checks?.text ?? "",
          c.serverMajor,
        );
      default:
        return { ok: false, detail: `unknown check ${name}` };
    }
  } catch (err) {
    if (c.options.signal?.aborted) throw err;
    return { ok: false, detail: `${(err as Error).name}: ${(err as Error).message}` };
  }
}

/**
 * The restored schema is the dumped one: a schema-only dump of the restored database,
 * by a pg_dump of the backup's own major, fingerprints the same as the structure of the
 * archive that was restored (its data, large objects and database-name entries aside).
 * The archive's full fingerprint must also be the one the backup's stats recorded.
 */
async function schemaCheck(c: CheckContext): Promise<CheckOutcome> {
  if (!c.archive) return { ok: false, detail: "the archive's table of contents could not be read" };
  if (c.dumpStats.schemaFingerprint && c.dumpStats.schemaFingerprint !== c.archive.schemaFingerprint) {
    return { ok: false, detail: "the archive's table of contents is not the one the backup's stats were taken from" };
  }
  const major = Number(c.manifest.pgDump.version.split(".")[0]);
  if (c.serverMajor !== major) {
    // pg_dump refuses a server newer than itself, and a newer pg_dump writes the schema
    // differently: no comparison here would mean anything, so none is claimed.
    return {
      ok: true,
      skipped: true,
      detail: `skipped: the --scratch server is PostgreSQL ${c.serverMajor}, the backup's pg_dump ${major}; the schema is compared on a server of the backup's major (--scratch auto)`,
    };
  }
  const bin = await findPgBin(
    ["pg_dump"],
    major,
    `a schema dump of a pg_dump ${c.manifest.pgDump.version} archive`,
    c.options.env,
  );
  if (bin.major !== major) {
    return {
      ok: true,
      skipped: true,
      detail: `skipped: no pg_dump ${major} installed (only ${bin.major}), and another major writes the schema differently`,
    };
  }
  const proc = spawnTool(
    `${bin.dir}/pg_dump`,
    ["--schema-only", "-Fc", "-Z0", "--no-password", `--dbname=${c.target.database}`],
    libpqEnv(c.target, "strongroom-verify"),
    { stdout: "pipe", ...(c.options.signal ? { signal: c.options.signal } : {}) },
  );
  const tap = new ArchiveStatsTap();
  await pipeline(proc.child.stdout as Readable, tap, discard());
  const exit = await proc.exited;
  if (exit.code !== 0) return { ok: false, detail: `pg_dump --schema-only ${describeExit(exit)}: ${proc.stderr()}` };
  const restored = tap.result();
  if (!restored) return { ok: false, detail: `the schema dump could not be read: ${tap.failure?.message}` };
  return restored.structureFingerprint === c.expectedStructure
    ? { ok: true, detail: `schema fingerprint ${restored.structureFingerprint.slice(0, 12)}… as dumped` }
    : { ok: false, detail: "the restored schema differs from the dumped one (objects missing, extra or changed)" };
}

/** Thrown to skip the restore when preflight found something missing; never escapes. */
class InconclusiveMarker extends Error {}

function discard(): Writable {
  return new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
}

function done(name: CheckName, t0: number, outcome: CheckOutcome): CheckResult {
  return { name, ...outcome, seconds: (performance.now() - t0) / 1000 };
}

/** The full result, encrypted to the backup's recipients, then the plaintext summary. */
async function storeResult(
  options: VerifyOptions,
  manifest: Manifest,
  at: Date,
  verification: Verification,
): Promise<{ full: string; summary: string }> {
  const keys = verificationKeys(manifest.databaseId, manifest.backupId, at);
  const sealed: Buffer[] = [];
  await pipeline(
    Readable.from([Buffer.from(`${JSON.stringify(verification, null, 2)}\n`)]),
    await ageEncrypt(manifest.recipients),
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        sealed.push(chunk);
        callback();
      },
    }),
  );
  await options.store.putIfAbsent(keys.full, Buffer.concat(sealed));
  await options.store.putIfAbsent(keys.summary, `${JSON.stringify(summarize(verification), null, 2)}\n`);
  return keys;
}
