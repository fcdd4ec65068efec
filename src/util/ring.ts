/**
 * A fixed-capacity ring of the newest items: the exit controller's sliding
 * windows of feedback records, the cost meter's recent timings. Pushing past
 * capacity evicts the oldest.
 *
 * @module
 */
export class Ring<T> {
  private readonly items: (T | undefined)[];
  private start = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`Ring capacity must be a positive integer, got ${capacity}`);
    this.items = new Array<T | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  /** Appends `item`; returns the item it evicted, if the ring was full. */
  push(item: T): T | undefined {
    if (this.count < this.capacity) {
      this.items[(this.start + this.count++) % this.capacity] = item;
      return undefined;
    }
    const evicted = this.items[this.start];
    this.items[this.start] = item;
    this.start = (this.start + 1) % this.capacity;
    return evicted;
  }

  /** Forgets every item. */
  clear(): void {
    this.items.fill(undefined);
    this.start = 0;
    this.count = 0;
  }

  /** The newest `n` items (all if fewer), oldest first. */
  last(n: number = this.count): T[] {
    const k = Math.min(Math.max(0, n), this.count);
    const out: T[] = [];
    for (let j = this.count - k; j < this.count; j++) out.push(this.items[(this.start + j) % this.capacity] as T);
    return out;
  }
}
