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
  const { trusted, untrusted } = await readBases(store, databaseId, signers);
  for (const u of untrusted) {
    log.warn("a base backup manifest is not trusted and is skipped", { key: u.key, problem: u.problem });
  }
  return trusted;
}
