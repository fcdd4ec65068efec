/**
 * The benchmarks' arithmetic over repeats, with hand-made figures: no model.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { combinedRate, median } from './stats.js';

test('combinedRate is the rate over all the work: two equal decodes at 100 and 300 tokens/s make 150, not their mean of 200', () => {
  // 300 tokens each: 3 s and 1 s, so 600 tokens in 4 s.
  assert.equal(combinedRate([100, 300]), 150);
  assert.equal(combinedRate([250]), 250);
});

test('median interpolates between the middle two of an even count', () => {
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([]), null);
});
