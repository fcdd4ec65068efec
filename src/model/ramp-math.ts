/**
 * A trained ramp's math in plain loops over a batch of rows: forward,
 * hand-written backward, Adam.
 *
 * A ramp after block k reads that block's hidden state h [dim] and adds a
 * small residual gated MLP of its own (a trained stand-in for what the
 * blocks it skips would add), then applies the model's own final norm and
 * LM head, restricted to the candidate tokens, plus one trained "rest"
 * logit that stands for every token outside the candidates:
 *
 *   x = h / rms(h)                                 the ramp's own input norm (no gain)
 *   t = h + b + D · (silu(U · x + c) ⊙ (V · x))    U, V [hidden, dim], D [dim, hidden]
 *   n = norm(t) ⊙ g (+ β)                          the model's final RMSNorm (LayerNorm for GPT-2), frozen
 *   z_c = E_c · n                                  E_c: the head's rows of the candidates, frozen
 *   z_rest = w · n + r                             trained: how much probability lies outside
 *
 * The gated MLP has the shape of a Llama block's feed-forward layer, and on
 * a Llama model it starts as the next block's own (its gate, up and down
 * projections, the block's norm gain folded into U and V, its most
 * important units where it is wider than the ramp; see ffnStart): the ramp
 * starts as "skip that block's attention", which is most of what a late
 * block adds. Elsewhere D starts at zero, the ramp as the plain head (plus
 * the rest logit). Training distils the full model: loss = −Σ q log
 * softmax(z), with q the full model's next-token distribution on the
 * candidates and its mass outside them on the rest logit. The backbone and
 * the head stay frozen; only b, U, c, V, D, w and r move. (On
 * stories260K, against a plain residual MLP t = h + b + D · silu(U · x + c)
 * of the same width started at D = 0, the previous form: 0.6 and 2.8
 * points more agreement after blocks 3 and 4, and 3.4 and 6.4 points more of
 * their tokens exitable at 99% precision, means of five seeds;
 * docs/measurements.md, "Ramps that start as the next block's feed-forward
 * layer".)
 *
 * @module
 */
import { Rng } from '../util/rng.js';
import { matMulTransB, transpose } from './linalg.js';

/** The frozen part every ramp shares: the model's final norm and its head's candidate rows. */
export interface FrozenHead {
  dim: number;
  norm: { kind: 'rms' | 'layer'; weight: Float32Array; bias: Float32Array | null; eps: number };
  /** [numCandidates, dim]: the LM head's rows for the candidate token ids. */
  rows: Float32Array;
  numCandidates: number;
}

/** Epsilon of the ramp's own input norm (x = h / rms(h)). */
export const RAMP_INPUT_EPS = 1e-5;

/** Where each trained tensor lies in one flat parameter array (Adam walks it as one); `hidden`: the MLP's width. */
export function paramLayout(dim: number, hidden: number) {
  const bias = 0; // [dim]
  const up = bias + dim; // U [hidden, dim] (out, in), as Gemm with transB reads it
  const upBias = up + dim * hidden; // c [hidden]
  const linear = upBias + hidden; // V [hidden, dim] (out, in)
  const down = linear + dim * hidden; // D [dim, hidden] (out, in)
  const restRow = down + hidden * dim; // [dim]
  const restBias = restRow + dim; // [1]
  return { bias, up, upBias, linear, down, restRow, restBias, size: restBias + 1 };
}

/** A gated feed-forward layer to start a ramp from (see ffnStart): U, V [units, dim] and D [dim, units]. */
export interface FfnStart {
  units: number;
  up: Float32Array;
  linear: Float32Array;
  down: Float32Array;
}

/**
 * A Llama block's feed-forward layer, m = W2 · (silu(W1 · n) ⊙ W3 · n) with
 * n = rms-normed input ⊙ gain, as a ramp's U, V and D: the gain folded into
 * U and V, and where the layer has more than `width` units, the `width` of
 * them whose down column and gate and up rows are largest (‖D_k‖ · (‖U_k‖ +
 * ‖V_k‖)). `w13` [dim, 2 · hiddenDim] and `w2` [hiddenDim, dim] are the
 * stored (in, out) matrices, `gain` [dim] the block's ffn_norm.
 */
export function ffnStart(w13: Float32Array, w2: Float32Array, gain: Float32Array, dim: number, hiddenDim: number, width: number): FfnStart {
  const norm = (get: (j: number) => number, n: number) => {
    let sq = 0;
    for (let j = 0; j < n; j++) sq += get(j) ** 2;
    return Math.sqrt(sq);
  };
  const importance = Array.from({ length: hiddenDim }, (_, k) => {
    const gateRow = norm((j) => w13[j * 2 * hiddenDim + k]! * gain[j]!, dim);
    const upRow = norm((j) => w13[j * 2 * hiddenDim + hiddenDim + k]! * gain[j]!, dim);
    return norm((j) => w2[k * dim + j]!, dim) * (gateRow + upRow);
  });
  const kept = Array.from({ length: hiddenDim }, (_, k) => k)
    .sort((a, b) => importance[b]! - importance[a]!)
    .slice(0, width);
  const units = kept.length;
  const up = new Float32Array(units * dim);
  const linear = new Float32Array(units * dim);
  const down = new Float32Array(dim * units);
  kept.forEach((k, u) => {
    for (let j = 0; j < dim; j++) {
      up[u * dim + j] = w13[j * 2 * hiddenDim + k]! * gain[j]!;
      linear[u * dim + j] = w13[j * 2 * hiddenDim + hiddenDim + k]! * gain[j]!;
      down[j * units + u] = w2[k * dim + j]!;
    }
  });
  return { units, up, linear, down };
}

/**
 * The starting point: U and V drawn uniformly with variance 1/dim from
 * `rng` and D = 0 (the plain head), or where `ffn` is given its units in
 * the first rows (the rest as above); the rest logit at `restBias` (log of
 * the share of probability expected outside the candidates).
 */
export function initialParams(dim: number, hidden: number, restBias: number, rng: Rng, ffn: FfnStart | null = null): Float32Array {
  const layout = paramLayout(dim, hidden);
  const params = new Float32Array(layout.size);
  const scale = Math.sqrt(3 / dim);
  for (let i = 0; i < dim * hidden; i++) params[layout.up + i] = (2 * rng.next() - 1) * scale;
  for (let i = 0; i < dim * hidden; i++) params[layout.linear + i] = (2 * rng.next() - 1) * scale;
  if (ffn) {
    const units = Math.min(ffn.units, hidden);
    params.set(ffn.up.subarray(0, units * dim), layout.up);
    params.set(ffn.linear.subarray(0, units * dim), layout.linear);
    for (let j = 0; j < dim; j++) params.set(ffn.down.subarray(j * ffn.units, j * ffn.units + units), layout.down + j * hidden);
  }
  params[layout.restBias] = restBias;
  return params;
}

/** x · sigmoid(x), and its derivative. */
const silu = (x: number) => x / (1 + Math.exp(-x));
function siluGrad(x: number): number {
  const s = 1 / (1 + Math.exp(-x));
  return s * (1 + x * (1 - s));
}

/** What the forward pass keeps of a batch of rows, reused across batches (sized for `capacity` rows). */
export class RampBatch {
  readonly x: Float32Array; // input normed [rows, dim]
  readonly pre: Float32Array; // x · Uᵀ + c [rows, hidden]
  readonly act: Float32Array; // silu(pre) [rows, hidden]
  readonly lin: Float32Array; // x · Vᵀ [rows, hidden]
  readonly gated: Float32Array; // act ⊙ lin [rows, hidden]
  readonly u: Float32Array; // t normalised, before the gain [rows, dim]
  readonly n: Float32Array; // normed [rows, dim]
  readonly invStd: Float32Array; // [rows]
  readonly zc: Float32Array; // candidate logits [rows, candidates]
  readonly rest: Float32Array; // rest logit [rows]
  constructor(
    head: FrozenHead,
    hidden: number,
    readonly capacity: number,
  ) {
    const { dim, numCandidates } = head;
    this.x = new Float32Array(capacity * dim);
    this.pre = new Float32Array(capacity * hidden);
    this.act = new Float32Array(capacity * hidden);
    this.lin = new Float32Array(capacity * hidden);
    this.gated = new Float32Array(capacity * hidden);
    this.u = new Float32Array(capacity * dim);
    this.n = new Float32Array(capacity * dim);
    this.invStd = new Float32Array(capacity);
    this.zc = new Float32Array(capacity * numCandidates);
    this.rest = new Float32Array(capacity);
  }
}

/** The MLP's width from a parameter array's length. */
export function hiddenOf(dim: number, numParams: number): number {
  return (numParams - 2 * dim - 1) / (3 * dim + 1);
}

/** Forward over `numRows` rows of `hidden` [numRows, dim] into `s`. */
export function forwardBatch(head: FrozenHead, params: Float32Array, hidden: Float32Array, numRows: number, s: RampBatch): void {
  const { dim, norm, rows, numCandidates } = head;
  const width = hiddenOf(dim, params.length);
  const layout = paramLayout(dim, width);
  // x = h / rms(h)
  for (let r = 0; r < numRows; r++) {
    let sq = 0;
    for (let j = 0; j < dim; j++) sq += hidden[r * dim + j]! ** 2;
    const inv = 1 / Math.sqrt(sq / dim + RAMP_INPUT_EPS);
    for (let j = 0; j < dim; j++) s.x[r * dim + j] = hidden[r * dim + j]! * inv;
  }
  // pre = x · Uᵀ + c; act = silu(pre)
  const pre = s.pre.subarray(0, numRows * width);
  for (let r = 0; r < numRows; r++) pre.set(params.subarray(layout.upBias, layout.upBias + width), r * width);
  matMulTransB(s.x, params.subarray(layout.up, layout.up + width * dim), pre, numRows, dim, width, true);
  for (let i = 0; i < numRows * width; i++) s.act[i] = silu(pre[i]!);
  // lin = x · Vᵀ; gated = act ⊙ lin
  const lin = s.lin.subarray(0, numRows * width);
  matMulTransB(s.x, params.subarray(layout.linear, layout.linear + width * dim), lin, numRows, dim, width);
  for (let i = 0; i < numRows * width; i++) s.gated[i] = s.act[i]! * lin[i]!;
  // t = h + b + gated · Dᵀ, kept in s.u until it is normalised in place
  const t = s.u.subarray(0, numRows * dim);
  for (let r = 0; r < numRows; r++) for (let j = 0; j < dim; j++) t[r * dim + j] = hidden[r * dim + j]! + params[layout.bias + j]!;
  matMulTransB(s.gated, params.subarray(layout.down, layout.down + dim * width), t, numRows, width, dim, true);
  // u = (t − mean) / std (mean = 0 for RMSNorm), n = u ⊙ g (+ β)
  for (let r = 0; r < numRows; r++) {
    let mean = 0;
    if (norm.kind === 'layer') {
      for (let j = 0; j < dim; j++) mean += t[r * dim + j]!;
      mean /= dim;
    }
    let sq = 0;
    for (let j = 0; j < dim; j++) sq += (t[r * dim + j]! - mean) ** 2;
    const inv = 1 / Math.sqrt(sq / dim + norm.eps);
    s.invStd[r] = inv;
    for (let j = 0; j < dim; j++) {
      const u = (t[r * dim + j]! - mean) * inv;
      s.u[r * dim + j] = u;
      s.n[r * dim + j] = u * norm.weight[j]! + (norm.bias ? norm.bias[j]! : 0);
    }
  }
  // z = [E_c · n, w · n + r]
  matMulTransB(s.n, rows, s.zc, numRows, dim, numCandidates);
  for (let r = 0; r < numRows; r++) {
    let acc = params[layout.restBias]!;
    for (let j = 0; j < dim; j++) acc += params[layout.restRow + j]! * s.n[r * dim + j]!;
    s.rest[r] = acc;
  }
}

/** Rows of at most this many at a time when a ramp scores many positions. */
const CHUNK_ROWS = 256;

/**
 * Ramp logits [numRows, numCandidates + 1] (the last column is the rest)
 * for hidden [numRows, dim]. `each`, when given, sees every chunk's forward
 * state after it is computed (what the probe reads), with its first row.
 */
export function rampLogits(
  head: FrozenHead,
  params: Float32Array,
  hidden: Float32Array,
  numRows: number,
  out: Float32Array,
  each?: (batch: RampBatch, firstRow: number, numRows: number) => void,
): void {
  const { dim, numCandidates } = head;
  const width = numCandidates + 1;
  const s = new RampBatch(head, hiddenOf(dim, params.length), Math.min(CHUNK_ROWS, Math.max(1, numRows)));
  for (let from = 0; from < numRows; from += CHUNK_ROWS) {
    const n = Math.min(CHUNK_ROWS, numRows - from);
    forwardBatch(head, params, hidden.subarray(from * dim, (from + n) * dim), n, s);
    for (let r = 0; r < n; r++) {
      out.set(s.zc.subarray(r * numCandidates, (r + 1) * numCandidates), (from + r) * width);
      out[(from + r) * width + numCandidates] = s.rest[r]!;
    }
    each?.(s, from, n);
  }
}

/** Scratch for the backward pass of one batch, and the transposed operands its products read (see linalg.ts). */
class GradScratch {
  readonly dzc: Float32Array; // [rows, candidates]
  readonly dRest: Float32Array; // [rows]
  readonly dn: Float32Array; // [rows, dim], then du, then dt
  readonly dAct: Float32Array; // [rows, hidden]: d gated, then d pre
  readonly dLin: Float32Array; // [rows, hidden]
  readonly rowsT: Float32Array; // [dim, candidates]: the head's candidate rows, transposed once
  readonly downT: Float32Array; // [hidden, dim]
  readonly dtT: Float32Array; // [dim, rows]
  readonly gatedT: Float32Array; // [hidden, rows]
  readonly dPreT: Float32Array; // [hidden, rows], then d linᵀ
  readonly xT: Float32Array; // [dim, rows]
  constructor(head: FrozenHead, hidden: number, capacity: number) {
    const { dim, numCandidates } = head;
    this.dzc = new Float32Array(capacity * numCandidates);
    this.dRest = new Float32Array(capacity);
    this.dn = new Float32Array(capacity * dim);
    this.dAct = new Float32Array(capacity * hidden);
    this.dLin = new Float32Array(capacity * hidden);
    this.rowsT = new Float32Array(dim * numCandidates);
    transpose(head.rows, numCandidates, dim, this.rowsT);
    this.downT = new Float32Array(hidden * dim);
    this.dtT = new Float32Array(dim * capacity);
    this.gatedT = new Float32Array(hidden * capacity);
    this.dPreT = new Float32Array(hidden * capacity);
    this.xT = new Float32Array(dim * capacity);
  }
}

/** Reusable scratch for rampLossAndGrad: a forward batch and the backward's buffers, for one head and MLP width. */
export class RampTrainScratch {
  readonly batch: RampBatch;
  readonly grads: GradScratch;
  constructor(head: FrozenHead, hidden: number, capacity: number) {
    this.batch = new RampBatch(head, hidden, capacity);
    this.grads = new GradScratch(head, hidden, capacity);
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
  scratch = new RampTrainScratch(head, hiddenOf(head.dim, params.length), numRows),
): number {
  const { dim, norm, numCandidates } = head;
  const width = hiddenOf(dim, params.length);
  const layout = paramLayout(dim, width);
  const s = scratch.batch;
  const { dzc, dRest, dn, dAct, dLin, rowsT, downT, dtT, gatedT, dPreT, xT } = scratch.grads;
  forwardBatch(head, params, hidden, numRows, s);

  // Softmax cross-entropy against q: dL/dz = (p − q) / numRows.
  let loss = 0;
  for (let r = 0; r < numRows; r++) {
    const z = s.zc.subarray(r * numCandidates, (r + 1) * numCandidates);
    const q = targets.subarray(r * (numCandidates + 1), (r + 1) * (numCandidates + 1));
    let max = s.rest[r]!;
    for (let c = 0; c < numCandidates; c++) max = Math.max(max, z[c]!);
    let sum = Math.exp(s.rest[r]! - max);
    for (let c = 0; c < numCandidates; c++) sum += Math.exp(z[c]! - max);
    const logSum = max + Math.log(sum);
    for (let c = 0; c <= numCandidates; c++) {
      const logP = (c < numCandidates ? z[c]! : s.rest[r]!) - logSum;
      if (q[c]! > 0) loss -= q[c]! * logP;
      const d = (Math.exp(logP) - q[c]!) / numRows;
      if (c < numCandidates) dzc[r * numCandidates + c] = d;
      else dRest[r] = d;
    }
  }

  // Back through the head: dn = dz_c · E_c + dz_rest w (E_c read transposed); the rest row and bias get n dz_rest.
  const dnRows = dn.subarray(0, numRows * dim);
  for (let r = 0; r < numRows; r++) {
    const d = dRest[r]!;
    grad[layout.restBias]! += d;
    for (let j = 0; j < dim; j++) {
      dnRows[r * dim + j] = params[layout.restRow + j]! * d;
      grad[layout.restRow + j]! += s.n[r * dim + j]! * d;
    }
  }
  matMulTransB(dzc, rowsT, dnRows, numRows, numCandidates, dim, true);

  // Back through the norm: du = dn ⊙ g; RMSNorm dt = (du − u·mean(du⊙u)) / std,
  // LayerNorm also subtracts mean(du) (the mean it removed). dt goes to the bias as it is.
  for (let r = 0; r < numRows; r++) {
    let duMean = 0;
    let duDotU = 0;
    for (let j = 0; j < dim; j++) {
      const du = dnRows[r * dim + j]! * norm.weight[j]!;
      dnRows[r * dim + j] = du;
      duMean += du;
      duDotU += du * s.u[r * dim + j]!;
    }
    duMean = norm.kind === 'layer' ? duMean / dim : 0;
    duDotU /= dim;
    for (let j = 0; j < dim; j++) {
      const dt = s.invStd[r]! * (dnRows[r * dim + j]! - duMean - s.u[r * dim + j]! * duDotU);
      dnRows[r * dim + j] = dt;
      grad[layout.bias + j]! += dt;
    }
  }

  // Back through the gated MLP: dD = dtᵀ gated; d gated = dt · D; d lin = d gated ⊙ act, dV = d linᵀ x;
  // d pre = d gated ⊙ lin ⊙ silu'(pre), dU = d preᵀ x, dc = Σ d pre.
  const down = params.subarray(layout.down, layout.down + dim * width);
  transpose(dnRows, numRows, dim, dtT);
  transpose(s.gated, numRows, width, gatedT);
  matMulTransB(dtT, gatedT, grad.subarray(layout.down, layout.down + dim * width), dim, numRows, width, true);
  transpose(down, dim, width, downT);
  matMulTransB(dnRows, downT, dAct, numRows, dim, width);
  for (let r = 0; r < numRows; r++) {
    for (let k = 0; k < width; k++) {
      const i = r * width + k;
      dLin[i] = dAct[i]! * s.act[i]!;
      const d = dAct[i]! * s.lin[i]! * siluGrad(s.pre[i]!);
      dAct[i] = d;
      grad[layout.upBias + k]! += d;
    }
  }
  transpose(s.x, numRows, dim, xT);
  transpose(dAct, numRows, width, dPreT);
  matMulTransB(dPreT, xT, grad.subarray(layout.up, layout.up + width * dim), width, numRows, dim, true);
  transpose(dLin, numRows, width, dPreT);
  matMulTransB(dPreT, xT, grad.subarray(layout.linear, layout.linear + width * dim), width, numRows, dim, true);
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
