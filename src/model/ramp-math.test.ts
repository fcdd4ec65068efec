import assert from 'node:assert/strict';
import test from 'node:test';
import { Rng } from '../util/rng.js';
import { Adam, exitableShare, initialParams, paramLayout, rampLogits, rampLossAndGrad, type FrozenHead } from './ramp-math.js';

function randomArray(n: number, rng: Rng, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
}

/** A tiny random ramp problem: 5 positions, dim 6, 7 candidates, soft targets. */
function problem(kind: 'rms' | 'layer') {
  const rng = new Rng(3);
  const dim = 6;
  const numCandidates = 7;
  const head: FrozenHead = {
    dim,
    numCandidates,
    rows: randomArray(numCandidates * dim, rng),
    norm: { kind, weight: randomArray(dim, rng).map((x) => 1 + 0.5 * x), bias: kind === 'layer' ? randomArray(dim, rng, 0.3) : null, eps: 1e-5 },
  };
  const numRows = 5;
  const hidden = randomArray(numRows * dim, rng, 2);
  const targets = new Float32Array(numRows * (numCandidates + 1));
  for (let r = 0; r < numRows; r++) {
    const row = targets.subarray(r * (numCandidates + 1), (r + 1) * (numCandidates + 1));
    row.forEach((_, i) => (row[i] = rng.next() ** 3));
    const sum = row.reduce((a, b) => a + b, 0);
    row.forEach((x, i) => (row[i] = x / sum));
  }
  const params = initialParams(dim, -1);
  params.forEach((x, i) => (params[i] = x + 0.3 * (rng.next() * 2 - 1)));
  return { head, hidden, targets, numRows, params };
}

for (const kind of ['rms', 'layer'] as const) {
  test(`ramp gradient matches finite differences (${kind} norm)`, () => {
    const { head, hidden, targets, numRows, params } = problem(kind);
    const grad = new Float32Array(params.length);
    rampLossAndGrad(head, params, hidden, targets, numRows, grad);
    const scratch = new Float32Array(params.length);
    const lossAt = (p: Float32Array) => rampLossAndGrad(head, p, hidden, targets, numRows, scratch.fill(0));
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
    assert.ok(worst < 2e-2, `worst relative gradient error ${worst}`);
  });
}

test('identity start reproduces the plain head; Adam lowers the loss', () => {
  const { head, hidden, targets, numRows } = problem('rms');
  const params = initialParams(head.dim, -1);
  const logits = new Float32Array(numRows * (head.numCandidates + 1));
  rampLogits(head, params, hidden, numRows, logits);
  // Plain head by hand for row 0: rmsnorm(h) ⊙ g, then the rows.
  const h = hidden.subarray(0, head.dim);
  const rms = Math.sqrt(h.reduce((a, x) => a + x * x, 0) / head.dim + 1e-5);
  for (let c = 0; c < head.numCandidates; c++) {
    let z = 0;
    for (let j = 0; j < head.dim; j++) z += head.rows[c * head.dim + j]! * (h[j]! / rms) * head.norm.weight[j]!;
    assert.ok(Math.abs(z - logits[c]!) < 1e-4);
  }
  assert.equal(logits[head.numCandidates], -1); // rest row starts at zero: only its bias
  const adam = new Adam(paramLayout(head.dim).size, 0.05);
  const grad = new Float32Array(params.length);
  const first = rampLossAndGrad(head, params, hidden, targets, numRows, grad);
  let last = first;
  for (let i = 0; i < 200; i++) {
    grad.fill(0);
    last = rampLossAndGrad(head, params, hidden, targets, numRows, grad);
    adam.step(params, grad);
  }
  assert.ok(last < first * 0.8, `loss ${first} -> ${last}`);
});

test('exitable share: the longest confident prefix at the precision, ties kept together', () => {
  assert.equal(exitableShare([0.9, 0.8, 0.7, 0.1], [true, true, false, true], 0.99), 0.5);
  assert.equal(exitableShare([0.9, 0.8, 0.7, 0.1], [true, true, false, true], 0.75), 1);
  assert.equal(exitableShare([0.9, 0.9, 0.7], [true, false, true], 0.99), 0); // the tie at 0.9 cannot be split
  assert.equal(exitableShare([], [], 0.99), 0);
});
