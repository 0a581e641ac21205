import { createHash } from "node:crypto";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { signedBaseManifest } from "../../test/helpers/base-manifests.ts";
import type { AuditRow } from "../audit/audit-chain.ts";
import { generateSigningKey } from "../audit/row-signature.ts";
import { FileStore } from "../store/file-store.ts";
import { type BaseManifest, readBaseManifest, serializeBaseManifest } from "./base-manifest.ts";
import { committedBases, readBases } from "./bases.ts";
import { listPitrSummaries, PITR_VERIFICATION_SUMMARY_FORMAT, pitrVerificationKeys } from "./pitr-verification.ts";

const dir = await mkdtemp(path.join(tmpdir(), "base-manifest-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

const key = generateSigningKey();
const signers = new Set([key.signer]);
const BASE = "20261201T020000Z-abcdef";
const manifest: BaseManifest = signedBaseManifest({
  secret: key.secret,
  baseId: BASE,
  segment: 2,
  startedAt: "2026-12-01T02:00:00.000Z",
  stoppedAt: "2026-12-01T02:01:00.000Z",
});
const at = `shop/base/${BASE}/manifest.json`;

async function store(): Promise<FileStore> {
  const root = await mkdtemp(path.join(dir, "store-"));
  await mkdir(root, { recursive: true });
  return new FileStore(pathToFileURL(root).href);
}

describe("a base backup manifest", () => {
  it("is trusted only in the bytes basebackup writes: the same signed fields re-indented or reordered are refused", () => {
    const text = serializeBaseManifest(manifest);
    expect(readBaseManifest(text, at, signers).baseId).toBe(BASE);
    // Each of these still carries a valid signature over the same fields, under another SHA-256.
    const { signature, ...fields } = manifest;
    for (const rewritten of [
      JSON.stringify(manifest),
      `${JSON.stringify(manifest, null, 4)}\n`,
      `${JSON.stringify({ signature, ...fields }, null, 2)}\n`,
      `${JSON.stringify(manifest, null, 2)}`,
    ]) {
      expect(() => readBaseManifest(rewritten, at, signers)).toThrow(/not in the form basebackup writes/);
    }
  });

  it("is read from <db>/base/<id>/manifest.json only, never from a file of that name deeper down (a verification result)", async () => {
    const s = await store();
    await s.putIfAbsent(at, serializeBaseManifest(manifest));
    await s.putIfAbsent(`shop/base/${BASE}/verifications/manifest.json`, serializeBaseManifest(manifest));
    const reading = await readBases(s, "shop", signers);
    expect(reading.trusted.map((b) => b.baseId)).toEqual([BASE]);
    expect(reading.untrusted).toEqual([]);
  });
});

describe("verify --pitr summaries beside a base", () => {
  it("are taken only with finite, non-negative timings: a planted one with strings or negatives is passed over", async () => {
    const s = await store();
    const summary = (at: string, rto: Record<string, unknown>) => ({
      format: PITR_VERIFICATION_SUMMARY_FORMAT,
      kind: "pitr",
      ok: true,
      outcome: "verified",
      databaseId: "shop",
      baseId: BASE,
      manifestSha256: "a".repeat(64),
      at,
      rto: { baseSeconds: 1, walSeconds: 1, replaySeconds: 1, checksSeconds: 1, totalSeconds: 4, ...rto },
      checks: [],
    });
    const put = (when: string, rto: Record<string, unknown>) =>
      s.putIfAbsent(pitrVerificationKeys("shop", BASE, new Date(when)).summary, JSON.stringify(summary(when, rto)));
    await put("2026-12-02T02:00:00.000Z", {});
    await put("2026-12-02T03:00:00.000Z", { baseSeconds: "9" });
    await put("2026-12-02T04:00:00.000Z", { replaySeconds: -100 });
    await put("2026-12-02T05:00:00.000Z", { walSeconds: Number.POSITIVE_INFINITY });
    // Deeper than verify --pitr writes: a backup task's plant, say.
    await s.putIfAbsent(
      `shop/base/${BASE}/verifications/deeper/2026-12-02T06.json`,
      JSON.stringify(summary("2026-12-02T06:00:00.000Z", {})),
    );
    const read = await listPitrSummaries(s, "shop", BASE);
    expect(read.map((r) => r.at)).toEqual(["2026-12-02T02:00:00.000Z"]);
  });
});

describe("a base backup committed by the audit log", () => {
  const { signature: _signature, ...unsigned } = manifest;
  const text = serializeBaseManifest(unsigned as BaseManifest);
  const sha = createHash("sha256").update(text).digest("hex");

  it("counts unsigned only in the exact bytes a row commits", () => {
    expect(() => readBaseManifest(text, at, signers)).toThrow(/not signed by a trusted signer, nor committed/);
    expect(readBaseManifest(text, at, signers, sha).baseId).toBe(BASE);
    expect(() => readBaseManifest(`${text} `, at, signers, sha)).toThrow(/nor committed/);
    expect(() => readBaseManifest(text, at, signers, "0".repeat(64))).toThrow(/nor committed/);
    // Committed bytes still name their own place.
    expect(() => readBaseManifest(text, `shop/base/20261202T020000Z-other1/manifest.json`, signers, sha)).toThrow(
      /describes/,
    );
  });

  it("names its data and its WAL as its own id and LSNs say, even committed: a row commits bytes, not whatever they claim", () => {
    const rewrite = (change: Record<string, unknown>) => {
      const text = serializeBaseManifest({ ...(unsigned as BaseManifest), ...change });
      return () => readBaseManifest(text, at, signers, createHash("sha256").update(text).digest("hex"));
    };
    expect(rewrite({ object: { ...manifest.object, key: "billing/base/x/base.tar.zst.age" } })).toThrow(
      /names its data at billing\/base\/x/,
    );
    expect(rewrite({ walSegments: { first: "000000010000000000000001", last: "000000010000000000000002" } })).toThrow(
      /its LSNs say 000000010000000000000002 to 000000010000000000000002/,
    );
    expect(rewrite({ stopLsn: "nonsense" })).toThrow(/no valid WAL range/);
  });

  it("is committed by the first trusted backup.ok row of kind base for its id, and no longer once retired", () => {
    const row = (event: string, backupId: string, details: Record<string, unknown>, databaseId = "shop") =>
      ({
        event,
        backupId,
        databaseId,
        details,
        seq: "1",
        at: "",
        actor: "cli",
        hash: "",
        prev: "",
      }) as unknown as AuditRow;
    const rows = [
      row("backup.ok", "b1", { kind: "base", manifestSha256: "a".repeat(64) }),
      row("backup.ok", "b1", { kind: "base", manifestSha256: "b".repeat(64) }),
      row("backup.ok", "b2", { manifestSha256: "c".repeat(64) }),
      row("backup.ok", "b3", { kind: "base", manifestSha256: "d".repeat(64) }, "billing"),
      row("backup.ok", "b4", { kind: "base", manifestSha256: "e".repeat(64) }),
      row("retain.delete", "b4", { kind: "base" }),
      row("backup.ok", "b5", { kind: "base", manifestSha256: "f".repeat(64) }),
    ];
    const trusts = (r: AuditRow) => r.backupId !== "b5";
    expect([...committedBases(rows, "shop", trusts)]).toEqual([["b1", "a".repeat(64)]]);
  });
});
