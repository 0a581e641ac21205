interface Slot<T> {
  promise: Promise<T>;
  settled: boolean;
}

/**
 * Runs jobs concurrently and hands results back in submission order.
 *
 * `submit` returns while at most `limit` jobs run (waiting for whichever finishes
 * first, so a slow frame at the head does not idle a core), so `limit` cores keep
 * compressing while the caller gathers the next frame. Finished results wait in
 * order, at most `2 × limit + 1` slots in all, which bounds memory.
 */
export class OrderedWork<T> {
  private readonly slots: Slot<T>[] = [];
  private running = 0;
  private wake: (() => void) | undefined;
  private readonly limit: number;
  private readonly emit: (value: T) => void;

  constructor(limit: number, emit: (value: T) => void) {
    this.limit = Math.max(1, limit);
    this.emit = emit;
  }

  async submit(job: Promise<T>): Promise<void> {
    const slot: Slot<T> = { promise: job, settled: false };
    this.running++;
    const done = () => {
      slot.settled = true;
      this.running--;
      this.wake?.();
    };
    job.then(done, done); // also keeps an early failure from being "unhandled"; it is awaited below
    this.slots.push(slot);
    for (;;) {
      await this.emitSettled();
      if (this.slots.length > 2 * this.limit) {
        this.emit(await (this.slots.shift() as Slot<T>).promise);
        continue;
      }
      if (this.running <= this.limit) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  async drain(): Promise<void> {
    while (this.slots.length > 0) this.emit(await (this.slots.shift() as Slot<T>).promise);
  }

  /** Emits finished results from the head, in order; rethrows a failed job's error. */
  private async emitSettled(): Promise<void> {
    while (this.slots[0]?.settled) this.emit(await (this.slots.shift() as Slot<T>).promise);
  }
}
