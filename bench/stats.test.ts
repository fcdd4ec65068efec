/**
 * The benchmarks' arithmetic over repeats, with hand-made figures: no model.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { combinedRate, decodesPerMeasurement, median } from './stats.js';

test('combinedRate is the rate over all the work: two equal decodes at 100 and 300 tokens/s make 150, not their mean of 200', () => {
  // 300 tokens each: 3 s and 1 s, so 600 tokens in 4 s.
  assert.equal(combinedRate([100, 300]), 150);
  assert.equal(combinedRate([250]), 250);
});

test('median interpolates between the middle two of an even count', () => {
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([]), null);
});

test('decodesPerMeasurement takes fewer decodes only where fewer already fill the time asked', () => {
  // 256 tokens: at 2,560 tokens/s a decode is 0.1 s, so a second needs 10 (capped at the 8 asked).
  assert.equal(decodesPerMeasurement(2560, 256, 8, 1), 8);
  assert.equal(decodesPerMeasurement(1024, 256, 8, 1), 4);
  // At 75 tokens/s one decode is 3.4 s: one is enough.
  assert.equal(decodesPerMeasurement(75, 256, 8, 1), 1);
});
