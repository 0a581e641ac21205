/**
 * Checks the RDS CA bundle before the worker image trusts it. The Dockerfile's build stage
 * downloads the bundle and runs `node containers/worker/rds-ca-bundle.ts FILE`; a file
 * that is not a bundle of Amazon RDS CA certificates (an error page, a truncated
 * download, a captive portal's answer, someone else's CA) fails the build instead of
 * becoming what every database connection is verified against.
 *
 * Not pinned by checksum by default: AWS adds CAs to the bundle (new regions, new CA
 * generations), and a pinned checksum would fail every image build the day it changes,
 * while a stale copy would not verify an instance moved to a new CA. The download is
 * authenticated by HTTPS to AWS's host, as AWS's own instructions have it. A build that
 * must be reproducible pins the bytes it reviewed: RDS_CA_BUNDLE_SHA256 (a build arg).
 *
 * Standalone (node: modules only): it runs in the image's build stage, before and apart
 * from the worker's bundle.
 */
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";

export class CaBundleError extends Error {
  override name = "CaBundleError";
}

export interface CaBundle {
  /** Each certificate's subject, in file order. */
  subjects: string[];
  sha256: string;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----\r?\n[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * The bundle's certificates, if every one is a CA certificate of Amazon RDS (subject
 * `O=Amazon Web Services, Inc.`, `OU=Amazon RDS`), and the bytes are `expectedSha256`'s
 * when one is given. Expiry is not judged: the bundle keeps CAs past their end, and an
 * expired CA verifies nothing, so it does no harm.
 */
export function checkRdsCaBundle(bytes: Buffer, expectedSha256?: string): CaBundle {
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  if (expectedSha256 && sha256 !== expectedSha256.trim().toLowerCase()) {
    throw new CaBundleError(
      `the bundle's sha256 is ${sha256}, not the pinned ${expectedSha256.trim()}: AWS may have updated it; review the new bundle and pin its checksum, or unset RDS_CA_BUNDLE_SHA256`,
    );
  }
  const blocks = bytes.toString("latin1").match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) {
    const start = JSON.stringify(bytes.subarray(0, 40).toString("latin1"));
    throw new CaBundleError(`holds no PEM certificate (${bytes.length} bytes, starting ${start})`);
  }
  const subjects = blocks.map((pem, i) => {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch (err) {
      throw new CaBundleError(`certificate ${i + 1} of ${blocks.length} does not parse: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const subject = cert.subject.split("\n");
    const fromRds =
      subject.includes("OU=Amazon RDS") && subject.some((part) => /^O=Amazon Web Services\\?, Inc\.$/.test(part));
    if (!fromRds) {
      throw new CaBundleError(
        `certificate ${i + 1} of ${blocks.length} (${subject.join(", ")}) is not an Amazon RDS CA: its subject lacks O=Amazon Web Services, Inc. and OU=Amazon RDS`,
      );
    }
    if (!cert.ca) {
      throw new CaBundleError(
        `certificate ${i + 1} of ${blocks.length} (${subject.join(", ")}) is not a CA certificate`,
      );
    }
    return cert.subject;
  });
  return { subjects, sha256 };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = process.argv[2];
  try {
    if (!file) throw new CaBundleError("usage: node containers/worker/rds-ca-bundle.ts FILE");
    const bundle = checkRdsCaBundle(readFileSync(file), process.env.RDS_CA_BUNDLE_SHA256 || undefined);
    console.log(`${file}: ${bundle.subjects.length} Amazon RDS CA certificates, sha256 ${bundle.sha256}`);
  } catch (err) {
    process.stderr.write(`rds-ca-bundle: error: ${file ?? ""}: ${(err as Error).message}\n`);
    process.exit(1);
  }
}
