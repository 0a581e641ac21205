import { IntegrityError, NotFoundError } from "../errors.ts";
import { getBytes, listAll, type ObjectStore } from "../store/object-store.ts";
import { type AuditRow, parseAuditRowText } from "./audit-chain.ts";
import type { AuditLog } from "./audit-log.ts";
import { type RowSigner, signedByOneOf } from "./row-signature.ts";

export interface StoreAuditLogOptions {
  /** Signs every row this log writes (the host's `--signing-key`). */
  signer?: RowSigner;
  /**
   * Signers whose rows count (`--signer`, and the signing key's own). Empty: every row
   * counts, which anyone who can write the store can exploit (docs/architecture.md §5).
   */
  signers?: readonly string[];
}

/** `org` → `org`, `db#shop` → `db-shop`: a scope as a key segment. */
export function scopeSegment(scope: string): string {
  return scope.replace("#", "-");
}

const AUDIT_PREFIX = ".strongroom/audit/";

/**
 * The audit log in an object store, for local mode: one object per row under
 * `.strongroom/audit/<scope>/<seq>.json`, written with put-if-absent.
 */
export class StoreAuditLog implements AuditLog {
  private readonly prefix: string;
  private readonly store: ObjectStore;
  private readonly signer: RowSigner | undefined;
  readonly signers: ReadonlySet<string>;

  constructor(store: ObjectStore, scope = "org", options: StoreAuditLogOptions = {}) {
    this.store = store;
    this.prefix = `${AUDIT_PREFIX}${scopeSegment(scope)}/`;
    this.signer = options.signer;
    this.signers = new Set([...(options.signers ?? []), ...(options.signer ? [options.signer.signer] : [])]);
  }

  get rowsSigned(): boolean {
    return this.signers.size > 0;
  }

  trusts(row: AuditRow): boolean {
    return this.signers.size === 0 || signedByOneOf(row, this.signers);
  }

  keyOf(seq: string): string {
    return `${this.prefix}${seq}.json`;
  }

  async head(): Promise<AuditRow | undefined> {
    let last: string | undefined;
    for await (const o of listAll(this.store, this.prefix)) last = o.key;
    if (last === undefined) return undefined;
    try {
      return parseAuditRowText((await getBytes(this.store, last)).toString("utf8"), last);
    } catch (err) {
      if (err instanceof NotFoundError) return this.head();
      throw err;
    }
  }

  async putRow(row: AuditRow): Promise<void> {
    const signed = this.signer ? { ...row, signature: this.signer.sign(row) } : row;
    await this.store.putIfAbsent(this.keyOf(row.seq), `${JSON.stringify(signed)}\n`);
  }

  async *rows(fromSeq?: string): AsyncIterable<AuditRow> {
    for await (const o of listAll(this.store, this.prefix)) {
      if (fromSeq !== undefined && o.key < this.keyOf(fromSeq)) continue;
      const row = parseAuditRowText((await getBytes(this.store, o.key)).toString("utf8"), o.key);
      // The key orders the chain; a row stored under another row's key would let a writer
      // reorder or hide rows without touching any row's hash.
      if (o.key !== this.keyOf(String(row.seq))) {
        throw new IntegrityError(`audit row ${o.key} holds seq ${JSON.stringify(row.seq)}`, {
          hint: "rows are append-only; someone with write access to the store moved or altered one",
        });
      }
      yield row;
    }
  }

  /** Every scope that has rows in `store`. */
  static async scopes(store: ObjectStore): Promise<string[]> {
    const scopes = new Set<string>();
    for await (const o of listAll(store, AUDIT_PREFIX)) {
      const segment = o.key.slice(AUDIT_PREFIX.length).split("/")[0] ?? "";
      scopes.add(segment.startsWith("db-") ? `db#${segment.slice(3)}` : segment);
    }
    return [...scopes].sort();
  }
}
