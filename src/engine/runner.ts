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
  constructor(
    readonly model: Model,
    readonly kv: KvCache,
    private readonly scheduler: Scheduler,
  ) {}

  async execute(plan: StepPlan): Promise<StepResult> {
    const sampled = new Map<string, number>();
    // The decode batch goes first: its stray writes into rows that are mid-prompt
    // land at positions the prompt chunks below then overwrite.
    if (plan.decode.length > 0) await this.decode(plan.decode, sampled);
    for (const { seq, numTokens } of plan.prefill) await this.prefill(seq, numTokens, sampled);
    return { sampled };
  }

  /** Runs all blocks over `hidden` for the given rows, returning the last block's output. */
  private async forward(hidden: Float32Array, firstSlot: number, numRows: number, seqLen: number, pastLengths: Int32Array): Promise<Float32Array> {
    const rows = { firstSlot, numRows, seqLen, pastLengths };
    for (let layer = 0; layer < this.model.config.numLayers; layer++) {
      hidden = await this.model.runBlock(layer, hidden, rows, this.kv);
    }
    return hidden;
  }

  private async decode(batch: Sequence[], sampled: Map<string, number>): Promise<void> {
    const dim = this.model.config.dim;
    const slots = batch.map((s) => s.slot);
    const firstSlot = Math.min(...slots);
    const numRows = Math.max(...slots) - firstSlot + 1;
    const hidden = new Float32Array(numRows * dim);
    const pastLengths = new Int32Array(numRows);
    for (let r = 0; r < numRows; r++) pastLengths[r] = this.scheduler.ownerOf(firstSlot + r)?.numComputed ?? 0;
    for (const seq of batch) {
      const row = seq.slot - firstSlot;
      hidden.set(this.model.embed([seq.tokens[seq.numComputed]!], [seq.numComputed]), row * dim);
    }
    const out = await this.forward(hidden, firstSlot, numRows, 1, pastLengths);
    // Only the rows that decode need the head.
    const gathered = new Float32Array(batch.length * dim);
    batch.forEach((seq, i) => gathered.set(out.subarray((seq.slot - firstSlot) * dim, (seq.slot - firstSlot + 1) * dim), i * dim));
    const logits = await this.model.runHead(gathered, batch.length);
    const vocab = this.model.config.vocabSize;
    batch.forEach((seq, i) => sampled.set(seq.id, sample(logits.subarray(i * vocab, (i + 1) * vocab), seq.request.sampling, seq.rng)));
  }

  private async prefill(seq: Sequence, numTokens: number, sampled: Map<string, number>): Promise<void> {
    const dim = this.model.config.dim;
    const start = seq.numComputed;
    const positions = Array.from({ length: numTokens }, (_, i) => start + i);
    const hidden = this.model.embed(seq.tokens.slice(start, start + numTokens), positions);
    const out = await this.forward(hidden, seq.slot, 1, numTokens, Int32Array.of(start));
    if (start + numTokens < seq.tokens.length) return;
    const logits = await this.model.runHead(out.subarray((numTokens - 1) * dim), 1);
    sampled.set(seq.id, sample(logits, seq.request.sampling, seq.rng));
  }
}
