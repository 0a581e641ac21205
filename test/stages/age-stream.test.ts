import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import { inflateSync } from "node:zlib";
import { Decrypter, Encrypter } from "age-encryption";
import * as cctv from "cctv-age";
import { describe, expect, it } from "vitest";
import {
  AgeHeaderError,
  AgeHeaderMacError,
  AgeNoIdentityMatchError,
  AgePayloadAuthError,
  InvalidRecipientError,
  TruncatedStreamError,
} from "#core/errors.ts";
import { ageDecrypt, ageEncrypt } from "#worker/stages/age-stream.ts";
import { keyPair } from "../helpers/age.ts";
import { runCommand } from "../helpers/run.ts";
import { chunked, flipByte, sha256 } from "../helpers/streams.ts";
import { tempDir } from "../helpers/temp.ts";

const KiB = 1024;
const BOUNDARIES = [0, 1, 64 * KiB - 1, 64 * KiB, 64 * KiB + 1, 128 * KiB, 5 * 1024 * KiB + 3];

async function encrypt(plain: Buffer, recipients: string[], sizes?: number[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(chunked(plain, sizes), await ageEncrypt(recipients), async (source) => {
    for await (const c of source) out.push(c);
  });
  return Buffer.concat(out);
}

/**
 * Decrypts, returning everything the decryptor released (pushed) even when it then
 * fails: the CCTV vectors pin exactly that, and nothing unauthenticated may be in it.
 */
async function decrypt(sealed: Buffer, identities: string[], sizes?: number[]) {
  const released: Buffer[] = [];
  let error: unknown;
  const decryptor = ageDecrypt(identities);
  const push = decryptor.push.bind(decryptor);
  decryptor.push = (chunk: Buffer | null) => {
    if (chunk) released.push(chunk);
    return push(chunk);
  };
  try {
    await pipeline(chunked(sealed, sizes), decryptor, async (source) => {
      for await (const _ of source);
    });
  } catch (err) {
    error = err;
  }
  return { plain: Buffer.concat(released), error };
}

describe("age stream", () => {
  it.for(BOUNDARIES)("round-trips %i bytes through our encryptor and decryptor", async (size) => {
    const { identity, recipient } = await keyPair();
    const plain = randomBytes(size);
    for (const sizes of [[65536], [1, 7, 65537], [1 << 20]]) {
      const sealed = await encrypt(plain, [recipient], sizes);
      const { plain: back, error } = await decrypt(sealed, [identity], sizes.slice().reverse());
      expect(error).toBeUndefined();
      expect(back.equals(plain)).toBe(true);
    }
  });

  it.for(BOUNDARIES)("writes %i bytes that age-encryption decrypts, and reads what it encrypts", async (size) => {
    const { identity, recipient } = await keyPair();
    const plain = randomBytes(size);
    const decrypter = new Decrypter();
    decrypter.addIdentity(identity);
    expect(Buffer.from(await decrypter.decrypt(await encrypt(plain, [recipient]))).equals(plain)).toBe(true);

    const encrypter = new Encrypter();
    encrypter.addRecipient(recipient);
    const theirs = Buffer.from(await encrypter.encrypt(plain));
    const { plain: back, error } = await decrypt(theirs, [identity]);
    expect(error).toBeUndefined();
    expect(back.equals(plain)).toBe(true);
  });

  it.for([0, 64 * KiB, 3 * 1024 * KiB + 1])("interoperates with the age CLI at %i bytes, both ways", async (size) => {
    const dir = await tempDir();
    const { identity, recipient } = await keyPair();
    await writeFile(`${dir}/key.txt`, `${identity}\n`, { mode: 0o600 });
    const plain = randomBytes(size);

    const cliDecrypted = await runCommand("age", ["-d", "-i", `${dir}/key.txt`], await encrypt(plain, [recipient]));
    expect(cliDecrypted.stderr).toBe("");
    expect(cliDecrypted.stdout.equals(plain)).toBe(true);

    const cliEncrypted = await runCommand("age", ["-r", recipient], plain);
    expect(cliEncrypted.code).toBe(0);
    const { plain: back, error } = await decrypt(cliEncrypted.stdout, [identity]);
    expect(error).toBeUndefined();
    expect(back.equals(plain)).toBe(true);
  });

  it("encrypts to several recipients, each of whom can decrypt", async () => {
    const keys = await Promise.all([keyPair(), keyPair(), keyPair()]);
    const plain = randomBytes(100_000);
    const sealed = await encrypt(
      plain,
      keys.map((k) => k.recipient),
    );
    for (const k of keys) expect((await decrypt(sealed, [k.identity])).plain.equals(plain)).toBe(true);
  });

  it("refuses a wrong identity with AgeNoIdentityMatchError", async () => {
    const [a, b] = await Promise.all([keyPair(), keyPair()]);
    const { plain, error } = await decrypt(await encrypt(randomBytes(1000), [a.recipient]), [b.identity]);
    expect(error).toBeInstanceOf(AgeNoIdentityMatchError);
    expect(plain.length).toBe(0);
  });

  it("refuses an altered header MAC with AgeHeaderMacError", async () => {
    const { identity, recipient } = await keyPair();
    const sealed = await encrypt(randomBytes(1000), [recipient]);
    const macLine = sealed.indexOf("\n--- ") + 5;
    sealed[macLine] = sealed[macLine] === 0x41 ? 0x42 : 0x41; // another base64 character
    const { error } = await decrypt(sealed, [identity]);
    expect(error).toBeInstanceOf(AgeHeaderMacError);
  });

  it("releases no plaintext past a chunk with one flipped byte", async () => {
    const { identity, recipient } = await keyPair();
    const plain = randomBytes(5 * 64 * KiB);
    const sealed = await encrypt(plain, [recipient]);
    const payloadStart =
      sealed.indexOf("\n--- ") + 1 + sealed.subarray(sealed.indexOf("\n--- ") + 1).indexOf("\n") + 1 + 16;
    const chunk = 2;
    flipByte(sealed, payloadStart + chunk * (64 * KiB + 16) + 100);
    const { plain: released, error } = await decrypt(sealed, [identity]);
    expect(error).toBeInstanceOf(AgePayloadAuthError);
    expect((error as Error).message).toMatch(/chunk 2 failed authentication/);
    expect(released.equals(plain.subarray(0, chunk * 64 * KiB))).toBe(true);
  });

  it.each([
    // The plaintext ends with a 500-byte chunk (516 bytes sealed); dropping it leaves whole chunks.
    ["at a chunk boundary", (n: number) => n - 516, TruncatedStreamError],
    ["inside a chunk", (n: number) => n - 1000, AgePayloadAuthError],
    ["inside the header", () => 30, AgeHeaderError],
  ] as const)("detects a file truncated %s", async (_name, cut, errorClass) => {
    const { identity, recipient } = await keyPair();
    const plain = randomBytes(3 * 64 * KiB + 500);
    const sealed = await encrypt(plain, [recipient]);
    const end = cut(sealed.length);
    const { plain: released, error } = await decrypt(sealed.subarray(0, end), [identity]);
    expect(error).toBeInstanceOf(errorClass);
    expect(plain.subarray(0, released.length).equals(released)).toBe(true);
    expect(released.length).toBeLessThan(plain.length);
  });

  it("rejects invalid recipients with InvalidRecipientError before any data flows", async () => {
    await expect(ageEncrypt(["age1notarealkey"])).rejects.toBeInstanceOf(InvalidRecipientError);
    await expect(ageEncrypt([])).rejects.toBeInstanceOf(InvalidRecipientError);
    const { recipient } = await keyPair();
    const typo = `${recipient.slice(0, -1)}${recipient.endsWith("q") ? "p" : "q"}`; // bad bech32 checksum
    await expect(ageEncrypt([typo])).rejects.toBeInstanceOf(InvalidRecipientError);
  });

  describe("C2SP CCTV vectors (X25519 and STREAM)", () => {
    const expectations: Record<string, Array<new (...args: never[]) => Error>> = {
      "no match": [AgeNoIdentityMatchError],
      "HMAC failure": [AgeHeaderMacError],
      "header failure": [AgeHeaderError],
      "payload failure": [AgePayloadAuthError, TruncatedStreamError],
    };
    const vectors = Object.entries(cctv as Record<string, Uint8Array>)
      .map(([name, raw]) => {
        const file = Buffer.from(raw);
        const split = file.indexOf("\n\n");
        const fields = file
          .subarray(0, split)
          .toString()
          .split("\n")
          .map((line) => [line.slice(0, line.indexOf(": ")), line.slice(line.indexOf(": ") + 2)] as const);
        const get = (k: string) => fields.filter(([key]) => key === k).map(([, v]) => v);
        let body = file.subarray(split + 2);
        if (get("compressed")[0] === "zlib") body = inflateSync(body);
        return {
          name,
          body,
          expect: get("expect")[0] as string,
          payload: get("payload")[0],
          identities: get("identity"),
          armored: get("armored")[0] === "yes",
          passphrase: get("passphrase").length > 0,
        };
      })
      .filter((v) => !v.armored && !v.passphrase && v.identities.every((id) => id.startsWith("AGE-SECRET-KEY-1")));

    it("covers every x25519 and stream vector", () => {
      const names = vectors.map((v) => v.name);
      expect(names.filter((n) => n.startsWith("x25519")).length).toBeGreaterThanOrEqual(10);
      expect(names.filter((n) => n.startsWith("stream_")).length).toBeGreaterThanOrEqual(25);
    });

    it.for(vectors.map((v) => [v.name, v] as const))("%s behaves as the vector expects", async ([, v]) => {
      const { plain, error } = await decrypt(
        v.body,
        v.identities.length ? v.identities : [(await keyPair()).identity],
        [4096],
      );
      if (v.expect === "success") {
        expect(error).toBeUndefined();
      } else {
        const allowed = expectations[v.expect];
        expect(allowed, `unknown expectation ${v.expect}`).toBeDefined();
        expect(
          allowed?.some((cls) => error instanceof cls),
          `${v.name}: expected ${v.expect}, got ${String(error)}`,
        ).toBe(true);
      }
      if (v.payload !== undefined) expect(sha256(plain)).toBe(v.payload);
    });
  });
});
