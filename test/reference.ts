/**
 * A plain reference forward pass in float64, straight from the checkpoint's
 * canonical tensors (no graphs, no cache): the oracle the compiled model is
 * checked against. Written for reading, not speed, like llama2.c's run.c.
 */
import type { Checkpoint, Tensor } from '../src/model/index.js';

function t(ckpt: Checkpoint, name: string): Tensor {
  const tensor = ckpt.tensors.get(name);
  if (!tensor) throw new Error(`reference: missing ${name}`);
  return tensor;
}

/** out[r] = sum_c w[r, c] * x[c] (+ bias[r]); w is [rows, cols]. */
function matvec(w: Tensor, x: Float64Array, bias?: Tensor): Float64Array {
  const [rows, cols] = w.dims as [number, number];
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let sum = bias ? bias.data[r]! : 0;
    for (let c = 0; c < cols; c++) sum += w.data[r * cols + c]! * x[c]!;
    out[r] = sum;
  }
  return out;
}

function rmsnorm(x: Float64Array, weight: Tensor, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const scale = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * scale * weight.data[i]!);
}

function layernorm(x: Float64Array, weight: Tensor, bias: Tensor, eps: number): Float64Array {
  const mean = x.reduce((a, b) => a + b, 0) / x.length;
  const variance = x.reduce((a, b) => a + (b - mean) ** 2, 0) / x.length;
  const scale = 1 / Math.sqrt(variance + eps);
  return x.map((v, i) => (v - mean) * scale * weight.data[i]! + bias.data[i]!);
}

/** Rotates each head of `x` in place for position `pos`. */
function rope(x: Float64Array, numHeads: number, headDim: number, pos: number, theta: number, interleaved: boolean): void {
  const half = headDim / 2;
  for (let h = 0; h < numHeads; h++) {
    for (let i = 0; i < half; i++) {
      const angle = pos * Math.pow(theta, (-2 * i) / headDim);
      const [a, b] = interleaved ? [h * headDim + 2 * i, h * headDim + 2 * i + 1] : [h * headDim + i, h * headDim + i + half];
      const x0 = x[a]!;
      const x1 = x[b]!;
      x[a] = x0 * Math.cos(angle) - x1 * Math.sin(angle);
      x[b] = x0 * Math.sin(angle) + x1 * Math.cos(angle);
    }
  }
}

const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

export interface ReferenceOutput {
  /** blockOutputs[layer][position] = hidden state after that block. */
  blockOutputs: Float64Array[][];
  /** logits[position] */
  logits: Float64Array[];
}

/** Runs every position of `tokens` through the model. */
export function referenceForward(ckpt: Checkpoint, tokens: number[]): ReferenceOutput {
  const c = ckpt.config;
  const gpt2 = c.architecture === 'gpt2';
  const emb = t(ckpt, 'tok_embeddings');
  let xs = tokens.map((token, pos) => {
    const x = Float64Array.from(emb.data.subarray(token * c.dim, (token + 1) * c.dim));
    if (gpt2) {
      const pe = t(ckpt, 'pos_embeddings');
      for (let d = 0; d < c.dim; d++) x[d]! += pe.data[pos * c.dim + d]!;
    }
    return x;
  });
  const blockOutputs: Float64Array[][] = [];
  const norm = (x: Float64Array, name: string) =>
    gpt2 ? layernorm(x, t(ckpt, name), t(ckpt, `${name}_bias`), c.normEps) : rmsnorm(x, t(ckpt, name), c.normEps);
  const bias = (name: string) => (c.attentionBias || gpt2 ? ckpt.tensors.get(name) : undefined);
  for (let l = 0; l < c.numLayers; l++) {
    const p = (name: string) => `layers.${l}.${name}`;
    const keys: Float64Array[] = [];
    const values: Float64Array[] = [];
    const queries = xs.map((x, pos) => {
      const xn = norm(x, p('attention_norm'));
      const q = matvec(t(ckpt, p('wq')), xn, bias(p('bq')));
      const k = matvec(t(ckpt, p('wk')), xn, bias(p('bk')));
      if (c.rope) {
        rope(q, c.numHeads, c.headDim, pos, c.rope.theta, c.rope.layout === 'interleaved');
        rope(k, c.numKvHeads, c.headDim, pos, c.rope.theta, c.rope.layout === 'interleaved');
      }
      keys.push(k);
      values.push(matvec(t(ckpt, p('wv')), xn, bias(p('bv'))));
      return q;
    });
    const group = c.numHeads / c.numKvHeads;
    xs = xs.map((x, pos) => {
      const att = new Float64Array(c.numHeads * c.headDim);
      for (let h = 0; h < c.numHeads; h++) {
        const kvh = Math.floor(h / group);
        const scores = Array.from({ length: pos + 1 }, (_, s) => {
          let dot = 0;
          for (let d = 0; d < c.headDim; d++) dot += queries[pos]![h * c.headDim + d]! * keys[s]![kvh * c.headDim + d]!;
          return dot / Math.sqrt(c.headDim);
        });
        const max = Math.max(...scores);
        const weights = scores.map((s) => Math.exp(s - max));
        const total = weights.reduce((a, b) => a + b, 0);
        for (let s = 0; s <= pos; s++) {
          for (let d = 0; d < c.headDim; d++) att[h * c.headDim + d]! += (weights[s]! / total) * values[s]![kvh * c.headDim + d]!;
        }
      }
      const attnOut = matvec(t(ckpt, p('wo')), att, gpt2 ? t(ckpt, p('bo')) : undefined);
      const h = x.map((v, i) => v + attnOut[i]!);
      const hn = norm(h, p('ffn_norm'));
      let act: Float64Array;
      if (gpt2) {
        act = matvec(t(ckpt, p('w1')), hn, t(ckpt, p('b1'))).map(gelu);
      } else {
        const gate = matvec(t(ckpt, p('w1')), hn);
        const up = matvec(t(ckpt, p('w3')), hn);
        act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!);
      }
      const down = matvec(t(ckpt, p('w2')), act, gpt2 ? t(ckpt, p('b2')) : undefined);
      return h.map((v, i) => v + down[i]!);
    });
    blockOutputs.push(xs);
  }
  const head = c.tiedEmbeddings ? emb : t(ckpt, 'output');
  const logits = xs.map((x) => matvec(head, norm(x, 'norm')));
  return { blockOutputs, logits };
}

/** Largest |a - b| relative to the largest |b|. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < b.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
    maxRef = Math.max(maxRef, Math.abs(b[i]!));
  }
  return maxDiff / maxRef;
}
