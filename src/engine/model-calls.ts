/**
 * The runner's calls into the model, each on reused buffers and timed for
 * the controller: a block over a batch of rows at their next position, a
 * block over one sequence's run of positions, the head, a ramp, the fused
 * graph. Holds the KV cache the calls read and append to.
 *
 * Every ramp call goes through `ramp`, so that how a ramp is run and what
 * its columns mean is decided in one place.
 *
 * @module
 */
import { KvCache, type Model } from '../model/index.js';
import { Buffers } from './buffers.js';
import { CostMeter } from './cost-meter.js';
import type { Sequence } from './sequence.js';

/** One row of a batched call: a sequence at its next position, and that position's input to the block. */
export interface BatchRow {
  seq: Sequence;
  hidden: Float32Array; // [dim]
}

/** Per slot, its owner's positions per layer (live: the runner advances them), or null for a free slot. */
export type SlotLengths = readonly (Int32Array | null)[];

export class ModelCalls {
  private readonly buffers = new Buffers();
  private readonly kv: KvCache;
  readonly costs: CostMeter;

  constructor(
    private readonly model: Model,
    numSlots: number,
    private readonly maxContext: number,
  ) {
    this.kv = new KvCache(model.config, numSlots, maxContext, 0);
    this.costs = new CostMeter(model.config.numLayers);
  }

  /** Makes room for `longestSequence` known tokens, plus one position for stray writes (see KvCache). */
  fitKv(longestSequence: number, slotLengths: SlotLengths): void {
    let slotsInUse = 0;
    slotLengths.forEach((lengths, slot) => {
      if (lengths) slotsInUse = slot + 1;
    });
    this.kv.fit(Math.min(this.maxContext, longestSequence + 1), slotsInUse);
  }

  /** `layer` over the contiguous slot range of `rows`, all at their next position; each row's hidden state becomes the block's output. */
  batchedBlock(layer: number, rows: BatchRow[], slotLengths: SlotLengths): void {
    const dim = this.model.config.dim;
    const { firstSlot, numRows, input, pastLengths } = this.slotRange(rows, layer, slotLengths);
    const output = this.buffers.get('output', numRows * dim);
    const started = performance.now();
    this.model.runBlock(layer, input, output, { firstSlot, numRows, seqLen: 1, pastLengths }, this.kv);
    this.costs.addBlock(layer, performance.now() - started);
    for (const row of rows) row.hidden.set(output.subarray((row.seq.slot - firstSlot) * dim, (row.seq.slot - firstSlot + 1) * dim));
  }

  /** Every block and the head over the slot range of `rows`; returns logits [slots in range, vocab] (row i at its slot - firstSlot). */
  fusedBatch(rows: BatchRow[], slotLengths: SlotLengths): { logits: Float32Array; firstSlot: number } {
    // layerLengths[0] is the longest: every layer writes a stray row's position there before reading it.
    const { firstSlot, numRows, input, pastLengths } = this.slotRange(rows, 0, slotLengths);
    const logits = this.buffers.get('fused-logits', numRows * this.model.config.vocabSize);
    const started = performance.now();
    this.model.runFused(input, { firstSlot, numRows, seqLen: 1, pastLengths }, this.kv, logits);
    this.costs.addFused(performance.now() - started);
    return { logits, firstSlot };
  }

  /** `layer` over `numPositions` new positions of one sequence after its `past` (one causal pass); returns [numPositions, dim]. */
  sequenceBlock(layer: number, seq: Sequence, past: number, input: Float32Array, numPositions: number, output = new Float32Array(input.length)): Float32Array {
    this.model.runBlock(layer, input, output, { firstSlot: seq.slot, numRows: 1, seqLen: numPositions, pastLengths: [past] }, this.kv);
    return output;
  }

  /**
   * Every block over a prompt chunk of one sequence; with `lastLogits`, the
   * head's logits [vocab] at its last position (the fused graph computes
   * them anyway), else null.
   */
  sequenceChunk(seq: Sequence, past: number, input: Float32Array, numPositions: number, lastLogits: boolean): Float32Array | null {
    const { dim, numLayers, vocabSize } = this.model.config;
    const rows = { firstSlot: seq.slot, numRows: 1, seqLen: numPositions, pastLengths: Int32Array.of(past) };
    if (this.model.hasFused) {
      const logits = this.buffers.get('fused-logits', vocabSize);
      this.model.runFused(input, rows, this.kv, logits);
      return lastLogits ? logits : null;
    }
    let hidden = input;
    for (let layer = 0; layer < numLayers; layer++) {
      const output = this.buffers.get(layer % 2 ? 'odd' : 'even', hidden.length);
      this.model.runBlock(layer, hidden, output, rows, this.kv);
      hidden = output;
    }
    return lastLogits ? this.head(hidden.slice((numPositions - 1) * dim), 1).subarray(0, vocabSize) : null;
  }

  /** Final-head logits [rows, vocab] over `hidden` rows. */
  head(hidden: Float32Array, numRows: number): Float32Array {
    const logits = this.buffers.get('logits', numRows * this.model.config.vocabSize);
    this.model.runHead(hidden, numRows, logits);
    return logits;
  }

  /** Final-head logits over the rows' hidden states, timed. */
  timedHead(rows: BatchRow[]): Float32Array {
    const dim = this.model.config.dim;
    const gathered = this.buffers.get('gathered', rows.length * dim);
    rows.forEach((row, i) => gathered.set(row.hidden, i * dim));
    const started = performance.now();
    const logits = this.head(gathered, rows.length);
    this.costs.addHead(performance.now() - started);
    return logits;
  }

  /**
   * The ramp after `layer` over `hidden` rows: logits [rows, width], timed.
   * Column c scores token `model.rampToken(c)`; a trained ramp's last column
   * is the mass of the tokens it does not score.
   */
  ramp(layer: number, hidden: Float32Array, numRows: number): { logits: Float32Array; width: number } {
    const width = this.model.rampWidth;
    const logits = this.buffers.get('ramp', numRows * width);
    const started = performance.now();
    this.model.runRamp(layer, hidden, numRows, logits);
    this.costs.addRamp(performance.now() - started);
    return { logits, width };
  }

  /** The ramp after `layer` over the rows' hidden states. */
  rampRows(layer: number, rows: BatchRow[]): { logits: Float32Array; width: number } {
    const dim = this.model.config.dim;
    const gathered = this.buffers.get('gathered', rows.length * dim);
    rows.forEach((row, i) => gathered.set(row.hidden, i * dim));
    return this.ramp(layer, gathered, rows.length);
  }

  /**
   * The contiguous slot range a batched call over `rows` covers, its input
   * (each row's hidden state, zeros elsewhere) and each slot's past length at
   * `layer`. Slots in the range that are not part of the call get a stray write
   * at their own next position for that layer, which their own later call
   * overwrites before anything reads it.
   */
  private slotRange(rows: BatchRow[], layer: number, slotLengths: SlotLengths): { firstSlot: number; numRows: number; input: Float32Array; pastLengths: Int32Array } {
    const dim = this.model.config.dim;
    const slots = rows.map((row) => row.seq.slot);
    const firstSlot = Math.min(...slots);
    const numRows = Math.max(...slots) - firstSlot + 1;
    const input = this.buffers.get('input', numRows * dim).fill(0);
    const pastLengths = new Int32Array(numRows);
    for (let r = 0; r < numRows; r++) pastLengths[r] = Math.min(slotLengths[firstSlot + r]?.[layer] ?? 0, this.kv.capacity - 1);
    for (const row of rows) input.set(row.hidden, (row.seq.slot - firstSlot) * dim);
    return { firstSlot, numRows, input, pastLengths };
  }
}
