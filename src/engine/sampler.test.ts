import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../util/rng.js';
import { argmax, drawKey, GREEDY, sample, softmax, type SamplingParams } from './sampler.js';

const at = (temperature: number, filters: Partial<SamplingParams> = {}): SamplingParams => ({ ...GREEDY, temperature, ...filters });

function randomLogits(vocab: number, seed: number, spread = 4): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: vocab }, () => spread * (rng.next() - 0.5));
}

/** How often each token is drawn over `draws` keys of one seed. */
function frequencies(logits: Float32Array, params: SamplingParams, draws: number): Float64Array {
  const counts = new Float64Array(logits.length);
  for (let i = 0; i < draws; i++) counts[sample(logits, params, drawKey(7, i))]! += 1 / draws;
  return counts;
}

test('greedy sampling is the argmax, whatever the key', () => {
  const logits = randomLogits(64, 1);
  for (let key = 0; key < 10; key++) assert.equal(sample(logits, GREEDY, key), argmax(logits));
});

test('the same key and logits give the same token; keys differ by seed and by position', () => {
  const logits = randomLogits(64, 2);
  for (let i = 0; i < 50; i++) assert.equal(sample(logits, at(1), drawKey(3, i)), sample(logits, at(1), drawKey(3, i)));
  const tokens = (seed: number) => Array.from({ length: 50 }, (_, i) => sample(logits, at(1), drawKey(seed, i)));
  assert.notDeepEqual(tokens(3), tokens(4));
  assert.ok(new Set(tokens(3)).size > 10, 'positions of one seed draw different tokens');
});

test('draws follow softmax(logits / T), also where most of the vocabulary needs no noise', () => {
  for (const [vocab, spread, temperature] of [
    [16, 4, 1],
    [16, 4, 0.5],
    [2000, 40, 1],
  ] as const) {
    const logits = randomLogits(vocab, 5, spread);
    const draws = 20_000;
    const expected = softmax(logits, temperature);
    const seen = frequencies(logits, at(temperature), draws);
    for (let i = 0; i < vocab; i++) {
      const sigma = Math.sqrt((expected[i]! * (1 - expected[i]!)) / draws);
      assert.ok(Math.abs(seen[i]! - expected[i]!) <= 5 * sigma + 1e-4, `token ${i}: drew ${seen[i]}, expected ${expected[i]}`);
    }
  }
});

test('top-k, top-p and min-p draw only from the tokens they keep, in proportion', () => {
  const logits = Float32Array.from([2, 1, 0.5, 0, -1, -3]);
  const probs = softmax(logits);
  const topK = frequencies(logits, at(1, { topK: 2 }), 20_000);
  assert.deepEqual(
    [...topK.keys()].filter((i) => topK[i]! > 0),
    [0, 1],
  );
  assert.ok(Math.abs(topK[0]! - probs[0]! / (probs[0]! + probs[1]!)) < 0.02);
  const topP = frequencies(logits, at(1, { topP: 0.6 }), 5000);
  assert.deepEqual(
    [...topP.keys()].filter((i) => topP[i]! > 0),
    [0, 1],
  );
  const minP = frequencies(logits, at(1, { minP: 0.2 }), 5000);
  assert.deepEqual(
    [...minP.keys()].filter((i) => minP[i]! > 0),
    [0, 1, 2],
  ); // p = 0.56, 0.21, 0.13, 0.08…: 0.08 < 0.2 × 0.56
});

test('coupled draws: equal distributions pick the same token, close ones almost always', () => {
  const full = randomLogits(512, 9, 8);
  const shifted = full.map((l) => l + 3); // the same distribution
  const rng = new Rng(10);
  const close = full.map((l) => l + 0.05 * (rng.next() - 0.5));
  let same = 0;
  const draws = 2000;
  for (let i = 0; i < draws; i++) {
    const key = drawKey(11, i);
    const token = sample(full, at(0.8, { topP: 0.95 }), key);
    assert.equal(sample(shifted, at(0.8, { topP: 0.95 }), key), token);
    if (sample(close, at(0.8, { topP: 0.95 }), key) === token) same++;
  }
  assert.ok(same / draws > 0.95, `close distributions agreed on ${same} of ${draws} draws`);
});
