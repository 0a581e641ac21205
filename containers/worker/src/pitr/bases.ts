import type { Logger } from "#core/log.ts";
import { type BaseManifest, basePrefix, readBaseManifest } from "#core/pitr/base-manifest.ts";
import { listAll, type ObjectStore } from "#core/store/object-store.ts";

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
  const out: BaseManifest[] = [];
  for await (const object of listAll(store, basePrefix(databaseId))) {
    if (!object.key.endsWith("/manifest.json")) continue;
    const chunks: Buffer[] = [];
    for await (const c of await store.get(object.key)) chunks.push(c as Buffer);
    try {
      out.push(readBaseManifest(Buffer.concat(chunks).toString("utf8"), object.key, signers));
    } catch (err) {
      log.warn("a base backup manifest is not trusted and is skipped", {
        key: object.key,
        problem: (err as Error).message,
      });
    }
  }
  return out.sort((a, b) => (a.baseId < b.baseId ? -1 : 1));
}
