import assert from 'node:assert/strict';
import test from 'node:test';
import { Rng } from '../util/rng.js';
import { matMulTransB, transpose } from './linalg.js';
import {
  featureMoments,
  foldStandardization,
  initialProbe,
  probeConfidence,
  probeFeatureCount,
  probeFeatures,
  probeLossAndGrad,
  standardize,
} from './probe-math.js';
import { Adam, exitableShare, ffnStart, initialParams, paramLayout, rampLogits, rampLossAndGrad, type FrozenHead } from './ramp-math.js';

function randomArray(n: number, rng: Rng, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
}

/** A tiny random ramp problem: 5 positions, dim 6, MLP width 4, 7 candidates, soft targets. */
function problem(kind: 'rms' | 'layer') {
  const rng = new Rng(3);
  const dim = 6;
  const hidden = 4;
  const numCandidates = 7;
  const head: FrozenHead = {
    dim,
    numCandidates,
    rows: randomArray(numCandidates * dim, rng),
    norm: { kind, weight: randomArray(dim, rng).map((x) => 1 + 0.5 * x), bias: kind === 'layer' ? randomArray(dim, rng, 0.3) : null, eps: 1e-5 },
  };
  const numRows = 5;
  const states = randomArray(numRows * dim, rng, 2);
  const targets = new Float32Array(numRows * (numCandidates + 1));
  for (let r = 0; r < numRows; r++) {
    const row = targets.subarray(r * (numCandidates + 1), (r + 1) * (numCandidates + 1));
    row.forEach((_, i) => (row[i] = rng.next() ** 3));
    const sum = row.reduce((a, b) => a + b, 0);
    row.forEach((x, i) => (row[i] = x / sum));
  }
  const params = initialParams(dim, hidden, -1, rng);
  params.forEach((x, i) => (params[i] = x + 0.3 * (rng.next() * 2 - 1)));
  return { head, hidden, states, targets, numRows, params };
}

/** Worst relative difference between `grad` and central differences of `lossAt` around `params`. */
function worstGradientError(params: Float32Array, grad: Float32Array, lossAt: (p: Float32Array) => number): number {
  // Float32 parameters: a step of 1e-3 keeps rounding well under the tolerance.
  const h = 1e-3;
  let worst = 0;
  for (let i = 0; i < params.length; i++) {
    const plus = params.slice();
    const minus = params.slice();
    plus[i]! += h;
    minus[i]! -= h;
    const numeric = (lossAt(plus) - lossAt(minus)) / (2 * h);
    worst = Math.max(worst, Math.abs(numeric - grad[i]!) / Math.max(1e-2, Math.abs(numeric) + Math.abs(grad[i]!)));
  }
  return worst;
}

test('the blocked product and the transpose equal the textbook loops, edges included', () => {
  const rng = new Rng(9);
  for (const [n, k, m] of [
    [7, 5, 3],
    [8, 3, 9],
    [4, 4, 4],
  ] as const) {
    const a = randomArray(n * k, rng);
    const b = randomArray(m * k, rng);
    const start = randomArray(n * m, rng);
    const [product, accumulated] = [new Float32Array(n * m).fill(7), start.slice()];
    matMulTransB(a, b, product, n, k, m);
    matMulTransB(a, b, accumulated, n, k, m, true);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < m; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += a[i * k + p]! * b[j * k + p]!;
        assert.ok(Math.abs(product[i * m + j]! - s) < 1e-5, `${n}x${k}x${m} [${i}, ${j}]`);
        assert.ok(Math.abs(accumulated[i * m + j]! - start[i * m + j]! - s) < 1e-5);
      }
    }
    const at = new Float32Array(k * n);
    transpose(a, n, k, at);
    for (let i = 0; i < n; i++) for (let p = 0; p < k; p++) assert.equal(at[p * n + i], a[i * k + p]);
  }
});

for (const kind of ['rms', 'layer'] as const) {
  test(`ramp gradient matches finite differences (${kind} norm)`, () => {
    const { head, states, targets, numRows, params } = problem(kind);
    const grad = new Float32Array(params.length);
    rampLossAndGrad(head, params, states, targets, numRows, grad);
    const scratch = new Float32Array(params.length);
    const worst = worstGradientError(params, grad, (p) => rampLossAndGrad(head, p, states, targets, numRows, scratch.fill(0)));
    assert.ok(worst < 2e-2, `worst relative gradient error ${worst}`);
  });
}

test('probe gradient matches finite differences', () => {
  const rng = new Rng(5);
  const [features, hidden, numRows] = [9, 4, 6];
  const x = randomArray(numRows * features, rng, 2);
  const labels = Uint8Array.from({ length: numRows }, (_, i) => i % 2);
  const params = initialProbe(features, hidden, rng);
  params.forEach((v, i) => (params[i] = v + 0.5 * (rng.next() * 2 - 1)));
  const grad = new Float32Array(params.length);
  probeLossAndGrad(params, x, labels, features, numRows, grad);
  const scratch = new Float32Array(params.length);
  const worst = worstGradientError(params, grad, (p) => probeLossAndGrad(p, x, labels, features, numRows, scratch.fill(0)));
  assert.ok(worst < 2e-2, `worst relative gradient error ${worst}`);
});

test('a probe trained on standardised features, folded, scores raw features the same', () => {
  const rng = new Rng(11);
  const [features, hidden, numRows] = [5, 3, 8];
  const raw = Float32Array.from({ length: numRows * features }, (_, i) => 10 + 5 * Math.sin(i) + (i % features));
  const moments = featureMoments(raw, features, numRows);
  const standard = raw.slice();
  standardize(standard, features, numRows, moments);
  const params = initialProbe(features, hidden, rng).map((v) => v + 0.2);
  const [onStandard, onRaw] = [new Float32Array(numRows), new Float32Array(numRows)];
  probeConfidence(params, standard, features, numRows, onStandard);
  probeConfidence(foldStandardization(params, features, moments), raw, features, numRows, onRaw);
  onRaw.forEach((v, i) => assert.ok(Math.abs(v - onStandard[i]!) < 1e-4, `${v} vs ${onStandard[i]}`));
});

test('probe features: the two best probabilities, the entropy, the normed state and input', () => {
  const dim = 2;
  const logits = Float32Array.from([Math.log(0.5), Math.log(0.25), Math.log(0.25)]);
  const out = new Float32Array(probeFeatureCount(dim));
  probeFeatures(logits, 3, Float32Array.from([1, 2]), Float32Array.from([3, 4]), dim, 1, out);
  const entropy = -(0.5 * Math.log(0.5) + 0.5 * Math.log(0.25));
  [0.5, 0.25, entropy, 1, 2, 3, 4].forEach((v, i) => assert.ok(Math.abs(out[i]! - v) < 1e-6, `feature ${i}: ${out[i]} vs ${v}`));
});

test('zero down-projection reproduces the plain head; Adam lowers the loss', () => {
  const { head, hidden, states, targets, numRows } = problem('rms');
  const params = initialParams(head.dim, hidden, -1, new Rng(1));
  const logits = new Float32Array(numRows * (head.numCandidates + 1));
  rampLogits(head, params, states, numRows, logits);
  // Plain head by hand for row 0: rmsnorm(h) ⊙ g, then the rows.
  const h = states.subarray(0, head.dim);
  const rms = Math.sqrt(h.reduce((a, x) => a + x * x, 0) / head.dim + 1e-5);
  for (let c = 0; c < head.numCandidates; c++) {
    let z = 0;
    for (let j = 0; j < head.dim; j++) z += head.rows[c * head.dim + j]! * (h[j]! / rms) * head.norm.weight[j]!;
    assert.ok(Math.abs(z - logits[c]!) < 1e-4);
  }
  assert.equal(logits[head.numCandidates], -1); // rest row starts at zero: only its bias
  const adam = new Adam(paramLayout(head.dim, hidden).size, 0.05);
  const grad = new Float32Array(params.length);
  const first = rampLossAndGrad(head, params, states, targets, numRows, grad);
  let last = first;
  for (let i = 0; i < 200; i++) {
    grad.fill(0);
    last = rampLossAndGrad(head, params, states, targets, numRows, grad);
    adam.step(params, grad);
  }
  assert.ok(last < first * 0.8, `loss ${first} -> ${last}`);
});

test("a ramp started from a block's feed-forward layer adds what that layer adds, its weakest units left out when it is wider", () => {
  const { head, states, numRows } = problem('rms');
  const { dim } = head;
  const rng = new Rng(5);
  const hiddenDim = 5;
  const w13 = randomArray(dim * 2 * hiddenDim, rng); // [dim, 2 * hiddenDim] (in, out): the gate's columns, then the up projection's
  const w2 = randomArray(hiddenDim * dim, rng); // [hiddenDim, dim] (in, out)
  const gain = randomArray(dim, rng).map((x) => 1 + 0.5 * x);
  for (const k of [1, 3]) for (let j = 0; j < dim; j++) w2[k * dim + j]! *= 1e-4; // two units that add next to nothing
  // The block's feed-forward layer by hand, then the plain head: rows · (rmsnorm(h + W2 (silu(W1 n) ⊙ W3 n)) ⊙ g), n = rmsnorm(h) ⊙ gain.
  const rmsNormed = (x: ArrayLike<number>, weight: ArrayLike<number>) => {
    const rms = Math.sqrt(Array.from(x).reduce((a, v) => a + v * v, 0) / dim + 1e-5);
    return Array.from(x, (v, j) => (v / rms) * weight[j]!);
  };
  const expected = (h: Float32Array) => {
    const n = rmsNormed(h, gain);
    const t = Array.from(h);
    for (let k = 0; k < hiddenDim; k++) {
      let gate = 0;
      let up = 0;
      for (let j = 0; j < dim; j++) {
        gate += w13[j * 2 * hiddenDim + k]! * n[j]!;
        up += w13[j * 2 * hiddenDim + hiddenDim + k]! * n[j]!;
      }
      const m = (gate / (1 + Math.exp(-gate))) * up;
      for (let j = 0; j < dim; j++) t[j]! += w2[k * dim + j]! * m;
    }
    const normed = rmsNormed(t, head.norm.weight);
    return Array.from({ length: head.numCandidates }, (_, c) => normed.reduce((z, v, j) => z + head.rows[c * dim + j]! * v, 0));
  };
  for (const width of [hiddenDim, hiddenDim - 2]) {
    const start = ffnStart(w13, w2, gain, dim, hiddenDim, width);
    assert.equal(start.units, width);
    const params = initialParams(dim, width, -1, new Rng(1), start);
    const logits = new Float32Array(numRows * (head.numCandidates + 1));
    rampLogits(head, params, states, numRows, logits);
    for (let r = 0; r < numRows; r++) {
      const want = expected(states.subarray(r * dim, (r + 1) * dim));
      want.forEach((z, c) =>
        assert.ok(
          Math.abs(z - logits[r * (head.numCandidates + 1) + c]!) < 1e-3,
          `width ${width}, row ${r}, column ${c}: ${z} against ${logits[r * (head.numCandidates + 1) + c]}`,
        ),
      );
    }
  }
  // Wider than the layer: its units first, the rest contributing nothing at the start (D = 0 there).
  const wide = initialParams(dim, hiddenDim + 3, -1, new Rng(1), ffnStart(w13, w2, gain, dim, hiddenDim, hiddenDim + 3));
  const layout = paramLayout(dim, hiddenDim + 3);
  for (let j = 0; j < dim; j++) for (let k = hiddenDim; k < hiddenDim + 3; k++) assert.equal(wide[layout.down + j * (hiddenDim + 3) + k], 0);
});

test('exitable share: the longest confident prefix at the precision, ties kept together', () => {
  assert.equal(exitableShare([0.9, 0.8, 0.7, 0.1], [true, true, false, true], 0.99), 0.5);
  assert.equal(exitableShare([0.9, 0.8, 0.7, 0.1], [true, true, false, true], 0.75), 1);
  assert.equal(exitableShare([0.9, 0.9, 0.7], [true, false, true], 0.99), 0); // the tie at 0.9 cannot be split
  assert.equal(exitableShare([], [], 0.99), 0);
});
