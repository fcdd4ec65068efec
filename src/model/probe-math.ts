/**
 * A trained ramp's confidence probe: a small classifier, fitted after its
 * ramp (which stays frozen), that estimates the probability that the ramp's
 * best token is the full model's. It reads more than the ramp's logits:
 *
 *   f = [p1, p2, H, n, x]        p1, p2: the ramp's two largest probabilities
 *                                (softmax over all its columns, rest included);
 *                                H: the entropy of all of them, in nats; n: its normed
 *                                state (what the head reads, [dim]); x: its
 *                                normed input ([dim]; see ramp-math.ts)
 *   a = silu(P · f + c)          P [hidden, features]
 *   confidence = sigmoid(a · v + e)
 *
 * Trained by logistic loss against "the ramp's token is the full model's
 * argmax" on the calibration positions. Features are standardised while it
 * trains; foldStandardization moves that into P and c, so the stored probe
 * (and the graph that computes it) reads f as it is.
 *
 * On stories260K's held-out text (three seeds, the 2026-12-05 report) the
 * margin ranks the tokens of the ramp after block 4 so that 26.9% can exit
 * at 99% precision; the probe, 41.6% (at 95%: 52.1% and 60.7%). The engine
 * then weighs the probe against the context (context-math.ts).
 *
 * @module
 */
import { Rng } from '../util/rng.js';
import { matMulTransB, transpose } from './linalg.js';

/** Features per position for a model of width `dim`. */
export function probeFeatureCount(dim: number): number {
  return 3 + 2 * dim;
}

/** Where each tensor lies in the probe's flat parameter array. */
export function probeLayout(features: number, hidden: number) {
  const weight = 0; // [hidden, features] (out, in), as Gemm with transB reads it
  const bias = features * hidden; // [hidden]
  const out = bias + hidden; // [hidden]
  const outBias = out + hidden; // [1]
  return { weight, bias, out, outBias, size: outBias + 1 };
}

/** P drawn uniformly with variance 1/features from `rng`; the output weights start at zero (confidence 0.5). */
export function initialProbe(features: number, hidden: number, rng: Rng): Float32Array {
  const layout = probeLayout(features, hidden);
  const params = new Float32Array(layout.size);
  const scale = Math.sqrt(3 / features);
  for (let i = 0; i < features * hidden; i++) params[layout.weight + i] = (2 * rng.next() - 1) * scale;
  return params;
}

/** The probe's hidden width from its parameter array's length. */
export function probeHiddenOf(features: number, numParams: number): number {
  return (numParams - 1) / (features + 2);
}

/**
 * Features [numRows, probeFeatureCount(dim)] of `numRows` positions from
 * the ramp's logits [numRows, width], its normed state and its normed
 * input (each [numRows, dim]).
 */
export function probeFeatures(
  logits: Float32Array,
  width: number,
  normed: Float32Array,
  input: Float32Array,
  dim: number,
  numRows: number,
  out: Float32Array,
): void {
  const features = probeFeatureCount(dim);
  for (let r = 0; r < numRows; r++) {
    const z = logits.subarray(r * width, (r + 1) * width);
    let best = -Infinity;
    let second = -Infinity;
    for (let c = 0; c < width; c++) {
      const v = z[c]!;
      if (v > best) {
        second = best;
        best = v;
      } else if (v > second) {
        second = v;
      }
    }
    // p_c = e^{z_c − best} / S; H = ln S − Σ (z_c − best) e^{z_c − best} / S.
    let sum = 0;
    let zExpSum = 0;
    for (let c = 0; c < width; c++) {
      const d = z[c]! - best;
      const e = Math.exp(d);
      sum += e;
      zExpSum += d * e;
    }
    const f = out.subarray(r * features, (r + 1) * features);
    f[0] = 1 / sum;
    f[1] = Math.exp(second - best) / sum;
    f[2] = Math.log(sum) - zExpSum / sum;
    f.set(normed.subarray(r * dim, (r + 1) * dim), 3);
    f.set(input.subarray(r * dim, (r + 1) * dim), 3 + dim);
  }
}

const silu = (x: number) => x / (1 + Math.exp(-x));
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** Hidden activations of a batch (before and after the SiLU), and the transposes the gradient reads. */
export class ProbeScratch {
  readonly pre: Float32Array;
  readonly act: Float32Array;
  readonly logits: Float32Array;
  readonly dPreT: Float32Array;
  readonly featuresT: Float32Array;
  constructor(hidden: number, capacity: number, numFeatures = 0) {
    this.pre = new Float32Array(hidden * capacity);
    this.act = new Float32Array(hidden * capacity);
    this.logits = new Float32Array(capacity);
    this.dPreT = new Float32Array(hidden * capacity);
    this.featuresT = new Float32Array(numFeatures * capacity);
  }
}

/** Logits (before the sigmoid) of `numRows` rows of features [numRows, features] into `out`. */
function forward(params: Float32Array, features: Float32Array, numFeatures: number, numRows: number, s: ProbeScratch, out: Float32Array): void {
  const hidden = probeHiddenOf(numFeatures, params.length);
  const layout = probeLayout(numFeatures, hidden);
  const pre = s.pre.subarray(0, numRows * hidden);
  for (let r = 0; r < numRows; r++) pre.set(params.subarray(layout.bias, layout.bias + hidden), r * hidden);
  matMulTransB(features, params.subarray(layout.weight, layout.weight + hidden * numFeatures), pre, numRows, numFeatures, hidden, true);
  for (let i = 0; i < numRows * hidden; i++) s.act[i] = silu(pre[i]!);
  matMulTransB(s.act, params.subarray(layout.out, layout.out + hidden), out, numRows, hidden, 1);
  for (let r = 0; r < numRows; r++) out[r]! += params[layout.outBias]!;
}

/** The probe's confidence, in (0, 1), for `numRows` rows of features [numRows, features]. */
export function probeConfidence(params: Float32Array, features: Float32Array, numFeatures: number, numRows: number, out: Float32Array): void {
  const s = new ProbeScratch(probeHiddenOf(numFeatures, params.length), numRows);
  forward(params, features, numFeatures, numRows, s, out);
  for (let r = 0; r < numRows; r++) out[r] = sigmoid(out[r]!);
}

/**
 * Mean logistic loss of `numRows` rows against `labels` (1: the ramp's token
 * was the full model's), and its gradient added into `grad` (the caller
 * zeroes it).
 */
export function probeLossAndGrad(
  params: Float32Array,
  features: Float32Array,
  labels: Uint8Array,
  numFeatures: number,
  numRows: number,
  grad: Float32Array,
  scratch = new ProbeScratch(probeHiddenOf(numFeatures, params.length), numRows, numFeatures),
): number {
  const hidden = probeHiddenOf(numFeatures, params.length);
  const layout = probeLayout(numFeatures, hidden);
  const logits = scratch.logits;
  forward(params, features, numFeatures, numRows, scratch, logits);
  let loss = 0;
  // The hidden layer's gradient, written over pre: d pre = (σ − y) v ⊙ silu'(pre) / numRows.
  const dPre = scratch.pre;
  for (let r = 0; r < numRows; r++) {
    const z = logits[r]!;
    // −[y log σ(z) + (1 − y) log(1 − σ(z))] = softplus(z) − y z, computed without overflow.
    loss += Math.max(z, 0) + Math.log1p(Math.exp(-Math.abs(z))) - labels[r]! * z;
    const d = (sigmoid(z) - labels[r]!) / numRows;
    grad[layout.outBias]! += d;
    for (let k = 0; k < hidden; k++) {
      const pre = dPre[r * hidden + k]!;
      grad[layout.out + k]! += scratch.act[r * hidden + k]! * d;
      const s = sigmoid(pre);
      dPre[r * hidden + k] = d * params[layout.out + k]! * s * (1 + pre * (1 - s));
      grad[layout.bias + k]! += dPre[r * hidden + k]!;
    }
  }
  // dP = d preᵀ f, both read transposed.
  transpose(dPre, numRows, hidden, scratch.dPreT);
  transpose(features, numRows, numFeatures, scratch.featuresT);
  matMulTransB(scratch.dPreT, scratch.featuresT, grad.subarray(layout.weight, layout.weight + hidden * numFeatures), hidden, numRows, numFeatures, true);
  return loss / numRows;
}

/** Per-feature mean and standard deviation (floored at 1e-6) of features [numRows, numFeatures]. */
export function featureMoments(features: Float32Array, numFeatures: number, numRows: number): { mean: Float64Array; std: Float64Array } {
  const mean = new Float64Array(numFeatures);
  const sq = new Float64Array(numFeatures);
  for (let r = 0; r < numRows; r++) {
    for (let i = 0; i < numFeatures; i++) {
      const v = features[r * numFeatures + i]!;
      mean[i]! += v;
      sq[i]! += v * v;
    }
  }
  const std = new Float64Array(numFeatures);
  for (let i = 0; i < numFeatures; i++) {
    mean[i]! /= Math.max(1, numRows);
    std[i] = Math.max(1e-6, Math.sqrt(Math.max(0, sq[i]! / Math.max(1, numRows) - mean[i]! ** 2)));
  }
  return { mean, std };
}

/** Standardises features [numRows, numFeatures] in place: (f − mean) / std. */
export function standardize(features: Float32Array, numFeatures: number, numRows: number, moments: { mean: Float64Array; std: Float64Array }): void {
  for (let r = 0; r < numRows; r++) {
    for (let i = 0; i < numFeatures; i++) features[r * numFeatures + i] = (features[r * numFeatures + i]! - moments.mean[i]!) / moments.std[i]!;
  }
}

/** A probe trained on standardised features, rewritten to read them raw: P / std, c − Σ mean · P / std. */
export function foldStandardization(params: Float32Array, numFeatures: number, moments: { mean: Float64Array; std: Float64Array }): Float32Array {
  const hidden = probeHiddenOf(numFeatures, params.length);
  const layout = probeLayout(numFeatures, hidden);
  const folded = params.slice();
  for (let k = 0; k < hidden; k++) {
    let shift = 0;
    for (let i = 0; i < numFeatures; i++) {
      const w = params[layout.weight + k * numFeatures + i]! / moments.std[i]!;
      folded[layout.weight + k * numFeatures + i] = w;
      shift += moments.mean[i]! * w;
    }
    folded[layout.bias + k] = params[layout.bias + k]! - shift;
  }
  return folded;
}
