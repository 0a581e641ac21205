import pg from "pg";
import type { LocaleProvider, RequiredExtension, RestoreRequirements } from "#core/backup-stats.ts";
import { UsageError } from "#core/errors.ts";
import type { MissingOnScratch } from "#core/verification.ts";
import { connect, type PgConn } from "./conn.ts";

/**
 * What a restore of a backup needs of the server, and whether a server has it. A backup
 * records its requirements (extensions, locales, encoding, size) on its snapshot; verify
 * compares them with the scratch server before restoring. Something missing there says
 * nothing about the backup, so the verification is inconclusive, never failed.
 */

const PROVIDERS: Record<string, LocaleProvider> = { c: "libc", i: "icu", b: "builtin" };

/** Schemas whose objects are the server's own, not the database's. */
const SYSTEM_SCHEMAS = `(select oid from pg_namespace where nspname in ('pg_catalog', 'information_schema') or nspname like 'pg\\_toast%')`;

/**
 * The collations the database's objects use, beyond the default, C and POSIX. Columns,
 * index keys and domains name theirs directly: a collation initdb created (such as
 * "en_US.utf8") is pinned, so pg_depend never records a use of it. pg_depend adds the
 * uses of collations created later, in views and expressions too.
 */
const USED_COLLATIONS = `
with used(oid) as (
  select a.attcollation from pg_attribute a join pg_class r on r.oid = a.attrelid
   where r.relnamespace not in ${SYSTEM_SCHEMAS} and not a.attisdropped and a.attcollation <> 0
  union select unnest(i.indcollation::oid[]) from pg_index i join pg_class r on r.oid = i.indrelid
   where r.relnamespace not in ${SYSTEM_SCHEMAS}
  union select t.typcollation from pg_type t where t.typnamespace not in ${SYSTEM_SCHEMAS} and t.typcollation <> 0
  union select refobjid from pg_depend where refclassid = 'pg_collation'::regclass
  union select c.oid from pg_collation c where c.collnamespace not in ${SYSTEM_SCHEMAS}
)
select n.nspname as schema, c.collname as name, to_jsonb(c) as c
  from pg_collation c join pg_namespace n on n.oid = c.collnamespace
 where c.oid in (select oid from used) and c.collprovider <> 'd'
 order by 1, 2`;

/** Reads what a restore of the connected database needs (run on the backup's snapshot). */
export async function readRequirements(client: pg.Client): Promise<RestoreRequirements> {
  const db = (
    await client.query<{ v: string; n: string; enc: string; size: string; d: Record<string, unknown>; denc: string }>(
      `select current_setting('server_version') as v, current_setting('server_version_num') as n,
              current_setting('server_encoding') as enc, pg_database_size(d.oid)::text as size,
              to_jsonb(d) - 'datacl' as d, pg_encoding_to_char(d.encoding) as denc
         from pg_database d where d.datname = current_database()`,
    )
  ).rows[0];
  if (!db) throw new Error("the connected database is not in pg_database");
  const extensions = await client.query<RequiredExtension>(
    `select e.extname as name, e.extversion as version, n.nspname as schema,
            coalesce((select json_agg(json_build_object('schema', cn.nspname, 'name', c.relname) order by cn.nspname, c.relname)
                        from unnest(e.extconfig) as x(oid) join pg_class c on c.oid = x.oid
                        join pg_namespace cn on cn.oid = c.relnamespace), '[]') as config
       from pg_extension e join pg_namespace n on n.oid = e.extnamespace order by 1`,
  );
  const collations = await client.query<{ schema: string; name: string; c: Record<string, unknown> }>(USED_COLLATIONS);
  const provider = PROVIDERS[String(db.d.datlocprovider ?? "c")] ?? "libc";
  const dbLocale = db.d.datlocale ?? db.d.daticulocale;
  return {
    server: { version: (db.v.split(" ")[0] ?? db.v) as string, versionNum: Number(db.n), encoding: db.enc },
    databaseBytes: Number(db.size),
    database: {
      encoding: db.denc,
      provider,
      collate: String(db.d.datcollate ?? ""),
      ctype: String(db.d.datctype ?? ""),
      ...(provider !== "libc" && typeof dbLocale === "string" ? { locale: dbLocale } : {}),
    },
    extensions: extensions.rows,
    collations: collations.rows.flatMap(({ schema, name, c }) => {
      const kind = PROVIDERS[String(c.collprovider)];
      const locale = kind === "libc" ? c.collcollate : (c.colllocale ?? c.colliculocale);
      if (!kind || typeof locale !== "string") return [];
      // Always there: C and POSIX are built in, and need no locale of the system's.
      if (kind === "libc" && (locale === "C" || locale === "POSIX")) return [];
      return [{ schema, name, provider: kind, locale }];
    }),
  };
}

/** Libraries an extension must have in shared_preload_libraries before CREATE EXTENSION works. */
const PRELOADED: Record<string, string> = {
  pg_cron: "pg_cron",
  pgaudit: "pgaudit",
  timescaledb: "timescaledb",
  pg_stat_statements: "pg_stat_statements",
};

/**
 * Server settings a scratch cluster needs for these requirements, given the database
 * the backup will be restored into: the preloaded libraries, and pg_cron's database.
 */
export function scratchSettings(
  req: RestoreRequirements | undefined,
  database: string,
  hasLibrary: (name: string) => boolean,
): string[] {
  const names = new Set((req?.extensions ?? []).map((e) => e.name));
  // A library the server lacks is left out: the server would not start, and the
  // extension's probe then says what is missing.
  const libraries = Object.entries(PRELOADED)
    .filter(([ext, lib]) => names.has(ext) && hasLibrary(lib))
    .map(([, lib]) => lib);
  if (libraries.length === 0) return [];
  return [
    `shared_preload_libraries=${libraries.join(",")}`,
    ...(libraries.includes("pg_cron") ? [`cron.database_name=${database}`] : []),
  ];
}

/** One thing a server lacks for a backup's restore, said so that someone can act on it. */
export type MissingRequirement = MissingOnScratch;
type MissingKind = MissingOnScratch["kind"];

/** Compares dotted versions numerically (3.10 > 3.9); text parts compare as text. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/);
  const pb = b.split(/[.-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? "0";
    const y = pb[i] ?? "0";
    const nx = Number(x);
    const ny = Number(y);
    const d = Number.isFinite(nx) && Number.isFinite(ny) ? nx - ny : x.localeCompare(y);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

const localeList = (req: RestoreRequirements): Array<{ provider: LocaleProvider; locale: string; usedBy: string }> => {
  const out = new Map<string, { provider: LocaleProvider; locale: string; usedBy: string }>();
  const add = (provider: LocaleProvider, locale: string, usedBy: string) => {
    if (!locale || (provider === "libc" && (locale === "C" || locale === "POSIX"))) return;
    const key = `${provider}:${locale}`;
    if (!out.has(key)) out.set(key, { provider, locale, usedBy });
  };
  const d = req.database;
  add("libc", d.collate, "the database's default collation");
  add("libc", d.ctype, "the database's character classification");
  if (d.locale) add(d.provider, d.locale, "the database's default collation");
  for (const c of req.collations) add(c.provider, c.locale, `collation ${c.schema}.${c.name}`);
  return [...out.values()];
};

/**
 * A probe refused for want of a privilege says nothing about what the server has: the
 * --scratch server's user may not do what verify needs. That is the caller's to fix.
 */
function refuseUnprivileged(failed: (Error & { code?: string }) | undefined, what: string): void {
  if (failed?.code !== "42501") return;
  throw new UsageError(`the --scratch server's user cannot ${what}: ${failed.message}`, {
    hint: "verify on a --scratch server as a superuser (the restore creates the backup's extensions), or use --scratch auto",
  });
}

/** Runs `sql` in a transaction that is always rolled back; the error, if it failed. */
async function probe(client: pg.Client, sql: string): Promise<(Error & { code?: string }) | undefined> {
  await client.query("begin");
  try {
    await client.query(sql);
    return undefined;
  } catch (err) {
    return err as Error & { code?: string };
  } finally {
    await client.query("rollback").catch(() => undefined);
  }
}

/**
 * Step 1 of a verify's restore, on the scratch server's maintenance database: every
 * locale the backup uses can be loaded there (a collation made from it in a transaction
 * that is rolled back). The target database is then created with the backup's own
 * encoding and default locale (`createScratchDatabase`), and the extensions probed in it.
 */
export async function missingLocales(server: PgConn, req: RestoreRequirements): Promise<MissingRequirement[]> {
  const client = await connect(server, "strongroom-verify");
  try {
    const missing: MissingRequirement[] = [];
    for (const { provider, locale, usedBy } of localeList(req)) {
      if (provider === "builtin") continue; // built into PostgreSQL 17+, nothing of the system's
      const failed = await probe(
        client,
        `create collation pg_temp.strongroom_probe (provider = ${provider}, locale = ${pg.escapeLiteral(locale)})`,
      );
      refuseUnprivileged(failed, "create a temporary collation to try a locale");
      if (failed) {
        missing.push({
          kind: "locale",
          name: locale,
          detail: `${provider} locale ${JSON.stringify(locale)} (${usedBy}) is not available on the scratch server: ${failed.message}`,
        });
      }
    }
    return missing;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Creates the database a verify restores into, as the backup's was: its encoding and
 * default locale, from template0. A restore into the server's default locale would sort,
 * index and check text differently from the database that was backed up.
 */
export async function createScratchDatabase(server: PgConn, database: string, req: RestoreRequirements) {
  const client = await connect(server, "strongroom-verify");
  try {
    const d = req.database;
    const lit = pg.escapeLiteral;
    const options = [`template = template0`, `encoding = ${lit(d.encoding)}`];
    options.push(`lc_collate = ${lit(d.collate)}`, `lc_ctype = ${lit(d.ctype)}`);
    if (d.provider !== "libc" && d.locale) {
      options.push(`locale_provider = ${d.provider}`);
      options.push(d.provider === "icu" ? `icu_locale = ${lit(d.locale)}` : `builtin_locale = ${lit(d.locale)}`);
    }
    await client.query(`create database ${pg.escapeIdentifier(database)} with ${options.join(" ")}`);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Every extension the backup has can be created in the target database: it is
 * available, in the backup's version or a newer one, and CREATE EXTENSION works (its
 * library loads; a library that must be preloaded is). Each is created in a
 * transaction that is rolled back, so the restore still starts from an empty database.
 */
export async function missingExtensions(target: PgConn, req: RestoreRequirements): Promise<MissingRequirement[]> {
  const client = await connect(target, "strongroom-verify");
  try {
    const available = await client.query<{ name: string; version: string; installed: boolean }>(
      "select name, version, installed from pg_available_extension_versions",
    );
    const server = (await client.query<{ v: string }>("select current_setting('server_version') as v")).rows[0]?.v;
    // Only superusers and pg_read_all_settings may read it; unknown, the probe's own
    // error decides.
    const preload = await client
      .query<{ p: string }>("select current_setting('shared_preload_libraries') as p")
      .then((r) => r.rows[0]?.p ?? "")
      .catch(() => undefined);
    const preloaded = new Set((preload ?? "").split(",").map((l) => l.trim().replace(/^"|"$/g, "")));
    const versions = new Map<string, string[]>();
    for (const row of available.rows) versions.set(row.name, [...(versions.get(row.name) ?? []), row.version]);
    const missing: MissingRequirement[] = [];
    for (const ext of req.extensions) {
      const have = versions.get(ext.name);
      const named = `${ext.name} ${ext.version}`;
      if (!have) {
        missing.push({
          kind: "extension",
          name: ext.name,
          version: ext.version,
          detail: `extension ${named} is not installed on the scratch server (PostgreSQL ${server})`,
        });
        continue;
      }
      const newest = [...have].sort(compareVersions).at(-1) as string;
      if (!have.includes(ext.version) && compareVersions(ext.version, newest) > 0) {
        missing.push({
          kind: "extension-version",
          name: ext.name,
          version: ext.version,
          detail: `extension ${named} is newer than the scratch server's (${have.sort(compareVersions).join(", ")})`,
        });
        continue;
      }
      const failed = await probe(client, `create extension if not exists ${pg.escapeIdentifier(ext.name)} cascade`);
      refuseUnprivileged(failed, `create extension ${ext.name}`);
      if (failed) {
        // pg_cron's script fails on its unknown settings rather than naming the preload.
        const library = PRELOADED[ext.name];
        const notPreloaded =
          /shared_preload_libraries/i.test(failed.message) ||
          (library !== undefined && preload !== undefined && !preloaded.has(library));
        missing.push({
          kind: notPreloaded ? "preload" : "extension-unusable",
          name: ext.name,
          version: ext.version,
          detail: `extension ${named} is installed on the scratch server but cannot be created: ${failed.message}`,
        });
      }
    }
    return missing;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** What to do about what is missing, one sentence per kind present. */
export function missingHint(missing: readonly MissingRequirement[], scratch: "auto" | "url"): string {
  const kinds = new Set(missing.map((m) => m.kind));
  const names = (k: MissingKind[]) => [...new Set(missing.filter((m) => k.includes(m.kind)).map((m) => m.name))];
  const out: string[] = [];
  const exts = names(["extension", "extension-version", "extension-unusable"]);
  if (exts.length > 0) {
    out.push(
      `install ${exts.join(", ")} for the backup's PostgreSQL major where verify restores (the worker image lists what it ships; the config's verify.image names one built FROM it), or skip what exists only on the source with --skip-extension NAME`,
    );
  }
  if (kinds.has("preload")) {
    out.push(
      scratch === "auto"
        ? `the scratch cluster preloads ${names(["preload"]).join(", ")} already; install the library for this major`
        : `add ${names(["preload"]).join(", ")} to shared_preload_libraries of the --scratch server, or verify with --scratch auto, which preloads it`,
    );
  }
  if (kinds.has("locale")) {
    out.push(
      `generate the locales ${names(["locale"]).join(", ")} where verify runs (locale-gen, or the locales-all package)`,
    );
  }
  return `${out.join("; ")}; nothing is wrong with the backup as far as this says`;
}
