/**
 * What the in-process peers (transformers.js in peer.ts, node-llama-cpp in
 * llama-cpp-peer.ts) share: a FIFO of requests with at most N in flight, and
 * one generation timed into a RequestRecord the way the HTTP targets' are.
 *
 * @module
 */
import { failedRecord, type RequestRecord } from './target.js';
import type { Work } from './workload.js';

/**
 * At most `size` jobs at once; the others wait in arrival order. A job
 * that ends hands its slot straight to the oldest waiting one.
 */
export class RequestSlots {
  private free: number;
  private readonly waiting: (() => void)[] = [];
  /** Every job sent and not yet settled (close() waits for them). */
  private readonly pending = new Set<Promise<unknown>>();

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`RequestSlots: size must be a positive integer, not ${size}`);
    this.free = size;
  }

  /** Runs `job` once a slot is free; its result (or rejection) is the returned promise's. */
  run<T>(job: () => Promise<T>): Promise<T> {
    const result = this.acquire()
      .then(job)
      .finally(() => this.release());
    const settled = result.then(
      () => {},
      () => {},
    );
    this.pending.add(settled);
    void settled.then(() => this.pending.delete(settled));
    return result;
  }

  /** Resolves once every job run so far has settled. */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.all(this.pending);
  }

  private acquire(): Promise<void> {
    // free > 0 only while nobody waits: release() hands a slot to a waiter before freeing it.
    if (this.free > 0) {
      this.free--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}

/** What a peer's generation returns: its text (without the prompt) and why it ended. */
export interface Generated {
  text: string;
  finishReason: 'stop' | 'length';
}

/**
 * Times one generation as the client would see it: `generate` calls
 * `onTokens(n)` as each n tokens come out (their timestamps are the record's
 * chunks, one per token, so TTFT runs from `startMs`, the request's due time,
 * queueing included); a throw becomes the record's error.
 */
export async function timedGeneration(
  work: Work,
  startMs: number,
  generate: (onTokens: (numTokens: number) => void) => Promise<Generated>,
): Promise<RequestRecord> {
  const record: RequestRecord = { ...failedRecord(work, startMs, ''), error: null, tokenSource: 'chunks' };
  const onTokens = (numTokens: number) => {
    const now = performance.now();
    for (let i = 0; i < numTokens; i++) {
      record.chunkMs.push(now);
      record.chunkExit.push(null);
    }
  };
  try {
    const { text, finishReason } = await generate(onTokens);
    record.text = text;
    record.finishReason = finishReason;
  } catch (error) {
    return { ...record, endMs: performance.now(), error: (error as Error).message };
  }
  record.endMs = performance.now();
  record.outputTokens = record.chunkMs.length;
  return record;
}
