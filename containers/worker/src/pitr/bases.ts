import type { Logger } from "#core/log.ts";
import type { BaseManifest } from "#core/pitr/base-manifest.ts";
import { readBases } from "#core/pitr/bases.ts";
import type { ObjectStore } from "#core/store/object-store.ts";

/**
 * The committed base backups of a database whose manifests a trusted signer signed, oldest
 * first. A planted or foreign manifest is skipped with a warning, never restored or counted.
 */
export async function trustedBases(
  store: ObjectStore,
  databaseId: string,
  signers: ReadonlySet<string>,
  log: Logger,
): Promise<BaseManifest[]> {
  return (await trustedBaseReading(store, databaseId, signers, log)).trusted;
}

/** The same, with the SHA-256 of each manifest's bytes as read: resolved once, named in audit rows. */
export async function trustedBaseReading(
  store: ObjectStore,
  databaseId: string,
  signers: ReadonlySet<string>,
  log: Logger,
): Promise<{ trusted: BaseManifest[]; sha256: Map<string, string> }> {
  const { trusted, untrusted, sha256 } = await readBases(store, databaseId, signers);
  for (const u of untrusted) {
    log.warn("a base backup manifest is not trusted and is skipped", { key: u.key, problem: u.problem });
  }
  return { trusted, sha256 };
}
