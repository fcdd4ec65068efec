import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../util/index.js';
import { CONTEXT_MAX_MATCH, CONTEXT_WEIGHTS, contextConfidence, contextMatch, fitContext, type ContextMatch, type ContextSamples } from './context-math.js';

const matchIn = (tokens: number[], end = tokens.length - 1) => contextMatch((i) => tokens[i]!, end);

test('context match: the longest earlier run ending like the text, the latest among equals, and the token after it', () => {
  // Two earlier "5 6" runs; the latest is followed by 9.
  assert.deepEqual(matchIn([5, 6, 7, 5, 6, 9, 5, 6]), { token: 9, length: 2 });
  // "1 2 3 4" earlier beats the later "2 3 4": the token after the longer run.
  assert.deepEqual(matchIn([1, 2, 3, 4, 8, 2, 3, 4, 9, 1, 2, 3, 4]), { token: 8, length: 4 });
  // Nothing earlier: no match; the first position has no text before it.
  assert.deepEqual(matchIn([1, 2, 3]), { token: -1, length: 0 });
  assert.deepEqual(matchIn([1]), { token: -1, length: 0 });
  // A long repeat counts up to CONTEXT_MAX_MATCH; `end` reads only the text up to it.
  const loop = Array.from({ length: 40 }, (_, i) => i % 5);
  assert.deepEqual(matchIn(loop), { token: 0, length: CONTEXT_MAX_MATCH });
  assert.deepEqual(matchIn([7, 8, 7, 9], 2), { token: 8, length: 1 });
});

test('context confidence: weights on the probe alone give the probe back', () => {
  const probeOnly = [0, 1, 0, 0, 0, 0, 0, 0];
  for (const p of [0.1, 0.5, 0.93]) assert.ok(Math.abs(contextConfidence(probeOnly, p, 3, { token: 3, length: 4 }) - p) < 1e-9);
  assert.equal(contextConfidence(new Array<number>(CONTEXT_WEIGHTS).fill(0), 0.9, 3, { token: -1, length: 0 }), 0.5);
});

test('context confidence: a model fitted before the curvature terms (eight weights) scores as one with those terms at zero', () => {
  const eight = [0.3, 1.2, 0.8, -1.5, 0.4, -0.9, 0.2, -0.1];
  const padded = [...eight, ...new Array<number>(CONTEXT_WEIGHTS - eight.length).fill(0)];
  for (const [p, match] of [
    [0.97, { token: 3, length: 5 }],
    [0.4, { token: 2, length: 1 }],
    [0.999, { token: -1, length: 0 }],
  ] as const)
    assert.equal(contextConfidence(eight, p, 3, match), contextConfidence(padded, p, 3, match));
});

/** One simulated calibration reading of a ramp whose token is 1: its probe's confidence, its match, and its true chance of agreeing. */
interface Reading {
  confidence: number;
  match: ContextMatch;
  truth: number;
}

/** 20,000 readings drawn by `draw`, each agreeing with its true chance. */
function simulate(seed: number, draw: (rng: Rng) => Reading): { samples: ContextSamples; truth: number[] } {
  const rng = new Rng(seed);
  const count = 20_000;
  const samples = {
    count,
    confidence: new Float32Array(count),
    token: new Int32Array(count).fill(1),
    match: { token: new Int32Array(count), length: new Int32Array(count) },
    agrees: new Uint8Array(count),
  };
  const truth: number[] = [];
  for (let i = 0; i < count; i++) {
    const reading = draw(rng);
    samples.confidence[i] = reading.confidence;
    samples.match.token[i] = reading.match.token;
    samples.match.length[i] = reading.match.length;
    truth.push(reading.truth);
    samples.agrees[i] = rng.next() < reading.truth ? 1 : 0;
  }
  return { samples, truth };
}

/** The fitted model's mean distance from the true chances. */
function meanError(weights: Float64Array, { samples, truth }: { samples: ContextSamples; truth: number[] }): number {
  let error = 0;
  for (let i = 0; i < samples.count; i++) {
    const match = { token: samples.match.token[i]!, length: samples.match.length[i]! };
    error += Math.abs(contextConfidence(weights, samples.confidence[i]!, 1, match) - truth[i]!);
  }
  return error / samples.count;
}

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));

test('fitting the context model bends the probe where its most confident readings are not surer', () => {
  // Truth: agreement rises with the probe's logit up to 3, then falls back (a loop repeating one confident mistake).
  const simulated = simulate(11, (rng) => {
    const logit = -4 + 12 * rng.next();
    return { confidence: sigmoid(logit), match: { token: -1, length: 0 }, truth: sigmoid(logit - (logit * logit) / 6) };
  });
  const weights = fitContext(simulated.samples);
  assert.ok(weights[8]! < -0.1, `weight of the squared logit ${weights[8]}`);
  assert.ok(meanError(weights, simulated) < 0.03, `mean error ${meanError(weights, simulated)}`);
});

test('fitting the context model finds how much a match says beyond the probe', () => {
  // Truth: the probe is calibrated, and the ramp agreeing with the match adds 2 to its logit, disagreeing takes 2 away.
  const simulated = simulate(7, (rng) => {
    const p = 0.05 + 0.9 * rng.next();
    const hasMatch = rng.next() < 0.7;
    const same = hasMatch && rng.next() < 0.5;
    const match = { token: hasMatch ? (same ? 1 : 2) : -1, length: hasMatch ? 4 : 0 };
    return { confidence: p, match, truth: sigmoid(Math.log(p / (1 - p)) + (hasMatch ? (same ? 2 : -2) : 0)) };
  });
  const weights = fitContext(simulated.samples);
  assert.ok(meanError(weights, simulated) < 0.03, `mean error ${meanError(weights, simulated)}`);
});
