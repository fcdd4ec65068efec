/**
 * Continuous batching: which sequences run in the next step, and how many
 * positions each. Requests join at any step boundary while a slot is free
 * and leave the moment they finish.
 *
 * Decoding sequences (one pending position) are batched in one call per
 * block; sequences with several pending positions (a prompt) run as chunks
 * after them, within a per-step token budget so a long prompt cannot stall
 * the streams already running.
 *
 * @module
 */
import type { Sequence } from './sequence.js';

export interface SchedulerOptions {
  /** Sequences decoded together (KV slots). */
  maxRunning: number;
  /** Positions computed per step across all sequences (at least one decode batch). */
  maxStepTokens: number;
}

/** What one step runs, like vLLM's SchedulerOutput. */
export interface StepPlan {
  /** One new position each, in one batched call per block. */
  decode: Sequence[];
  /** Several positions of one sequence each (prompt chunks). */
  prefill: { seq: Sequence; numTokens: number }[];
  /**
   * Per KV slot, its owner's positions computed per layer (a live view: the
   * runner advances it), or null for a free slot. A batched call covers a
   * range of slots and needs every one's past length.
   */
  slotLengths: (Int32Array | null)[];
  /** Known tokens and drafts (see Sequence.numFed) of the longest running sequence: the KV cache must hold them. */
  longestSequence: number;
}

export class Scheduler {
  readonly waiting: Sequence[] = [];
  readonly running: Sequence[] = [];
  private readonly slotOwners: (Sequence | null)[];

  constructor(readonly options: SchedulerOptions) {
    this.slotOwners = new Array<Sequence | null>(options.maxRunning).fill(null);
  }

  add(seq: Sequence): void {
    this.waiting.push(seq);
  }

  get hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  /** Frees a sequence's slot (finished or aborted). */
  release(seq: Sequence): void {
    const waitingIndex = this.waiting.indexOf(seq);
    if (waitingIndex >= 0) this.waiting.splice(waitingIndex, 1);
    const runningIndex = this.running.indexOf(seq);
    if (runningIndex >= 0) this.running.splice(runningIndex, 1);
    if (seq.slot >= 0) this.slotOwners[seq.slot] = null;
    seq.slot = -1;
  }

  schedule(): StepPlan {
    // Lowest free slot first keeps the batched rows dense (see KvCache).
    for (let slot = 0; slot < this.slotOwners.length && this.waiting.length > 0; slot++) {
      if (this.slotOwners[slot]) continue;
      const seq = this.waiting.shift()!;
      seq.slot = slot;
      this.slotOwners[slot] = seq;
      this.running.push(seq);
    }
    const decode = this.running.filter((s) => s.numPending === 1);
    let budget = this.options.maxStepTokens - decode.length;
    const prefill: StepPlan['prefill'] = [];
    for (const seq of this.running) {
      if (seq.numPending <= 1) continue;
      // Always make progress on a prompt when nothing else runs.
      if (budget <= 0 && (decode.length > 0 || prefill.length > 0)) break;
      const numTokens = Math.min(seq.numPending, Math.max(budget, 1));
      prefill.push({ seq, numTokens });
      budget -= numTokens;
    }
    const slotLengths = this.slotOwners.map((seq) => seq?.layerLengths ?? null);
    const longestSequence = Math.max(0, ...this.running.map((seq) => seq.numFed));
    return { decode, prefill, slotLengths, longestSequence };
  }
}
