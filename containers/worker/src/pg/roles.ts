import type pg from "pg";
import type { Logger } from "#core/log.ts";

/**
 * The cluster roles a database's objects need, as structured data from the catalogs:
 * attributes, memberships, per-role settings and comments. It is read on the backup's
 * snapshot and stored encrypted beside the dump.
 *
 * It replaces `pg_dumpall --globals-only` text. pg_dumpall writes a role setting's
 * value literally, so a newline in it (`ALTER ROLE me SET application_name =
 * E'x\n<any SQL>'`, which any login role may run on itself) ended one statement and
 * began another. A restore that replayed that text line by line then ran the second
 * line with the restore role's privileges. Here nothing is parsed back from SQL text:
 * every statement the restore issues is built from quoted identifiers and literals.
 */
export const ROLES_FORMAT = "strongroom.roles/1";

export interface RoleRecord {
  name: string;
  superuser: boolean;
  inherit: boolean;
  createRole: boolean;
  createDb: boolean;
  login: boolean;
  replication: boolean;
  bypassRls: boolean;
  connectionLimit: number;
  /** `rolvaliduntil` as text (`infinity` included), or null. */
  validUntil: string | null;
  comment: string | null;
}

export interface MembershipRecord {
  role: string;
  member: string;
  admin: boolean;
  /** PostgreSQL 16+ grant options; null when the source predates them. */
  inherit: boolean | null;
  set: boolean | null;
}

export interface RoleSettingRecord {
  role: string;
  /** True for `ALTER ROLE … IN DATABASE <the dumped database> SET …`. */
  inThisDatabase: boolean;
  /** `name=value` entries, as in pg_db_role_setting.setconfig. */
  settings: string[];
}

export interface RoleSnapshot {
  format: typeof ROLES_FORMAT;
  roles: RoleRecord[];
  memberships: MembershipRecord[];
  settings: RoleSettingRecord[];
}

/** Reads the roles on the current transaction's snapshot. Predefined `pg_*` roles are left out. */
export async function captureRoles(client: pg.Client): Promise<RoleSnapshot> {
  const roles = await client.query<{
    name: string;
    superuser: boolean;
    inherit: boolean;
    create_role: boolean;
    create_db: boolean;
    login: boolean;
    replication: boolean;
    bypass_rls: boolean;
    connlimit: number;
    valid_until: string | null;
    comment: string | null;
  }>(`select rolname as name, rolsuper as superuser, rolinherit as inherit, rolcreaterole as create_role,
            rolcreatedb as create_db, rolcanlogin as login, rolreplication as replication,
            rolbypassrls as bypass_rls, rolconnlimit as connlimit, rolvaliduntil::text as valid_until,
            shobj_description(oid, 'pg_authid') as comment
       from pg_roles where rolname !~ '^pg_' order by rolname`);
  // to_jsonb reads the PostgreSQL 16+ grant options where they exist, without a version switch.
  const memberships = await client.query<{
    role: string;
    member: string;
    admin: boolean;
    inherit: string | null;
    set: string | null;
  }>(`select r.rolname as role, m.rolname as member, am.admin_option as admin,
            to_jsonb(am) ->> 'inherit_option' as inherit, to_jsonb(am) ->> 'set_option' as set
       from pg_auth_members am join pg_roles r on r.oid = am.roleid join pg_roles m on m.oid = am.member
      where r.rolname !~ '^pg_' or m.rolname !~ '^pg_' order by 1, 2`);
  const settings = await client.query<{ role: string; this_db: boolean; settings: string[] }>(
    `select r.rolname as role, s.setdatabase <> 0 as this_db, s.setconfig as settings
       from pg_db_role_setting s join pg_roles r on r.oid = s.setrole
      where r.rolname !~ '^pg_'
        and (s.setdatabase = 0 or s.setdatabase = (select oid from pg_database where datname = current_database()))
      order by 1, 2`,
  );
  const bool = (v: string | null) => (v === null ? null : v === "true");
  return {
    format: ROLES_FORMAT,
    roles: roles.rows.map((r) => ({
      name: r.name,
      superuser: r.superuser,
      inherit: r.inherit,
      createRole: r.create_role,
      createDb: r.create_db,
      login: r.login,
      replication: r.replication,
      bypassRls: r.bypass_rls,
      connectionLimit: r.connlimit,
      validUntil: r.valid_until,
      comment: r.comment,
    })),
    memberships: memberships.rows.map((m) => ({
      role: m.role,
      member: m.member,
      admin: m.admin,
      inherit: bool(m.inherit),
      set: bool(m.set),
    })),
    settings: settings.rows.map((s) => ({ role: s.role, inThisDatabase: s.this_db, settings: s.settings })),
  };
}

/** Variables whose value is a list of quoted elements (pg_dumpall's variable_is_guc_list_quote). */
const LIST_QUOTE_VARIABLES = new Set([
  "local_preload_libraries",
  "search_path",
  "session_preload_libraries",
  "shared_preload_libraries",
  "temp_tablespaces",
  "unix_socket_directories",
]);

/**
 * Splits a list-valued setting as PostgreSQL's SplitGUCList does: commas separate
 * elements, double quotes protect commas and spaces (`""` is a quote).
 */
export function splitGucList(value: string): string[] {
  const out: string[] = [];
  let i = 0;
  const n = value.length;
  while (i < n) {
    while (i < n && /\s/.test(value[i] as string)) i++;
    let element = "";
    if (value[i] === '"') {
      i++;
      while (i < n) {
        if (value[i] === '"') {
          if (value[i + 1] === '"') {
            element += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        element += value[i++];
      }
      while (i < n && value[i] !== ",") i++;
    } else {
      while (i < n && value[i] !== ",") element += value[i++];
      element = element.trim();
    }
    out.push(element);
    if (value[i] === ",") i++;
  }
  return out;
}

/** `ALTER ROLE … SET name TO value` for one `name=value` entry, all of it quoted. */
export function settingStatement(
  client: pg.Client,
  role: string,
  database: string | undefined,
  entry: string,
): string | undefined {
  const eq = entry.indexOf("=");
  if (eq <= 0) return undefined;
  const name = entry.slice(0, eq);
  const value = entry.slice(eq + 1);
  const values = LIST_QUOTE_VARIABLES.has(name.toLowerCase()) ? splitGucList(value) : [value];
  const where = database === undefined ? "" : ` IN DATABASE ${client.escapeIdentifier(database)}`;
  return `ALTER ROLE ${client.escapeIdentifier(role)}${where} SET ${client.escapeIdentifier(name)} TO ${values.map((v) => client.escapeLiteral(v)).join(", ")}`;
}

function createStatement(client: pg.Client, r: RoleRecord): string {
  const flag = (on: boolean, word: string) => (on ? word : `NO${word}`);
  const limit = Number.isInteger(r.connectionLimit) ? r.connectionLimit : -1;
  return [
    `CREATE ROLE ${client.escapeIdentifier(r.name)} WITH`,
    flag(r.superuser, "SUPERUSER"),
    flag(r.inherit, "INHERIT"),
    flag(r.createRole, "CREATEROLE"),
    flag(r.createDb, "CREATEDB"),
    flag(r.login, "LOGIN"),
    flag(r.replication, "REPLICATION"),
    flag(r.bypassRls, "BYPASSRLS"),
    `CONNECTION LIMIT ${limit}`,
    ...(r.validUntil === null ? [] : [`VALID UNTIL ${client.escapeLiteral(r.validUntil)}`]),
  ].join(" ");
}

export interface ApplyRolesResult {
  created: string[];
  /** Roles the backup has that do not exist on the target and could not be created. */
  notCreated: string[];
}

/**
 * Creates the backup's roles that the target cluster lacks, where the target role may,
 * with their attributes, settings, comments and the memberships in which they are the
 * member. Roles that already exist are never altered and never granted anything.
 */
export async function applyRoles(
  client: pg.Client,
  snapshot: RoleSnapshot,
  options: { targetDatabase: string; serverMajor: number; log: Logger },
): Promise<ApplyRolesResult> {
  const { log } = options;
  const existing = new Set(
    (await client.query<{ r: string }>("select rolname as r from pg_roles")).rows.map((r) => r.r),
  );
  const created = new Set<string>();
  const notCreated: string[] = [];
  const bestEffort = async (statement: string, what: string, role: string) => {
    try {
      await client.query(statement);
    } catch (err) {
      log.warn(`${what} not applied`, { role, reason: (err as Error).message });
    }
  };
  for (const r of snapshot.roles) {
    if (existing.has(r.name)) continue;
    try {
      await client.query(createStatement(client, r));
      created.add(r.name);
    } catch (err) {
      notCreated.push(r.name);
      log.warn("cannot create role", { role: r.name, reason: (err as Error).message });
      continue;
    }
    if (r.comment !== null) {
      await bestEffort(
        `COMMENT ON ROLE ${client.escapeIdentifier(r.name)} IS ${client.escapeLiteral(r.comment)}`,
        "role comment",
        r.name,
      );
    }
  }
  for (const s of snapshot.settings) {
    if (!created.has(s.role)) continue;
    for (const entry of s.settings) {
      const statement = settingStatement(client, s.role, s.inThisDatabase ? options.targetDatabase : undefined, entry);
      if (statement) await bestEffort(statement, "role setting", s.role);
    }
  }
  for (const m of snapshot.memberships) {
    // Granting to a role that existed before would change it: never.
    if (!created.has(m.member)) continue;
    const grant = `GRANT ${client.escapeIdentifier(m.role)} TO ${client.escapeIdentifier(m.member)}`;
    const options16 =
      options.serverMajor >= 16 && m.inherit !== null && m.set !== null
        ? ` WITH ADMIN ${m.admin}, INHERIT ${m.inherit}, SET ${m.set}`
        : m.admin
          ? " WITH ADMIN OPTION"
          : "";
    await bestEffort(grant + options16, "role membership", m.member);
  }
  return { created: [...created], notCreated };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const ROLE_FLAGS = ["superuser", "inherit", "createRole", "createDb", "login", "replication", "bypassRls"] as const;
const nullableString = (v: unknown) => v === null || typeof v === "string";
const nullableBoolean = (v: unknown) => v === null || typeof v === "boolean";

function isRole(r: unknown): r is RoleRecord {
  return (
    isObject(r) &&
    typeof r.name === "string" &&
    ROLE_FLAGS.every((f) => typeof r[f] === "boolean") &&
    Number.isInteger(r.connectionLimit) &&
    nullableString(r.validUntil) &&
    nullableString(r.comment)
  );
}

function isMembership(m: unknown): m is MembershipRecord {
  return (
    isObject(m) &&
    typeof m.role === "string" &&
    typeof m.member === "string" &&
    typeof m.admin === "boolean" &&
    nullableBoolean(m.inherit) &&
    nullableBoolean(m.set)
  );
}

function isSetting(s: unknown): s is RoleSettingRecord {
  return (
    isObject(s) &&
    typeof s.role === "string" &&
    typeof s.inThisDatabase === "boolean" &&
    Array.isArray(s.settings) &&
    s.settings.every((x) => typeof x === "string")
  );
}

/**
 * Parses the decrypted roles object. Anything that is not exactly this format, down to
 * each record's field types, is not ours to replay: undefined.
 */
export function parseRoles(text: string): RoleSnapshot | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isObject(parsed) || parsed.format !== ROLES_FORMAT) return undefined;
  const { roles, memberships = [], settings = [] } = parsed;
  if (!Array.isArray(roles) || !roles.every(isRole)) return undefined;
  if (!Array.isArray(memberships) || !memberships.every(isMembership)) return undefined;
  if (!Array.isArray(settings) || !settings.every(isSetting)) return undefined;
  return { format: ROLES_FORMAT, roles, memberships, settings };
}
