/**
 * How the worker tasks authenticate the databases they connect to. The task environment
 * sets libpq's PGSSLMODE and PGSSLROOTCERT: the worker's own connections (parsePgUrl in
 * containers/worker/src/pg/conn.ts reads them for `postgres://`) and the pg_dump and
 * pg_restore it starts (libpq reads them from the environment the worker hands on) then
 * verify the same certificate against the same CAs.
 */

/**
 * Where the worker image holds the RDS global CA bundle: containers/worker/Dockerfile
 * installs it at exactly this path (test/infra/network.test.ts holds the two together).
 * The bundle holds the root CA of every commercial region, each of RSA2048, RSA4096 and
 * ECC384, so one file verifies an RDS or Aurora instance of any region and CA.
 */
export const RDS_CA_BUNDLE_PATH = "/usr/share/strongroom/rds-global-bundle.pem";

/**
 * Debian's bundle of the public CAs (package ca-certificates, in the image): for servers
 * whose certificate a public CA signed (RDS Proxy, whose certificates come from ACM, and
 * most hosted PostgreSQL services). A file, not libpq's `sslrootcert=system`: the
 * image's pg_dump 13–15 would read `system` as a file name.
 */
export const PUBLIC_CA_BUNDLE_PATH = "/etc/ssl/certs/ca-certificates.crt";

/**
 * What a task trusts the database's certificate to be signed by:
 * - `rds`: verify-full against the RDS CA bundle (RDS, Aurora);
 * - `public-ca`: verify-full against the public CAs (RDS Proxy, hosted services);
 * - `require`: encrypted but not authenticated; anyone on the path who can answer for the
 *   server's address receives the password and the data. For a server whose CA is none
 *   of these, until strongroom can carry a CA of your own.
 */
export const DATABASE_TLS_MODES = ["rds", "public-ca", "require"] as const;
export type DatabaseTls = (typeof DATABASE_TLS_MODES)[number];

/** @default "rds" everywhere a database's `tls` is not given */
export const DEFAULT_DATABASE_TLS: DatabaseTls = "rds";

/**
 * The environment a backup or restore task needs to connect to a database with `tls`.
 * Not for verify tasks: they connect to nothing but the scratch cluster inside themselves
 * (which ignores these, see containers/worker/src/pipeline/scratch.ts).
 *
 * verify-full checks the chain and that the certificate names the host the secret gives:
 * an RDS secret's `host` is the instance's endpoint, which its certificate names. A CNAME
 * of one's own in the secret fails verification, as it does for psql.
 */
export function databaseTlsEnvironment(tls: DatabaseTls = DEFAULT_DATABASE_TLS): Record<string, string> {
  switch (tls) {
    case "rds":
      return { PGSSLMODE: "verify-full", PGSSLROOTCERT: RDS_CA_BUNDLE_PATH };
    case "public-ca":
      return { PGSSLMODE: "verify-full", PGSSLROOTCERT: PUBLIC_CA_BUNDLE_PATH };
    case "require":
      // No PGSSLROOTCERT: with one, libpq's require verifies the chain as verify-ca does.
      return { PGSSLMODE: "require" };
  }
}

/**
 * The synth warning for a database's `tls`, naming the field, or undefined. `require` is
 * allowed, never silent: the config loader adds this to its warnings, which synth prints.
 */
export function databaseTlsWarning(field: string, tls: DatabaseTls | undefined): string | undefined {
  if (tls !== "require") return undefined;
  return `${field}: "require" encrypts the connection but does not authenticate the server: whoever can answer for its address gets the password and the data; use "rds" or "public-ca" where the server's certificate allows`;
}
