/**
 * A FIFO of buffers that hands out exact byte counts, copying only when a read
 * spans chunks. Parsers of framed streams use it instead of re-concatenating
 * everything they have seen.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0; // offset into chunks[0]
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** The next `n` bytes, consumed. The caller checks `length >= n` first. */
  read(n: number): Buffer {
    const out = this.peek(n);
    this.skip(n);
    return out;
  }

  /** The next `n` bytes, not consumed. */
  peek(n: number): Buffer {
    if (n > this.length) throw new RangeError(`peek(${n}) with only ${this.length} bytes queued`);
    const first = this.chunks[0];
    if (first !== undefined && first.length - this.head >= n) return first.subarray(this.head, this.head + n);
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    let offset = this.head;
    for (const chunk of this.chunks) {
      const take = Math.min(n - filled, chunk.length - offset);
      chunk.copy(out, filled, offset, offset + take);
      filled += take;
      offset = 0;
      if (filled === n) break;
    }
    return out;
  }

  skip(n: number): void {
    this.length -= n;
    while (n > 0) {
      const first = this.chunks[0] as Buffer;
      const available = first.length - this.head;
      if (available > n) {
        this.head += n;
        return;
      }
      n -= available;
      this.chunks.shift();
      this.head = 0;
    }
  }

  /** Index of `needle` at or after `from`, or -1; scans the queued bytes. */
  indexOf(needle: Buffer, from = 0): number {
    if (this.length === 0) return -1;
    return this.peek(this.length).indexOf(needle, from);
  }
}
