import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { Decrypter, Encrypter, type Recipient } from "age-encryption";
import {
  AgeHeaderError,
  AgeHeaderMacError,
  AgeNoIdentityMatchError,
  AgePayloadAuthError,
  IntegrityError,
  InvalidIdentityError,
  InvalidRecipientError,
  TruncatedStreamError,
} from "#core/errors.ts";
import { assertX25519Recipient, rejectedRecipient } from "#core/recipients.ts";
import { ByteQueue } from "./byte-queue.ts";

/**
 * Standard age v1 (https://age-encryption.org/v1), streaming.
 *
 * The header (recipient stanzas, MAC) is built and checked by the `age-encryption`
 * library. The payload STREAM is ours, on node:crypto ChaCha20-Poly1305: the library's
 * pure-JS cipher runs at ~120 MB/s here, node:crypto at ~2 GB/s (docs/architecture.md §3).
 *
 * STREAM: HKDF-SHA256(fileKey, salt=16-byte nonce, "payload") keys 64 KiB chunks, each
 * sealed with a 12-byte nonce = 11-byte big-endian counter || last-chunk flag.
 */
const CHUNK_BYTES = 64 * 1024;
const TAG_BYTES = 16;
const SEALED_CHUNK_BYTES = CHUNK_BYTES + TAG_BYTES;
const NONCE_BYTES = 16;
const MAX_HEADER_BYTES = 1024 * 1024;
const VERSION_LINE = Buffer.from("age-encryption.org/v1\n");
const MAC_LINE_START = Buffer.from("\n---");
/** `--- ` + 32 bytes in canonical unpadded base64 + LF. */
const MAC_LINE = /^--- [A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]\n$/;

function chunkNonce(counter: number, last: boolean): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeUIntBE(counter, 5, 6); // 2^48 chunks (16 EiB) is plenty; the top bytes stay 0
  nonce[11] = last ? 1 : 0;
  return nonce;
}

function payloadKey(fileKey: Uint8Array, nonce: Uint8Array): Buffer {
  return Buffer.from(hkdfSync("sha256", fileKey, nonce, "payload", 32));
}

/**
 * Builds a header for `recipients` with the library, capturing the file key through
 * a recipient that wraps nothing. The library appends a 16-byte nonce and one empty
 * final chunk (16 bytes) after the header; we drop those and use our own nonce.
 */
async function buildHeader(recipients: readonly string[]): Promise<{ header: Buffer; fileKey: Uint8Array }> {
  if (recipients.length === 0) {
    throw new InvalidRecipientError("no recipients given", { hint: "pass at least one --recipient age1…" });
  }
  const encrypter = new Encrypter();
  for (const r of recipients) {
    assertX25519Recipient(r);
    try {
      encrypter.addRecipient(r);
    } catch (err) {
      throw new InvalidRecipientError(`invalid recipient ${rejectedRecipient(r)}: ${(err as Error).message}`, {
        cause: err,
        hint: "check the age1… public key for typos; `strongroom keygen` prints a valid one",
      });
    }
  }
  let fileKey: Uint8Array | undefined;
  const capture: Recipient = {
    wrapFileKey(key) {
      fileKey = key;
      return [];
    },
  };
  encrypter.addRecipient(capture);
  let sealed: Uint8Array;
  try {
    sealed = await encrypter.encrypt(new Uint8Array(0));
  } catch (err) {
    throw new InvalidRecipientError(`invalid recipient: ${(err as Error).message}`, { cause: err });
  }
  if (fileKey === undefined) throw new Error("age-encryption did not hand out the file key");
  return { header: Buffer.from(sealed.subarray(0, sealed.length - NONCE_BYTES - TAG_BYTES)), fileKey };
}

/** An age encryptor; `head` is its first bytes, the header and payload nonce, fixed at creation. */
export interface AgeEncryptor extends Transform {
  readonly head: Buffer;
}

class AgeEncrypt extends Transform implements AgeEncryptor {
  private readonly key: Buffer;
  readonly head: Buffer;
  private counter = 0;
  /**
   * Plaintext not yet sealed, as references to input chunks (no copy). Up to one full
   * chunk waits here until more input proves it is not the last.
   */
  private held: Buffer[] = [];
  private heldBytes = 0;

  constructor(header: Buffer, fileKey: Uint8Array) {
    super();
    const nonce = randomBytes(NONCE_BYTES);
    this.key = payloadKey(fileKey, nonce);
    this.head = Buffer.concat([header, nonce]);
    this.push(this.head);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.heldBytes === CHUNK_BYTES) this.sealHeld(false); // more data follows: not the last
      // Straight from the input when a whole chunk plus at least one more byte is there.
      if (this.heldBytes === 0 && chunk.length - offset > CHUNK_BYTES) {
        this.seal(chunk.subarray(offset, offset + CHUNK_BYTES), false);
        offset += CHUNK_BYTES;
        continue;
      }
      const n = Math.min(CHUNK_BYTES - this.heldBytes, chunk.length - offset);
      this.held.push(chunk.subarray(offset, offset + n));
      this.heldBytes += n;
      offset += n;
    }
    callback();
  }

  override _flush(callback: TransformCallback): void {
    // The final chunk can only be empty if it is also the first.
    this.sealHeld(true);
    callback();
  }

  private sealHeld(last: boolean): void {
    this.seal(this.held.length === 1 ? (this.held[0] as Buffer) : Buffer.concat(this.held, this.heldBytes), last);
    this.held = [];
    this.heldBytes = 0;
  }

  /** Pushes ciphertext and tag as they come: copying them together costs more than two pushes. */
  private seal(plain: Buffer, last: boolean): void {
    const cipher = createCipheriv("chacha20-poly1305", this.key, chunkNonce(this.counter++, last), {
      authTagLength: TAG_BYTES,
    });
    this.push(cipher.update(plain));
    cipher.final();
    this.push(cipher.getAuthTag());
  }
}

/** An age encryptor to every recipient. Rejects (InvalidRecipientError) before any data flows. */
export async function ageEncrypt(recipients: readonly string[]): Promise<AgeEncryptor> {
  const { header, fileKey } = await buildHeader(recipients);
  return new AgeEncrypt(header, fileKey);
}

/** Maps the library's untyped header errors onto ours. */
function headerError(err: unknown): Error {
  const message = (err as Error)?.message ?? String(err);
  if (message.includes("no identity matched")) {
    return new AgeNoIdentityMatchError("no identity matches any recipient of this file", {
      cause: err,
      hint: "decrypt with the identity whose recipient (age1…) the backup was made for; `strongroom list` shows them",
    });
  }
  if (message.includes("invalid header HMAC")) {
    return new AgeHeaderMacError("age header MAC does not match: the header was altered", { cause: err });
  }
  return new AgeHeaderError(`invalid age header: ${message}`, { cause: err });
}

class AgeDecrypt extends Transform {
  private readonly input = new ByteQueue();
  private state: "header" | "nonce" | "payload" = "header";
  private key: Buffer | undefined;
  private fileKey: Uint8Array | undefined;
  private counter = 0;
  private sawFinal = false;

  private readonly decrypter: Decrypter;
  private readonly expectHeadSha256: string | undefined;
  private readonly head = createHash("sha256");

  constructor(decrypter: Decrypter, expectHeadSha256?: string) {
    super();
    this.decrypter = decrypter;
    this.expectHeadSha256 = expectHeadSha256;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.input.push(chunk);
    this.advance(false).then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    this.advance(true).then(() => callback(), callback);
  }

  /**
   * Consumes what it can, pushing each chunk's plaintext as soon as that chunk has
   * authenticated, never before. Like the reference implementation, a full chunk is
   * opened as non-final first and as final if that fails; a file cut at a chunk
   * boundary therefore releases its authenticated chunks and then fails at the end.
   */
  private async advance(ended: boolean): Promise<void> {
    if (this.state === "header" && !(await this.readHeader(ended))) return;
    if (this.state === "nonce") {
      if (this.input.length < NONCE_BYTES) {
        if (ended) throw new AgeHeaderError("age file ends before its payload nonce");
        return;
      }
      const nonce = this.input.read(NONCE_BYTES);
      this.head.update(nonce);
      // With the header and nonce pinned, the payload key is the committed one: every
      // chunk released below authenticates under it, so nothing a store writer made is
      // ever released, not even before the end of the object is reached and hashed.
      if (this.expectHeadSha256 !== undefined && this.head.digest("hex") !== this.expectHeadSha256) {
        throw new IntegrityError("the age header is not the one committed: the object was replaced", {
          hint: "someone with write access to the store replaced it; restore another backup and investigate",
        });
      }
      this.key = payloadKey(this.fileKey as Uint8Array, nonce);
      this.state = "payload";
    }
    while (!this.sawFinal && this.input.length >= SEALED_CHUNK_BYTES) {
      const sealed = this.input.read(SEALED_CHUNK_BYTES);
      let plain = this.open(sealed, false);
      if (plain === undefined) {
        plain = this.open(sealed, true);
        if (plain === undefined) throw this.authError();
        this.sawFinal = true;
      }
      this.counter++;
      this.push(plain);
    }
    if (this.sawFinal && this.input.length > 0) {
      throw new AgePayloadAuthError("age payload has data after its final chunk");
    }
    if (!ended || this.sawFinal) return;
    const rest = this.input.length;
    if (rest === 0) {
      throw new TruncatedStreamError(
        this.counter === 0 ? "age file has no payload chunks" : "age payload was truncated at a chunk boundary",
      );
    }
    if (rest < TAG_BYTES) throw new AgePayloadAuthError("age payload ends inside a chunk tag");
    // The final chunk can only be empty if it is also the first.
    if (rest === TAG_BYTES && this.counter > 0) {
      throw new AgePayloadAuthError("age payload has an empty final chunk after other chunks");
    }
    const plain = this.open(this.input.read(rest), true);
    if (plain === undefined) throw this.authError();
    this.counter++;
    this.sawFinal = true;
    this.push(plain);
  }

  private async readHeader(ended: boolean): Promise<boolean> {
    const seen = Math.min(this.input.length, VERSION_LINE.length);
    if (!this.input.peek(seen).equals(VERSION_LINE.subarray(0, seen))) {
      throw new AgeHeaderError("not an age file (or an unsupported age version)");
    }
    const macAt = this.input.indexOf(MAC_LINE_START, VERSION_LINE.length - 1);
    const end = macAt < 0 ? -1 : this.input.indexOf(Buffer.from("\n"), macAt + 1);
    if (end < 0) {
      if (this.input.length > MAX_HEADER_BYTES) throw new AgeHeaderError("age header is too long");
      if (ended) throw new AgeHeaderError("age file ends inside its header");
      return false;
    }
    const header = this.input.read(end + 1);
    this.head.update(header);
    // The library compares whatever MAC it finds; a malformed MAC line is a header error.
    if (!MAC_LINE.test(header.subarray(macAt + 1).toString("latin1"))) {
      throw new AgeHeaderError("invalid age header: malformed MAC line");
    }
    try {
      this.fileKey = await this.decrypter.decryptHeader(header);
    } catch (err) {
      throw headerError(err);
    }
    this.state = "nonce";
    return true;
  }

  /** The chunk's plaintext, or undefined when it does not authenticate (nothing is released then). */
  private open(sealed: Buffer, last: boolean): Buffer | undefined {
    const decipher = createDecipheriv("chacha20-poly1305", this.key as Buffer, chunkNonce(this.counter, last), {
      authTagLength: TAG_BYTES,
    });
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    const plain = decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES));
    try {
      decipher.final();
      return plain;
    } catch {
      return undefined;
    }
  }

  private authError(): AgePayloadAuthError {
    return new AgePayloadAuthError(`age payload chunk ${this.counter} failed authentication: the data was altered`);
  }
}

/** Parses identity file text: `AGE-SECRET-KEY-1…` lines, `#` comments and blank lines ignored. */
export function parseIdentities(text: string): string[] {
  const identities = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  for (const id of identities) {
    if (!id.startsWith("AGE-SECRET-KEY-1")) {
      throw new InvalidIdentityError("identity file holds a line that is not an X25519 age identity", {
        hint: "expected AGE-SECRET-KEY-1… lines, as written by `strongroom keygen` or `age-keygen`",
      });
    }
  }
  if (identities.length === 0) throw new InvalidIdentityError("identity file holds no identities");
  return identities;
}

/**
 * An age decryptor for the given X25519 identities (`AGE-SECRET-KEY-1…`). With
 * `expectHeadSha256`, the SHA-256 of the header and payload nonce must be that, before
 * any plaintext is released.
 */
export function ageDecrypt(identities: readonly string[], expectHeadSha256?: string): Transform {
  const decrypter = new Decrypter();
  for (const id of identities) {
    try {
      decrypter.addIdentity(id);
    } catch (err) {
      throw new InvalidIdentityError("invalid age identity", { cause: err });
    }
  }
  return new AgeDecrypt(decrypter, expectHeadSha256);
}
