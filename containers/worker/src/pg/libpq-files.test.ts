import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { StrongroomError } from "#core/errors.ts";
import { matchPgpass } from "./pgpass.ts";
import { parseServiceFile } from "./service-file.ts";

/** A .pgpass field as a user writes it: `\` before `:` and `\`. */
const pgpassField = (s: string) => s.replace(/[\\:]/g, (c) => `\\${c}`);

describe(".pgpass matching (libpq's rules)", () => {
  const key = ["db.example", "5432", "shop", "app"] as const;

  it("takes the first matching line, with * matching any field", () => {
    const text = "# comment\n\nother:5432:shop:app:no\n*:5432:*:app:first\ndb.example:5432:shop:app:second\n";
    expect(matchPgpass(text, key)).toBe("first");
  });

  it("does not match on a different port, and reads CRLF files", () => {
    expect(matchPgpass("db.example:5433:shop:app:no\r\n", key)).toBeUndefined();
    expect(matchPgpass("db.example:5432:shop:app:yes\r\n", key)).toBe("yes");
  });

  it("ends the password at an unescaped colon", () => {
    expect(matchPgpass("*:*:*:*:pa\\:ss:ignored", key)).toBe("pa:ss");
  });

  it("finds any password for any names, however they are escaped (colons, backslashes, Unicode)", () => {
    const text = fc.string({ unit: "grapheme", minLength: 1 }).filter((s) => !/[\n\r]/.test(s));
    fc.assert(
      // A line whose first character is # is a comment, in libpq as here.
      fc.property(
        fc.tuple(
          text.filter((s) => !s.startsWith("#")),
          text,
          text,
          text,
        ),
        text,
        ([host, port, db, user], password) => {
          const line = [host, port, db, user, password].map(pgpassField).join(":");
          expect(matchPgpass(`# x\n${line}\n`, [host, port, db, user])).toBe(password);
        },
      ),
    );
  });
});

describe("pg_service.conf parsing", () => {
  const file = `# services
[prod]
host=db.example
# a comment in a section
password=a=b c

[staging]
host=staging.example
`;

  it("returns the named section's settings, the value keeping everything after the first =", () => {
    expect(parseServiceFile(file, "prod")).toEqual({ host: "db.example", password: "a=b c" });
    expect(parseServiceFile(file, "staging")).toEqual({ host: "staging.example" });
  });

  it("returns undefined for a section the file does not have", () => {
    expect(parseServiceFile(file, "pro")).toBeUndefined();
    expect(parseServiceFile(file, "prod]")).toBeUndefined();
  });

  it("names the line of a setting it does not support, without quoting the value", () => {
    let error: unknown;
    try {
      parseServiceFile("[p]\nhostaddr=10.0.0.1\n", "p", "/etc/svc.conf");
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(StrongroomError);
    expect((error as Error).message).toBe(
      '/etc/svc.conf line 2 sets "hostaddr", which strongroom does not support in a service',
    );
    expect(() => parseServiceFile("[p]\npassword\n", "p")).toThrow(/line 2: expected key=value/);
    expect(() => parseServiceFile("[p]\nservice=q\n", "p")).toThrow(/cannot name another service/);
  });

  it("refuses any text only with a typed error", () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (text, name) => {
        try {
          parseServiceFile(text, name);
        } catch (err) {
          expect(err).toBeInstanceOf(StrongroomError);
        }
      }),
    );
  });
});
