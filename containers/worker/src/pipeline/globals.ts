import type pg from "pg";
import type { Logger } from "../../../../core/log.ts";

/**
 * Applies `pg_dumpall --globals-only --no-role-passwords` output to a target cluster,
 * conservatively: roles that already exist are left exactly as they are; roles that
 * do not are created (with their attributes, settings and comments) where the
 * target role may; memberships are granted where possible. Tablespaces are skipped:
 * their directories belong to the source machine.
 */
export interface GlobalsResult {
  created: string[];
  /** Roles the dump defines that do not exist and could not be created. */
  notCreated: string[];
}

/** The role a statement is about: `CREATE ROLE x;`, `ALTER ROLE x …`, `COMMENT ON ROLE x …`. */
function roleOf(statement: string): { verb: "create" | "alter" | "comment"; role: string } | undefined {
  const m = /^(CREATE ROLE|ALTER ROLE|COMMENT ON ROLE) ("(?:[^"]|"")+"|[^\s;]+)/.exec(statement);
  if (!m?.[1] || !m[2]) return undefined;
  const raw = m[2];
  const role = raw.startsWith('"') ? raw.slice(1, -1).replace(/""/g, '"') : raw;
  const verb = m[1] === "CREATE ROLE" ? "create" : m[1] === "ALTER ROLE" ? "alter" : "comment";
  return { verb, role };
}

export async function applyGlobals(client: pg.Client, sql: string, log: Logger): Promise<GlobalsResult> {
  const existing = new Set(
    (await client.query<{ r: string }>("select rolname as r from pg_roles")).rows.map((r) => r.r),
  );
  const created = new Set<string>();
  const notCreated = new Set<string>();
  const statements = sql.split("\n").filter((line) => line.trim() !== "" && !line.startsWith("--"));
  for (const statement of statements) {
    if (statement.startsWith("SET ") || statement.startsWith("\\")) continue;
    if (statement.startsWith("CREATE TABLESPACE")) {
      log.warn("skipping a tablespace from the source cluster; objects in it are restored to the default tablespace");
      continue;
    }
    const target = roleOf(statement);
    if (target?.verb === "create") {
      if (existing.has(target.role)) continue;
      try {
        await client.query(statement);
        created.add(target.role);
      } catch (err) {
        notCreated.add(target.role);
        log.warn("cannot create role", { role: target.role, reason: (err as Error).message });
      }
      continue;
    }
    if (target && !created.has(target.role)) continue;
    try {
      await client.query(statement);
    } catch (err) {
      // Memberships and attributes are best effort: the role check after this names what matters.
      log.warn("global statement not applied", { statement: statement.slice(0, 120), reason: (err as Error).message });
    }
  }
  return { created: [...created], notCreated: [...notCreated] };
}
