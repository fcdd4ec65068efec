/**
 * Executes a StepPlan on the model: the decode batch through every block in
 * one call per block, then each prompt chunk, then the head and the sampler
 * for every sequence that reached its last position.
 *
 * @module
 */
import type { KvCache, Model } from '../model/index.js';
import { sample } from './sampler.js';
import type { Scheduler, StepPlan, StepResult } from './scheduler.js';
import type { Sequence } from './sequence.js';

export class ModelRunner {
  /** Reused activation buffers by purpose and size: decoding asks for the same few every step. */
  private readonly buffers = new Map<string, Float32Array>();

  constructor(
    readonly model: Model,
    readonly kv: KvCache,
    private readonly scheduler: Scheduler,
  ) {}

  execute(plan: StepPlan): StepResult {
    const sampled = new Map<string, number>();
    // The decode batch goes first: its stray writes into rows that are mid-prompt
    // land at positions the prompt chunks below then overwrite.
    if (plan.decode.length > 0) this.decode(plan.decode, sampled);
    for (const { seq, numTokens } of plan.prefill) this.prefill(seq, numTokens, sampled);
    return { sampled };
  }

  private buffer(purpose: string, length: number): Float32Array {
    const key = `${purpose}:${length}`;
    let buffer = this.buffers.get(key);
    if (!buffer) {
      if (this.buffers.size >= 256) this.buffers.clear(); // prompt chunks come in many lengths
      buffer = new Float32Array(length);
      this.buffers.set(key, buffer);
    }
    return buffer;
  }

  /** Runs all blocks over `hidden` [numRows, seqLen, dim]; returns the last block's output. */
  private forward(hidden: Float32Array, firstSlot: number, numRows: number, seqLen: number, pastLengths: Int32Array): Float32Array {
    const rows = { firstSlot, numRows, seqLen, pastLengths };
    let input = hidden;
    for (let layer = 0; layer < this.model.config.numLayers; layer++) {
      const output = this.buffer(layer % 2 ? 'odd' : 'even', hidden.length);
      this.model.runBlock(layer, input, output, rows, this.kv);
      input = output;
    }
    return input;
  }

  /** Final head over rows of `hidden`, then one sampled token per sequence. */
  private sampleRows(hidden: Float32Array, batch: Sequence[], sampled: Map<string, number>): void {
    const vocab = this.model.config.vocabSize;
    const logits = this.buffer('logits', batch.length * vocab);
    this.model.runHead(hidden, batch.length, logits);
    batch.forEach((seq, i) => sampled.set(seq.id, sample(logits.subarray(i * vocab, (i + 1) * vocab), seq.request.sampling, seq.rng)));
  }

  private decode(batch: Sequence[], sampled: Map<string, number>): void {
    const dim = this.model.config.dim;
    const slots = batch.map((s) => s.slot);
    const firstSlot = Math.min(...slots);
    const numRows = Math.max(...slots) - firstSlot + 1;
    const hidden = this.buffer('input', numRows * dim).fill(0);
    const pastLengths = new Int32Array(numRows);
    for (let r = 0; r < numRows; r++) pastLengths[r] = this.scheduler.ownerOf(firstSlot + r)?.numComputed ?? 0;
    for (const seq of batch) hidden.set(this.model.embed([seq.tokens[seq.numComputed]!], [seq.numComputed]), (seq.slot - firstSlot) * dim);
    const out = this.forward(hidden, firstSlot, numRows, 1, pastLengths);
    // Only the rows that decode need the head.
    const gathered = this.buffer('gathered', batch.length * dim);
    batch.forEach((seq, i) => gathered.set(out.subarray((seq.slot - firstSlot) * dim, (seq.slot - firstSlot + 1) * dim), i * dim));
    this.sampleRows(gathered, batch, sampled);
  }

  private prefill(seq: Sequence, numTokens: number, sampled: Map<string, number>): void {
    const dim = this.model.config.dim;
    const start = seq.numComputed;
    const positions = Array.from({ length: numTokens }, (_, i) => start + i);
    const hidden = this.model.embed(seq.tokens.slice(start, start + numTokens), positions);
    const out = this.forward(hidden, seq.slot, 1, numTokens, Int32Array.of(start));
    if (start + numTokens < seq.tokens.length) return;
    this.sampleRows(out.slice((numTokens - 1) * dim), [seq], sampled);
  }
}
