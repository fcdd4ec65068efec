/**
 * Weight transforms shared by the compiler and the exporter: transposes,
 * stacking, rotary layouts and tables.
 *
 * @module
 */
import type { ModelConfig, Tensor } from './checkpoint.js';

/** [rows, cols] -> [cols, rows]: PyTorch's [out, in] into MatMul's [in, out]. */
export function transpose(t: Tensor): Tensor {
  const [rows, cols] = t.dims as [number, number];
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = t.data[r * cols + c]!;
  }
  return { dims: [cols, rows], data: out };
}

/**
 * Moves row (head, 2i + p) to (head, p * headDim/2 + i): interleaved rotary
 * pairs become rotate-half pairs (Hugging Face's `permute` in
 * convert_llama_weights_to_hf.py). Works on [rows, cols] weights and [rows] biases.
 */
export function interleavedToHalf(t: Tensor, headDim: number): Tensor {
  const half = headDim / 2;
  return permuteHeadRows(t, headDim, (within) => (within % 2) * half + Math.floor(within / 2));
}

/** The inverse of interleavedToHalf: rotate-half rows (i, i + headDim/2) back to adjacent pairs (2i, 2i + 1). */
export function halfToInterleaved(t: Tensor, headDim: number): Tensor {
  const half = headDim / 2;
  return permuteHeadRows(t, headDim, (within) => 2 * (within % half) + Math.floor(within / half));
}

/** Moves each head's row `within` to row `to(within)` of the same head; [rows, cols] weights or [rows] biases. */
function permuteHeadRows(t: Tensor, headDim: number, to: (within: number) => number): Tensor {
  const rows = t.dims[0]!;
  const cols = t.dims.length === 1 ? 1 : t.dims[1]!;
  const out = new Float32Array(t.data.length);
  for (let r = 0; r < rows; r++) {
    const head = Math.floor(r / headDim);
    out.set(t.data.subarray(r * cols, (r + 1) * cols), (head * headDim + to(r % headDim)) * cols);
  }
  return { dims: t.dims, data: out };
}

/** Stacks [out_k, in] matrices (or [out_k] vectors) along out. */
export function concatRows(parts: Tensor[]): Tensor {
  const first = parts[0]!;
  const data = new Float32Array(parts.reduce((n, t) => n + t.data.length, 0));
  let offset = 0;
  for (const t of parts) {
    data.set(t.data, offset);
    offset += t.data.length;
  }
  if (first.dims.length === 1) return { dims: [data.length], data };
  const cols = first.dims[1]!;
  return { dims: [data.length / cols, cols], data };
}

/** Rows [from, from + count) of a [rows, cols] matrix (or [rows] vector): the inverse of concatRows. */
export function rowRange(t: Tensor, from: number, count: number): Tensor {
  const cols = t.dims.length === 1 ? 1 : t.dims[1]!;
  const data = t.data.slice(from * cols, (from + count) * cols);
  return { dims: t.dims.length === 1 ? [count] : [count, cols], data };
}

/** rotary inverse frequencies [headDim/2], Llama 3.1 scaling included . */
function invFrequencies(c: ModelConfig): number[] {
  const rope = c.rope!;
  const half = c.headDim / 2;
  const invFreq = Array.from({ length: half }, (_, i) => Math.pow(rope.theta, (-2 * i) / c.headDim));
  if (!rope.scaling) return invFreq;
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositions } = rope.scaling;
  const lowWavelen = originalMaxPositions / lowFreqFactor;
  const highWavelen = originalMaxPositions / highFreqFactor;
  return invFreq.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen > lowWavelen) return f / factor;
    if (wavelen < highWavelen) return f;
    const smooth = (originalMaxPositions / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
}

/** cos and sin tables [maxSeqLen, headDim/2], computed in float64 like the served model's. */
export function ropeTables(c: ModelConfig): { cos: Tensor; sin: Tensor } {
  const invFreq = invFrequencies(c);
  const half = invFreq.length;
  const cos = new Float32Array(c.maxSeqLen * half);
  const sin = new Float32Array(c.maxSeqLen * half);
  for (let p = 0; p < c.maxSeqLen; p++) {
    invFreq.forEach((f, i) => {
      cos[p * half + i] = Math.cos(p * f);
      sin[p * half + i] = Math.sin(p * f);
    });
  }
  return { cos: { dims: [c.maxSeqLen, half], data: cos }, sin: { dims: [c.maxSeqLen, half], data: sin } };
}
