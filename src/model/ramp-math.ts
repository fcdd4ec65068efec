/**
 * A trained ramp's math in plain loops: forward, hand-written backward, Adam.
 *
 * A ramp after block k maps that block's hidden state h [dim] towards the
 * last block's, then applies the model's own final norm and LM head,
 * restricted to the candidate tokens, plus one trained "rest" logit that
 * stands for every token outside the candidates:
 *
 *   t = h · A + b                  A [dim, dim] (in, out), starts as the identity
 *   n = norm(t) ⊙ g (+ β)          the model's final RMSNorm (LayerNorm for GPT-2), frozen
 *   z_c = E_c · n                  E_c: the head's rows of the candidates, frozen
 *   z_rest = w · n + c             trained: how much probability lies outside
 *
 * Training distils the full model: loss = −Σ q log softmax(z), with q the
 * full model's next-token distribution on the candidates and its mass outside
 * them on the rest logit. The backbone and the head stay frozen; only A, b,
 * w and c move.
 *
 * @module
 */
import { Rng } from '../util/rng.js';

/** The frozen part every ramp shares: the model's final norm and its head's candidate rows. */
export interface FrozenHead {
  dim: number;
  norm: { kind: 'rms' | 'layer'; weight: Float32Array; bias: Float32Array | null; eps: number };
  /** [numCandidates, dim]: the LM head's rows for the candidate token ids. */
  rows: Float32Array;
  numCandidates: number;
}

/** Where each trained tensor lies in one flat parameter array (Adam walks it as one). */
export function paramLayout(dim: number) {
  const translator = 0; // [dim, dim]
  const bias = dim * dim; // [dim]
  const restRow = bias + dim; // [dim]
  const restBias = restRow + dim; // [1]
  return { translator, bias, restRow, restBias, size: restBias + 1 };
}

/**
 * The starting point: identity translator (the plain head), rest logit at
 * `restBias` (log of the share of probability expected outside the candidates).
 */
export function initialParams(dim: number, restBias: number): Float32Array {
  const layout = paramLayout(dim);
  const params = new Float32Array(layout.size);
  for (let i = 0; i < dim; i++) params[layout.translator + i * dim + i] = 1;
  params[layout.restBias] = restBias;
  return params;
}

/** Scratch vectors for one position, reused across rows. */
class RowState {
  readonly t: Float32Array; // translated [dim]
  readonly u: Float32Array; // normalised, before the gain [dim]
  readonly n: Float32Array; // normed [dim]
  readonly z: Float32Array; // logits [numCandidates + 1]
  invStd = 0;
  constructor(dim: number, width: number) {
    this.t = new Float32Array(dim);
    this.u = new Float32Array(dim);
    this.n = new Float32Array(dim);
    this.z = new Float32Array(width);
  }
}

/** One position forward: fills s.t, s.u, s.n, s.z from h. */
function forwardRow(head: FrozenHead, params: Float32Array, h: Float32Array, s: RowState): void {
  const { dim, norm, rows, numCandidates } = head;
  const layout = paramLayout(dim);
  // t = h · A + b
  s.t.set(params.subarray(layout.bias, layout.bias + dim));
  for (let i = 0; i < dim; i++) {
    const hi = h[i]!;
    if (hi === 0) continue;
    const row = layout.translator + i * dim;
    for (let j = 0; j < dim; j++) s.t[j]! += hi * params[row + j]!;
  }
  // u = (t − mean) / std, mean = 0 for RMSNorm
  let mean = 0;
  if (norm.kind === 'layer') {
    for (let j = 0; j < dim; j++) mean += s.t[j]!;
    mean /= dim;
  }
  let sq = 0;
  for (let j = 0; j < dim; j++) sq += (s.t[j]! - mean) ** 2;
  s.invStd = 1 / Math.sqrt(sq / dim + norm.eps);
  for (let j = 0; j < dim; j++) {
    s.u[j] = (s.t[j]! - mean) * s.invStd;
    s.n[j] = s.u[j]! * norm.weight[j]! + (norm.bias ? norm.bias[j]! : 0);
  }
  // z = [E_c · n, w · n + c]
  for (let c = 0; c < numCandidates; c++) {
    let acc = 0;
    const at = c * dim;
    for (let j = 0; j < dim; j++) acc += rows[at + j]! * s.n[j]!;
    s.z[c] = acc;
  }
  let rest = params[layout.restBias]!;
  for (let j = 0; j < dim; j++) rest += params[layout.restRow + j]! * s.n[j]!;
  s.z[numCandidates] = rest;
}

/** Ramp logits [numRows, numCandidates + 1] (the last column is the rest) for hidden [numRows, dim]. */
export function rampLogits(head: FrozenHead, params: Float32Array, hidden: Float32Array, numRows: number, out: Float32Array): void {
  const width = head.numCandidates + 1;
  const s = new RowState(head.dim, width);
  for (let r = 0; r < numRows; r++) {
    forwardRow(head, params, hidden.subarray(r * head.dim, (r + 1) * head.dim), s);
    out.set(s.z, r * width);
  }
}

/**
 * Mean distillation loss over `numRows` positions, and its gradient added
 * into `grad` (same layout as params; the caller zeroes it).
 * `targets` [numRows, numCandidates + 1]: the full model's probabilities of
 * the candidates, then its mass outside them; each row sums to 1.
 */
export function rampLossAndGrad(
  head: FrozenHead,
  params: Float32Array,
  hidden: Float32Array,
  targets: Float32Array,
  numRows: number,
  grad: Float32Array,
): number {
  const { dim, norm, rows, numCandidates } = head;
  const width = numCandidates + 1;
  const layout = paramLayout(dim);
  const s = new RowState(dim, width);
  const dz = new Float32Array(width);
  const dn = new Float32Array(dim);
  const dt = new Float32Array(dim);
  let loss = 0;
  for (let r = 0; r < numRows; r++) {
    const h = hidden.subarray(r * dim, (r + 1) * dim);
    const q = targets.subarray(r * width, (r + 1) * width);
    forwardRow(head, params, h, s);

    // Softmax cross-entropy against q: dL/dz = (p − q) / numRows.
    let max = -Infinity;
    for (let c = 0; c < width; c++) max = Math.max(max, s.z[c]!);
    let sum = 0;
    for (let c = 0; c < width; c++) sum += Math.exp(s.z[c]! - max);
    const logSum = max + Math.log(sum);
    for (let c = 0; c < width; c++) {
      const logP = s.z[c]! - logSum;
      if (q[c]! > 0) loss -= q[c]! * logP;
      dz[c] = (Math.exp(logP) - q[c]!) / numRows;
    }

    // Back through the head: dn = E_cᵀ dz + w dz_rest; the rest row and bias get n dz_rest.
    const dRest = dz[numCandidates]!;
    for (let j = 0; j < dim; j++) {
      dn[j] = params[layout.restRow + j]! * dRest;
      grad[layout.restRow + j]! += s.n[j]! * dRest;
    }
    grad[layout.restBias]! += dRest;
    for (let c = 0; c < numCandidates; c++) {
      const d = dz[c]!;
      const at = c * dim;
      for (let j = 0; j < dim; j++) dn[j]! += rows[at + j]! * d;
    }

    // Back through the norm: du = dn ⊙ g; RMSNorm dt = (du − u·mean(du⊙u)) / std,
    // LayerNorm also subtracts mean(du) (the mean it removed).
    let duMean = 0;
    let duDotU = 0;
    for (let j = 0; j < dim; j++) {
      dn[j]! *= norm.weight[j]!; // dn now holds du
      duMean += dn[j]!;
      duDotU += dn[j]! * s.u[j]!;
    }
    duMean = norm.kind === 'layer' ? duMean / dim : 0;
    duDotU /= dim;
    for (let j = 0; j < dim; j++) dt[j] = s.invStd * (dn[j]! - duMean - s.u[j]! * duDotU);

    // Back through the translator: dA = hᵀ dt, db = dt.
    for (let j = 0; j < dim; j++) grad[layout.bias + j]! += dt[j]!;
    for (let i = 0; i < dim; i++) {
      const hi = h[i]!;
      if (hi === 0) continue;
      const row = layout.translator + i * dim;
      for (let j = 0; j < dim; j++) grad[row + j]! += hi * dt[j]!;
    }
  }
  return loss / numRows;
}

/** Adam (Kingma & Ba) over one flat parameter array. */
export class Adam {
  private readonly m: Float32Array;
  private readonly v: Float32Array;
  private steps = 0;

  constructor(
    size: number,
    private readonly learningRate: number,
    private readonly beta1 = 0.9,
    private readonly beta2 = 0.999,
    private readonly eps = 1e-8,
  ) {
    this.m = new Float32Array(size);
    this.v = new Float32Array(size);
  }

  /** One step of `params` against `grad`, at `learningRate` times `scale` (a schedule's factor). */
  step(params: Float32Array, grad: Float32Array, scale = 1): void {
    this.steps++;
    const { beta1, beta2, eps } = this;
    const lr = (this.learningRate * scale * Math.sqrt(1 - beta2 ** this.steps)) / (1 - beta1 ** this.steps);
    for (let i = 0; i < params.length; i++) {
      const g = grad[i]!;
      this.m[i] = beta1 * this.m[i]! + (1 - beta1) * g;
      this.v[i] = beta2 * this.v[i]! + (1 - beta2) * g * g;
      params[i]! -= (lr * this.m[i]!) / (Math.sqrt(this.v[i]!) + eps);
    }
  }
}

/**
 * The largest share of positions that can exit at `precision`: positions
 * sorted most confident first, the longest such prefix whose agreement with
 * the full model is at least `precision`. A threshold cannot split positions
 * of equal confidence, so prefixes end only where the confidence changes.
 */
export function exitableShare(confidence: ArrayLike<number>, agrees: ArrayLike<boolean>, precision: number): number {
  const n = confidence.length;
  if (n === 0) return 0;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => confidence[b]! - confidence[a]!);
  let best = 0;
  let agreed = 0;
  for (let k = 0; k < n; k++) {
    if (agrees[order[k]!]) agreed++;
    const endOfTie = k === n - 1 || confidence[order[k + 1]!]! !== confidence[order[k]!]!;
    if (endOfTie && agreed >= precision * (k + 1)) best = k + 1;
  }
  return best / n;
}

/** A seeded permutation of 0..n-1 (Fisher–Yates). */
export function shuffled(n: number, rng: Rng): Int32Array {
  const order = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.nextUint32() % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/**
 * The affine map that best sends x [n, dim] to y [n, dim] in least squares
 * (ridge `ridge` on the matrix, relative to the mean of xᵀx's diagonal),
 * written into params' translator and bias: a starting point near the
 * answer, which distillation then refines. Normal equations solved by
 * Gaussian elimination with partial pivoting, in float64.
 */
export function leastSquaresStart(x: Float32Array, y: Float32Array, n: number, dim: number, params: Float32Array, ridge = 1e-3): void {
  const m = dim + 1; // [x, 1]
  const gram = new Float64Array(m * m);
  const rhs = new Float64Array(m * dim);
  const row = new Float64Array(m);
  for (let p = 0; p < n; p++) {
    for (let i = 0; i < dim; i++) row[i] = x[p * dim + i]!;
    row[dim] = 1;
    for (let i = 0; i < m; i++) {
      const ri = row[i]!;
      for (let j = 0; j < m; j++) gram[i * m + j]! += ri * row[j]!;
      for (let j = 0; j < dim; j++) rhs[i * dim + j]! += ri * y[p * dim + j]!;
    }
  }
  let trace = 0;
  for (let i = 0; i < dim; i++) trace += gram[i * m + i]!;
  for (let i = 0; i < dim; i++) gram[i * m + i]! += (ridge * trace) / dim;
  // Eliminate below each pivot, then substitute back.
  for (let col = 0; col < m; col++) {
    let pivot = col;
    for (let r = col + 1; r < m; r++) if (Math.abs(gram[r * m + col]!) > Math.abs(gram[pivot * m + col]!)) pivot = r;
    if (pivot !== col) {
      for (let j = 0; j < m; j++) [gram[col * m + j], gram[pivot * m + j]] = [gram[pivot * m + j]!, gram[col * m + j]!];
      for (let j = 0; j < dim; j++) [rhs[col * dim + j], rhs[pivot * dim + j]] = [rhs[pivot * dim + j]!, rhs[col * dim + j]!];
    }
    const diag = gram[col * m + col]!;
    if (diag === 0) return; // degenerate data: keep the identity start
    for (let r = col + 1; r < m; r++) {
      const f = gram[r * m + col]! / diag;
      if (f === 0) continue;
      for (let j = col; j < m; j++) gram[r * m + j]! -= f * gram[col * m + j]!;
      for (let j = 0; j < dim; j++) rhs[r * dim + j]! -= f * rhs[col * dim + j]!;
    }
  }
  const solution = new Float64Array(m * dim);
  for (let r = m - 1; r >= 0; r--) {
    for (let j = 0; j < dim; j++) {
      let acc = rhs[r * dim + j]!;
      for (let k = r + 1; k < m; k++) acc -= gram[r * m + k]! * solution[k * dim + j]!;
      solution[r * dim + j] = acc / gram[r * m + r]!;
    }
  }
  const layout = paramLayout(dim);
  for (let i = 0; i < dim * dim; i++) params[layout.translator + i] = solution[i]!;
  for (let j = 0; j < dim; j++) params[layout.bias + j] = solution[dim * dim + j]!;
}
