import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import * as path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/** A self-signed CA made by openssl (CA:TRUE, as `req -x509` marks it), valid two days. */
export async function testCa(
  dir: string,
  name: string,
  subject = `/CN=${name} test CA`,
): Promise<{ cert: string; key: string }> {
  const cert = path.join(dir, `${name}-ca.crt`);
  const key = path.join(dir, `${name}-ca.key`);
  await run("openssl", ["req", "-x509", ...EC, "-keyout", key, "-out", cert, "-days", "2", "-subj", subject]);
  return { cert, key };
}

/**
 * A certificate `ca` signs, with no basicConstraints (so not a CA) and, when given, these
 * DNS names as its subjectAltName.
 */
export async function signedCertificate(
  dir: string,
  name: string,
  ca: { cert: string; key: string },
  subject: string,
  dnsNames: string[] = [],
): Promise<{ cert: string; key: string }> {
  const at = (f: string) => path.join(dir, `${name}-${f}`);
  await run("openssl", ["req", ...EC, "-keyout", at("key"), "-out", at("csr"), "-subj", subject]);
  const ext = dnsNames.length > 0 ? ["-extfile", at("ext")] : [];
  if (dnsNames.length > 0) await writeFile(at("ext"), `subjectAltName=${dnsNames.map((n) => `DNS:${n}`).join(",")}\n`);
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    at("csr"),
    "-CA",
    ca.cert,
    "-CAkey",
    ca.key,
    "-CAcreateserial",
    "-out",
    at("crt"),
    "-days",
    "2",
    ...ext,
  ]);
  return { cert: at("crt"), key: at("key") };
}

/** A CA and a server certificate for CN/SAN localhost (not 127.0.0.1), made with openssl. */
export async function serverCertificates(
  dir: string,
  name: string,
): Promise<{ ca: string; cert: string; key: string }> {
  const ca = await testCa(dir, name);
  const server = await signedCertificate(dir, `${name}-server`, ca, "/CN=localhost", ["localhost"]);
  return { ca: ca.cert, ...server };
}
