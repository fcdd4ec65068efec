/**
 * The KV cache: per layer, one preallocated buffer of fixed slots
 * `[numSlots, kvHeads, context, headDim]`. A sequence owns one slot for its
 * life; GroupQueryAttention writes new keys and values into it in place.
 *
 * A batched call covers a contiguous run of slots, because onnxruntime takes
 * each input as one dense tensor; rows of that run that are not part of the
 * call get harmless writes at their own next position (see `Model.runBlock`).
 *
 * @module
 */
import ort from 'onnxruntime-node';
import type { ModelConfig } from './checkpoint.js';

export interface KvView {
  key: ort.Tensor;
  value: ort.Tensor;
}

export class KvCache {
  private readonly keys: Float32Array[];
  private readonly values: Float32Array[];
  readonly slotFloats: number;

  constructor(
    config: ModelConfig,
    readonly numSlots: number,
    /** Positions per slot. */
    readonly context: number,
  ) {
    this.slotFloats = config.numKvHeads * context * config.headDim;
    this.dims = [config.numKvHeads, context, config.headDim];
    const total = numSlots * this.slotFloats;
    this.keys = Array.from({ length: config.numLayers }, () => new Float32Array(total));
    this.values = Array.from({ length: config.numLayers }, () => new Float32Array(total));
  }

  private readonly dims: number[];
  /** Tensor views are reused: building them every call is measurable garbage at small model sizes. */
  private readonly views = new Map<number, KvView>();

  /** Tensors over slots [firstSlot, firstSlot + numRows) of `layer`: fed as past, given as present. */
  view(layer: number, firstSlot: number, numRows: number): KvView {
    const key = (layer * this.numSlots + firstSlot) * (this.numSlots + 1) + numRows;
    let view = this.views.get(key);
    if (!view) {
      view = this.makeView(layer, firstSlot, numRows);
      this.views.set(key, view);
    }
    return view;
  }

  private makeView(layer: number, firstSlot: number, numRows: number): KvView {
    const start = firstSlot * this.slotFloats;
    const end = start + numRows * this.slotFloats;
    const dims = [numRows, ...this.dims];
    return {
      key: new ort.Tensor('float32', this.keys[layer]!.subarray(start, end), dims),
      value: new ort.Tensor('float32', this.values[layer]!.subarray(start, end), dims),
    };
  }

  /** Bytes held, for logs and metrics. */
  get byteLength(): number {
    return this.keys.length * 2 * this.numSlots * this.slotFloats * 4;
  }
}
