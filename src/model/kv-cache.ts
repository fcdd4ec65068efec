/**
 * The KV cache: per layer, one buffer of fixed slots
 * `[numSlots, kvHeads, capacity, headDim]`. A sequence owns one slot for its
 * life. The graphs read it and return the new positions' keys and values,
 * which `append` writes in after each call.
 *
 * A batched call covers a contiguous run of slots, because onnxruntime takes
 * each input as one dense tensor; rows of that run that are not part of the
 * call get harmless writes at their own next position (see `Model.runBlock`).
 *
 * The buffers are allocated once, for `maxContext` positions per slot, but
 * laid out for the current capacity, which follows the longest sequence held
 * (in steps of 32 positions): attention scores every row against the whole
 * capacity (masking what a row has not filled), so a short batch should not
 * pay for the longest context. A change of capacity re-lays the rows out in
 * place: no allocation, so no garbage for the collector; and only the slots
 * in use move (the scheduler fills the lowest slots first), so at one stream
 * a change costs one slot's copy however many slots there are.
 *
 * @module
 */
import ort from 'onnxruntime-node';
import type { ModelConfig } from './checkpoint.js';

/** Which slots a block call covers (row r is slot `firstSlot + r`) and where each row's new positions go. */
export interface BlockRows {
  firstSlot: number;
  numRows: number;
  /** New positions per row (every row of one call has the same count). */
  seqLen: number;
  /** Per row, how many positions this layer has cached already. */
  pastLengths: ArrayLike<number>;
}

export interface KvView {
  key: ort.Tensor;
  value: ort.Tensor;
}

/** Capacity grows in steps of this many positions: each growth copies the cache once, about what one call's outputs cost. */
const CAPACITY_STEP = 32;

/**
 * Consecutive fits at half the capacity or less before it shrinks: between
 * one request and the next the need drops for a step or two (the finished
 * sequence has left, the next one's prompt is not in yet), and shrinking
 * then would only grow back. Longer than that dip, shrinking pays: every
 * step at the old capacity scores the empty positions too (16 streams of
 * stories260K, in waves of 128-token requests, decoded 15–26% faster
 * in-process with 16 here than with 256).
 */
const SHRINK_AFTER = 16;

export class KvCache {
  private readonly keys: Float32Array[];
  private readonly values: Float32Array[];
  private positions: number;
  private fitsAtHalf = 0;
  /** Tensor views are reused: building them every call is measurable garbage at small model sizes. */
  private readonly views = new Map<number, KvView>();

  constructor(
    private readonly config: ModelConfig,
    readonly numSlots: number,
    /** The most positions a slot can ever hold. */
    readonly maxContext: number,
    /** Positions held from the start; `fit` changes it. */
    capacity = maxContext,
  ) {
    this.positions = Math.min(capacity, maxContext);
    this.keys = this.allocate();
    this.values = this.allocate();
  }

  /** Positions each slot holds now. */
  get capacity(): number {
    return this.positions;
  }

  /**
   * Makes every slot hold at least `length` positions, keeping what slots
   * 0..slotsInUse-1 store (the others' contents are dropped: a sequence that
   * takes one of them writes its positions before it reads them). Grows to
   * the next multiple of 32 at once; shrinks only once the need has stayed
   * at half the capacity or less for SHRINK_AFTER fits.
   */
  fit(length: number, slotsInUse = this.numSlots): void {
    if (length > this.maxContext) throw new RangeError(`${length} positions exceed the KV cache's ${this.maxContext}`);
    const target = Math.min(this.maxContext, Math.max(1, Math.ceil(length / CAPACITY_STEP)) * CAPACITY_STEP);
    this.fitsAtHalf = target * 2 <= this.positions ? this.fitsAtHalf + 1 : 0;
    if (target > this.positions || this.fitsAtHalf >= SHRINK_AFTER) this.relayout(target, Math.min(slotsInUse, this.numSlots));
  }

  /** Tensors over slots [firstSlot, firstSlot + numRows) of `layer`, fed as the past. */
  view(layer: number, firstSlot: number, numRows: number): KvView {
    const key = (layer * this.numSlots + firstSlot) * (this.numSlots + 1) + numRows;
    let view = this.views.get(key);
    if (!view) {
      view = this.makeView(layer, firstSlot, numRows);
      this.views.set(key, view);
    }
    return view;
  }

  /** Writes each row's new keys and values ([numRows, kvHeads, seqLen, headDim]) of `layer` after its past. */
  append(layer: number, rows: BlockRows, newKeys: Float32Array, newValues: Float32Array): void {
    const { numKvHeads, headDim } = this.config;
    const keys = this.keys[layer]!;
    const values = this.values[layer]!;
    const run = rows.seqLen * headDim; // one head's new positions lie together, as in the cache
    for (let r = 0; r < rows.numRows; r++) {
      const position = rows.pastLengths[r]!;
      for (let h = 0; h < numKvHeads; h++) {
        const from = (r * numKvHeads + h) * run;
        const to = (((rows.firstSlot + r) * numKvHeads + h) * this.positions + position) * headDim;
        keys.set(newKeys.subarray(from, from + run), to);
        values.set(newValues.subarray(from, from + run), to);
      }
    }
  }

  /** A copy of the first `length` positions of `slot` at `layer`: keys and values, each [kvHeads, length, headDim]. */
  read(layer: number, slot: number, length: number): { keys: Float32Array; values: Float32Array } {
    const { numKvHeads, headDim } = this.config;
    const keys = new Float32Array(numKvHeads * length * headDim);
    const values = new Float32Array(keys.length);
    for (let h = 0; h < numKvHeads; h++) {
      const from = (slot * numKvHeads + h) * this.positions * headDim;
      keys.set(this.keys[layer]!.subarray(from, from + length * headDim), h * length * headDim);
      values.set(this.values[layer]!.subarray(from, from + length * headDim), h * length * headDim);
    }
    return { keys, values };
  }

  /** Bytes a cache of `numSlots` × `maxContext` positions allocates (keys and values of every layer). */
  static byteLengthFor(config: ModelConfig, numSlots: number, maxContext: number): number {
    return config.numLayers * 2 * KvCache.layerFloats(config, numSlots, maxContext) * Float32Array.BYTES_PER_ELEMENT;
  }

  /** Floats in one layer's keys (or values) for `numSlots` × `maxContext` positions. */
  private static layerFloats(config: ModelConfig, numSlots: number, maxContext: number): number {
    return numSlots * config.numKvHeads * maxContext * config.headDim;
  }

  private get slotFloats(): number {
    return this.config.numKvHeads * this.positions * this.config.headDim;
  }

  private allocate(): Float32Array[] {
    const floats = KvCache.layerFloats(this.config, this.numSlots, this.maxContext);
    return Array.from({ length: this.config.numLayers }, () => new Float32Array(floats));
  }

  /**
   * Changes the row stride (a row is one slot's head: `positions` × headDim
   * floats) in place, keeping the first min(old, new) positions of each row
   * of the first `slots` slots. Growing moves rows from the last one down,
   * shrinking from the first one up, so that no row is overwritten before it
   * has moved.
   */
  private relayout(positions: number, slots: number): void {
    const headDim = this.config.headDim;
    const rows = slots * this.config.numKvHeads;
    const oldStride = this.positions * headDim;
    const newStride = positions * headDim;
    const kept = Math.min(oldStride, newStride);
    const move = (buffer: Float32Array, row: number) => buffer.copyWithin(row * newStride, row * oldStride, row * oldStride + kept);
    for (const buffer of [...this.keys, ...this.values]) {
      if (newStride > oldStride) for (let row = rows - 1; row > 0; row--) move(buffer, row);
      else for (let row = 1; row < rows; row++) move(buffer, row);
    }
    this.positions = positions;
    this.fitsAtHalf = 0;
    this.views.clear();
  }

  private makeView(layer: number, firstSlot: number, numRows: number): KvView {
    const start = firstSlot * this.slotFloats;
    const end = start + numRows * this.slotFloats;
    const dims = [numRows, this.config.numKvHeads, this.positions, this.config.headDim];
    return {
      key: new ort.Tensor('float32', this.keys[layer]!.subarray(start, end), dims),
      value: new ort.Tensor('float32', this.values[layer]!.subarray(start, end), dims),
    };
  }
}
