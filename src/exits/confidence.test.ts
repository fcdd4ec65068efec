import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CONFIDENCE_KINDS, scoreLogits } from './confidence.js';

const row = (...xs: number[]) => new Float32Array(xs);
const close = (actual: number, expected: number, eps = 1e-6) => assert.ok(Math.abs(actual - expected) < eps, `${actual} vs ${expected}`);

test('known distribution: p = [0.5, 0.3, 0.2]', () => {
  const logits = row(Math.log(0.3), Math.log(0.5), Math.log(0.2));
  const h = -(0.5 * Math.log(0.5) + 0.3 * Math.log(0.3) + 0.2 * Math.log(0.2));
  assert.equal(scoreLogits(logits, 'margin').argmax, 1);
  close(scoreLogits(logits, 'margin').confidence, 0.2);
  close(scoreLogits(logits, 'max-prob').confidence, 0.5);
  close(scoreLogits(logits, 'entropy').confidence, 1 - h / Math.log(3));
  close(scoreLogits(logits).confidence, 0.2); // margin is the default
});

test('uniform row: no confidence by margin and entropy, 1/V by max-prob', () => {
  const logits = row(2, 2, 2, 2);
  close(scoreLogits(logits, 'margin').confidence, 0);
  close(scoreLogits(logits, 'max-prob').confidence, 0.25);
  close(scoreLogits(logits, 'entropy').confidence, 0);
  assert.equal(scoreLogits(logits).argmax, 0, 'ties go to the first index');
});

test('peaked row: all kinds near 1; shift-invariant', () => {
  for (const kind of CONFIDENCE_KINDS) {
    const a = scoreLogits(row(0, 60, -5, 1), kind);
    const b = scoreLogits(row(1000, 1060, 995, 1001), kind);
    assert.equal(a.argmax, 1);
    assert.ok(a.confidence > 0.999 && a.confidence <= 1, `${kind}: ${a.confidence}`);
    close(a.confidence, b.confidence, 1e-9);
  }
});

test('edge rows: one word, -Infinity entries, all -Infinity, NaN, empty', () => {
  for (const kind of CONFIDENCE_KINDS) assert.deepEqual(scoreLogits(row(3), kind), { argmax: 0, confidence: 1 });
  close(scoreLogits(row(-Infinity, 0, -Infinity), 'margin').confidence, 1);
  close(scoreLogits(row(-Infinity, 0, 0), 'entropy').confidence, 1 - Math.log(2) / Math.log(3));
  assert.deepEqual(scoreLogits(row(-Infinity, -Infinity), 'margin'), { argmax: 0, confidence: 0 });
  assert.equal(scoreLogits(row(NaN, 1, 0), 'margin').argmax, 1);
  assert.throws(() => scoreLogits(row()), RangeError);
});

test('fast on a 50k-word row', () => {
  const vocab = 50_257;
  const logits = new Float32Array(vocab);
  for (let i = 0; i < vocab; i++) logits[i] = Math.sin(i * 12.9898) * 8;
  for (const kind of CONFIDENCE_KINDS) scoreLogits(logits, kind); // warm up
  const reps = 200;
  const started = performance.now();
  for (let r = 0; r < reps; r++) for (const kind of CONFIDENCE_KINDS) scoreLogits(logits, kind);
  const ms = (performance.now() - started) / (reps * CONFIDENCE_KINDS.length);
  // Two passes and ≤ one exp per word: well under a millisecond here; the bound is loose for noisy CI.
  assert.ok(ms < 5, `${ms.toFixed(3)} ms per row`);
});
