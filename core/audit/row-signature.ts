import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from "node:crypto";
import { InvalidKeyError } from "../errors.ts";
import type { AuditRow } from "./audit-chain.ts";

/**
 * Signed audit rows, for an audit log a store writer can write (local mode: the store's
 * own `.strongroom/audit/`). A hash chain proves order, not authorship: anyone who can put
 * objects can append a well-formed `backup.ok` row for a manifest of their own. So the
 * hosts that back up and verify sign each row's hash with an Ed25519 key they hold, and
 * readers count only rows signed by a signer they were told to trust (`--signer`, or the
 * public half of their own `--signing-key`). In a deployment the DynamoDB log needs none:
 * only the audit-append function may write it.
 *
 * Text forms: the secret is `SRSIGN-SECRET-1<base64url PKCS#8>`, the public signer
 * `srsigner1<base64url raw 32 bytes>`; a row's signature covers
 * `strongroom.audit-row/1\n<hash>`.
 */
export const SIGNER_PREFIX = "srsigner1";
export const SIGNING_KEY_PREFIX = "SRSIGN-SECRET-1";
const CONTEXT = "strongroom.audit-row/1\n";

export interface RowSignature {
  signer: string;
  value: string;
}

export interface RowSigner {
  /** The public signer string readers pass to --signer. */
  signer: string;
  sign: (row: AuditRow) => RowSignature;
  /** Signs `text` under `context` (another kind of record than a row: a WAL file's header). */
  signText: (context: string, text: string) => RowSignature;
}

function signerOf(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: "jwk" });
  return `${SIGNER_PREFIX}${jwk.x}`;
}

function signerFrom(privateKey: KeyObject): RowSigner {
  const signer = signerOf(createPublicKey(privateKey));
  return {
    signer,
    sign: (row) => ({ signer, value: sign(null, Buffer.from(CONTEXT + row.hash), privateKey).toString("base64url") }),
    signText: (context, text) => ({
      signer,
      value: sign(null, Buffer.from(context + text), privateKey).toString("base64url"),
    }),
  };
}

/** A new signing key: the secret text to keep, and the signer to publish. */
export function generateSigningKey(): { secret: string; signer: string } {
  const { privateKey } = generateKeyPairSync("ed25519");
  const der = privateKey.export({ format: "der", type: "pkcs8" });
  return { secret: `${SIGNING_KEY_PREFIX}${der.toString("base64url")}`, signer: signerFrom(privateKey).signer };
}

/** The signer in a key file's text (comment lines ignored). */
export function parseSigningKey(text: string, where = "signing key"): RowSigner {
  const line = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .find((l) => l !== "" && !l.startsWith("#"));
  if (!line?.startsWith(SIGNING_KEY_PREFIX)) {
    throw new InvalidKeyError(`${where} holds no ${SIGNING_KEY_PREFIX}… key`, {
      hint: "pass the file `strongroom keygen --signing` wrote",
    });
  }
  try {
    const key = createPrivateKey({
      key: Buffer.from(line.slice(SIGNING_KEY_PREFIX.length), "base64url"),
      format: "der",
      type: "pkcs8",
    });
    if (key.asymmetricKeyType !== "ed25519") throw new Error("not ed25519");
    return signerFrom(key);
  } catch (err) {
    throw new InvalidKeyError(`${where} is not a valid signing key`, {
      cause: err,
      hint: "pass the file `strongroom keygen --signing` wrote",
    });
  }
}

/** A `--signer` value, checked: `srsigner1` and a 32-byte Ed25519 public key. */
export function parseSigner(text: string): string {
  const raw = text.startsWith(SIGNER_PREFIX) ? Buffer.from(text.slice(SIGNER_PREFIX.length), "base64url") : undefined;
  if (raw?.length !== 32 || `${SIGNER_PREFIX}${raw.toString("base64url")}` !== text) {
    throw new InvalidKeyError(`not a strongroom signer: ${JSON.stringify(text.slice(0, 80))}`, {
      hint: "a signer looks like srsigner1… (what `strongroom keygen --signing` printed)",
    });
  }
  return text;
}

/** Whether `row` carries a valid signature by one of `signers`. */
export function signedByOneOf(row: AuditRow, signers: ReadonlySet<string>): boolean {
  return textSignedByOneOf(row.signature, CONTEXT, row.hash, signers);
}

/** Whether `signature` is one of `signers`' over `text` under `context`. */
export function textSignedByOneOf(
  signature: RowSignature | undefined,
  context: string,
  text: string,
  signers: ReadonlySet<string>,
): boolean {
  if (!signature || !signers.has(signature.signer)) return false;
  try {
    const key = createPublicKey({
      key: { kty: "OKP", crv: "Ed25519", x: signature.signer.slice(SIGNER_PREFIX.length) },
      format: "jwk",
    });
    return verify(null, Buffer.from(context + text), key, Buffer.from(signature.value, "base64url"));
  } catch {
    return false;
  }
}
