import { Transform, type TransformCallback } from "node:stream";
import { IntegrityError } from "#core/errors.ts";

/**
 * Passes a tar stream through untouched while keeping the content of the members named
 * in `keep` (pg_basebackup's `backup_label` and `backup_manifest`): a base backup is
 * read once, on its way into the store. ustar headers as pg_basebackup writes them
 * (512-byte blocks, octal sizes, a name and a prefix); a member larger than `maxBytes`
 * is not kept, and the stream is refused when it is no tar at all.
 */
export class TarMemberTap extends Transform {
  readonly members = new Map<string, Buffer>();
  private header = Buffer.alloc(0);
  /** Bytes of the current member's content (with its padding) still to pass. */
  private remaining = 0;
  private padding = 0;
  private current: { name: string; size: number; chunks: Buffer[] } | undefined;
  private ended = false;

  private readonly keep: ReadonlySet<string>;
  private readonly maxBytes: number;

  constructor(keep: ReadonlySet<string>, maxBytes = 64 * 1024 * 1024) {
    super();
    this.keep = keep;
    this.maxBytes = maxBytes;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.scan(chunk);
    } catch (err) {
      callback(err as Error);
      return;
    }
    callback(null, chunk);
  }

  private scan(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.ended) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, chunk.length - at);
        if (this.current && this.remaining > this.padding) {
          const content = Math.min(take, this.remaining - this.padding);
          this.current.chunks.push(Buffer.from(chunk.subarray(at, at + content)));
        }
        this.remaining -= take;
        at += take;
        if (this.remaining === 0 && this.current) {
          this.members.set(this.current.name, Buffer.concat(this.current.chunks));
          this.current = undefined;
        }
        continue;
      }
      const need = 512 - this.header.length;
      const part = chunk.subarray(at, at + need);
      this.header = Buffer.concat([this.header, part]);
      at += part.length;
      if (this.header.length < 512) return;
      const block = this.header;
      this.header = Buffer.alloc(0);
      if (block.every((b) => b === 0)) {
        // The end-of-archive marker: whatever follows is zero padding.
        this.ended = true;
        return;
      }
      const field = (from: number, length: number) =>
        block
          .subarray(from, from + length)
          .toString("latin1")
          .replace(/\0.*$/s, "");
      const size = Number.parseInt(field(124, 12).trim() || "0", 8);
      if (!Number.isFinite(size) || !field(257, 6).startsWith("ustar")) {
        throw new IntegrityError("pg_basebackup's output is not a ustar archive", {
          hint: "the base backup is read as pg_basebackup -Ft -D - writes it",
        });
      }
      const prefix = field(345, 155);
      const name = prefix ? `${prefix}/${field(0, 100)}` : field(0, 100);
      this.padding = (512 - (size % 512)) % 512;
      this.remaining = size + this.padding;
      this.current = this.keep.has(name) && size <= this.maxBytes ? { name, size, chunks: [] } : undefined;
      if (this.remaining === 0 && this.current) {
        this.members.set(name, Buffer.alloc(0));
        this.current = undefined;
      }
    }
  }
}
