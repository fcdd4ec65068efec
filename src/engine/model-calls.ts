/**
 * The runner's calls into the model, each on reused buffers and timed for
 * the controller: a span of blocks (and the ramp or head after it) over a
 * batch of rows at their next position or over one sequence's run of
 * positions, the fused graph, a prompt chunk. Holds the KV cache the calls
 * read and append to.
 *
 * @module
 */
import { blockMacs, KvCache, type Model, type SpanEnd, type SpanRampResult } from '../model/index.js';
import { Buffers } from './buffers.js';
import { CostMeter } from './cost-meter.js';
import type { Sequence } from './sequence.js';

/** One row of a batched call: a sequence at its next position, and that position's input to the block. */
export interface BatchRow {
  seq: Sequence;
  hidden: Float32Array; // [dim]
}

/**
 * What a span said about one row of its call: the ramp's two best columns
 * and confidence (spans that end at a ramp), and the logits the span made
 * for it (the head's, or the ramp's when asked for), else null.
 */
export interface SpanRow {
  top: number;
  second: number;
  confidence: number;
  logits: Float32Array | null;
  /** The lookahead head's logits [rampWidth] for the token after the full model's next one (calls that asked for them), else null. */
  lookahead: Float32Array | null;
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
    const { dim, vocabSize } = model.config;
    this.costs = new CostMeter(model.config.numLayers, { block: blockMacs(model.config), ramp: model.rampMacs, head: vocabSize * dim });
  }

  /** What the KV cache holds for `seq` at `layer`: its first `layerLengths[layer]` positions. */
  cached(seq: Sequence, layer: number): { keys: Float32Array; values: Float32Array } {
    return this.kv.read(layer, seq.slot, seq.layerLengths[layer]!);
  }

  /** Makes room for `longestSequence` known tokens, plus one position for stray writes (see KvCache). */
  fitKv(longestSequence: number, slotLengths: SlotLengths): void {
    let slotsInUse = 0;
    slotLengths.forEach((lengths, slot) => {
      if (lengths) slotsInUse = slot + 1;
    });
    this.kv.fit(Math.min(this.maxContext, longestSequence + 1), slotsInUse);
  }

  /**
   * fitKv within a step (drafts, guesses): grows the cache only. The step's
   * own fit sized it for every sequence, prompts in progress too; a smaller
   * fit here could count towards shrinking it below them.
   */
  growKv(longestSequence: number, slotLengths: SlotLengths): void {
    if (Math.min(this.maxContext, longestSequence + 1) > this.kv.capacity) this.fitKv(longestSequence, slotLengths);
  }

  /**
   * Blocks `from`..`to` and `end` over the contiguous slot range of `rows`,
   * all at their next position, timed; each row's hidden state becomes the
   * span's output (unless it ends the model). Returns what it said per row.
   */
  batchedSpan<R extends BatchRow>(from: number, to: number, end: SpanEnd, rows: R[], slotLengths: SlotLengths): Map<R, SpanRow> {
    const dim = this.model.config.dim;
    // Slots in the range but not in the call write at their length at `from`, the longest of the span's layers (see slotRange).
    const { firstSlot, numRows, input, pastLengths } = this.slotRange(rows, from, slotLengths);
    const hidden = this.buffers.get('span-hidden', numRows * dim);
    const logits = this.buffers.get('span-logits', numRows * this.logitsWidth(end));
    const started = performance.now();
    const ramp = this.model.runSpan(from, to, end, input, { firstSlot, numRows, seqLen: 1, pastLengths }, this.kv, { hidden, logits });
    this.costs.addSpan(from, to, end.kind, performance.now() - started, numRows);
    const said = new Map<R, SpanRow>();
    for (const row of rows) {
      const i = row.seq.slot - firstSlot;
      if (end.kind !== 'head') row.hidden.set(hidden.subarray(i * dim, (i + 1) * dim));
      said.set(row, this.spanRow(end, ramp, logits, i));
    }
    return said;
  }

  /**
   * Blocks `from`..`to` and `end` over new positions of one sequence after
   * its `past` (one causal pass), one per row of `inputs` (each [dim]).
   * Returns the last block's output [positions, dim] (null when the span
   * ends the model; reused by the next call: copy out what you keep) and
   * what the span said per position (its logits reused by the sequence's
   * next call).
   */
  sequenceSpan(
    from: number,
    to: number,
    end: SpanEnd,
    seq: Sequence,
    past: number,
    inputs: Float32Array[],
    guessAhead = false,
  ): { hidden: Float32Array | null; said: SpanRow[] } {
    const dim = this.model.config.dim;
    const numPositions = inputs.length;
    const input = this.buffers.get('sequence-input', numPositions * dim);
    inputs.forEach((row, i) => input.set(row, i * dim));
    const hidden = end.kind === 'head' ? null : this.buffers.get('sequence-hidden', numPositions * dim);
    // Logits per slot: the catch-ups of several rows in one span each hand back logits that the ramp reads after all of them.
    const logits = this.buffers.get(`sequence-logits-${seq.slot}`, numPositions * this.logitsWidth(end));
    const rows = { firstSlot: seq.slot, numRows: 1, seqLen: numPositions, pastLengths: [past] };
    const lookahead = guessAhead ? this.lookaheadLogits(numPositions) : undefined;
    const ramp = this.model.runSpan(from, to, end, input, rows, this.kv, { hidden: hidden ?? undefined, logits, lookahead });
    return { hidden, said: Array.from({ length: numPositions }, (_, i) => this.spanRow(end, ramp, logits, i, lookahead)) };
  }

  /** A buffer for the lookahead head's logits at `count` positions (reused by the next call that guesses). */
  private lookaheadLogits(count: number): Float32Array {
    return this.buffers.get('lookahead', count * this.model.rampWidth);
  }

  /** Columns of the logits a span with `end` returns per row (0: none). */
  private logitsWidth(end: SpanEnd): number {
    if (end.kind === 'head') return this.model.config.vocabSize;
    return end.kind === 'ramp' && end.logits ? this.model.rampWidth : 0;
  }

  /** Row `i` of a span's outputs. */
  private spanRow(end: SpanEnd, ramp: SpanRampResult | null, logits: Float32Array, i: number, lookahead?: Float32Array): SpanRow {
    const width = this.logitsWidth(end);
    const guessWidth = this.model.rampWidth;
    return {
      top: ramp ? ramp.top[2 * i]! : -1,
      second: ramp ? ramp.top[2 * i + 1]! : -1,
      confidence: ramp ? ramp.confidence[i]! : 0,
      logits: width > 0 ? logits.subarray(i * width, (i + 1) * width) : null,
      lookahead: lookahead ? lookahead.subarray(i * guessWidth, (i + 1) * guessWidth) : null,
    };
  }

  /**
   * Every block and the head over the slot range of `rows`; returns logits
   * [slots in range, vocab] (row i at its slot - firstSlot) and, with
   * `guessAhead`, the lookahead head's logits [slots in range, rampWidth] in
   * the same order, else null.
   */
  fusedBatch(rows: BatchRow[], slotLengths: SlotLengths, guessAhead = false): { logits: Float32Array; firstSlot: number; lookahead: Float32Array | null } {
    // layerLengths[0] is the longest: every layer writes a stray row's position there before reading it.
    const { firstSlot, numRows, input, pastLengths } = this.slotRange(rows, 0, slotLengths);
    const logits = this.buffers.get('fused-logits', numRows * this.model.config.vocabSize);
    const lookahead = guessAhead ? this.lookaheadLogits(numRows) : undefined;
    const started = performance.now();
    this.model.runFused(input, { firstSlot, numRows, seqLen: 1, pastLengths }, this.kv, logits, 'last', lookahead);
    this.costs.addFused(performance.now() - started, numRows);
    return { logits, firstSlot, lookahead: lookahead ?? null };
  }

  /**
   * Every block, the head and the lookahead head over the slot range of
   * `rows`, two positions a row: its own, then `seconds`' input for it (a
   * guess of the token after it). Returns logits [slots in range × 2, vocab]
   * and the lookahead head's logits [slots in range × 2, rampWidth] in the
   * same order: slot s − firstSlot, position p at 2(s − firstSlot) + p. Not
   * timed for the controller: its costs price one position a row.
   */
  fusedPairs(rows: BatchRow[], seconds: Float32Array[], slotLengths: SlotLengths): { logits: Float32Array; firstSlot: number; lookahead: Float32Array } {
    const dim = this.model.config.dim;
    const { firstSlot, numRows, input, pastLengths } = this.slotRange(rows, 0, slotLengths, 2);
    rows.forEach((row, i) => input.set(seconds[i]!, (2 * (row.seq.slot - firstSlot) + 1) * dim));
    const logits = this.buffers.get('pairs-logits', numRows * 2 * this.model.config.vocabSize);
    const lookahead = this.lookaheadLogits(2 * numRows);
    this.model.runFused(input, { firstSlot, numRows, seqLen: 2, pastLengths }, this.kv, logits, 'every', lookahead);
    return { logits, firstSlot, lookahead };
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
  private head(hidden: Float32Array, numRows: number): Float32Array {
    const logits = this.buffers.get('logits', numRows * this.model.config.vocabSize);
    this.model.runHead(hidden, numRows, logits);
    return logits;
  }

  /**
   * The contiguous slot range a batched call over `rows` covers, its input
   * ([slots, seqLen, dim]: each row's hidden state at its first position,
   * zeros elsewhere) and each slot's past length at `layer`. Slots in the
   * range that are not part of the call get stray writes at their own next
   * positions for that layer, which their own later call overwrites before
   * anything reads them.
   */
  private slotRange(
    rows: BatchRow[],
    layer: number,
    slotLengths: SlotLengths,
    seqLen = 1,
  ): { firstSlot: number; numRows: number; input: Float32Array; pastLengths: Int32Array } {
    const dim = this.model.config.dim;
    const slots = rows.map((row) => row.seq.slot);
    const firstSlot = Math.min(...slots);
    const numRows = Math.max(...slots) - firstSlot + 1;
    const input = this.buffers.get('input', numRows * seqLen * dim).fill(0);
    const pastLengths = new Int32Array(numRows);
    for (let r = 0; r < numRows; r++) pastLengths[r] = Math.min(slotLengths[firstSlot + r]?.[layer] ?? 0, this.kv.capacity - seqLen);
    for (const row of rows) input.set(row.hidden, (row.seq.slot - firstSlot) * seqLen * dim);
    return { firstSlot, numRows, input, pastLengths };
  }
}
