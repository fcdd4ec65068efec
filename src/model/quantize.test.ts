import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Tensor } from './checkpoint.js';
import { INT8_BLOCK_SIZE, INT8_ZERO_POINT, quantizeInt8, type Int8Weight } from './quantize.js';

/** What MatMulNBits multiplies by: (code - zero point) * scale, back in [out, in] with the padding dropped. */
function dequantize(q: Int8Weight, inFeatures: number): Float32Array {
  const [outFeatures, blocks] = q.dims;
  const out = new Float32Array(outFeatures * inFeatures);
  for (let row = 0; row < outFeatures; row++) {
    for (let i = 0; i < inFeatures; i++) {
      const block = row * blocks + Math.floor(i / INT8_BLOCK_SIZE);
      out[row * inFeatures + i] = (q.codes[block * INT8_BLOCK_SIZE + (i % INT8_BLOCK_SIZE)]! - INT8_ZERO_POINT) * q.scales[block]!;
    }
  }
  return out;
}

/** A [rows, cols] weight with a different magnitude in every row, and one outlier per row. */
function weight(rows: number, cols: number): Tensor {
  const data = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 1.7) * 0.05 * (1 + Math.floor(i / cols)));
  for (let r = 0; r < rows; r++) data[r * cols + ((r * 7) % cols)] = 0.9 * (r % 2 ? 1 : -1);
  return { dims: [rows, cols], data };
}

test('int8 round trip: every weight within half a step of its block, and the largest exact', () => {
  const w = weight(6, 96);
  const q = quantizeInt8(w);
  assert.deepEqual(q.dims, [6, 3, INT8_BLOCK_SIZE]);
  assert.equal(q.scales.length, 6 * 3);
  const back = dequantize(q, 96);
  for (let row = 0; row < 6; row++) {
    for (let block = 0; block < 3; block++) {
      const values = Array.from(w.data.subarray(row * 96 + block * 32, row * 96 + (block + 1) * 32));
      const maxAbs = Math.max(...values.map(Math.abs));
      const scale = q.scales[row * 3 + block]!;
      assert.ok(Math.abs(scale - maxAbs / 127) <= 1e-7 * maxAbs, `row ${row} block ${block}: scale ${scale}, max |w| ${maxAbs}`);
      values.forEach((v, k) => {
        const i = row * 96 + block * 32 + k;
        const err = Math.abs(back[i]! - v);
        assert.ok(err <= scale / 2 + 1e-7 * maxAbs, `row ${row} block ${block} [${k}]: |${back[i]} - ${v}| = ${err} > scale / 2 = ${scale / 2}`);
        if (Math.abs(v) === maxAbs) assert.ok(err <= 1e-6 * maxAbs, 'the block maximum maps to ±127 exactly');
      });
    }
  }
  // Codes span 1..255 around the zero point: 0 is never needed.
  assert.ok(q.codes.every((c) => c >= 1));
});

test('int8 pads a row whose length is not a multiple of 32 with zero-point codes', () => {
  const inFeatures = 43; // like stories260K's hidden dim (172 = 5 * 32 + 12): the last block is partial
  const w = weight(3, inFeatures);
  const q = quantizeInt8(w);
  assert.deepEqual(q.dims, [3, 2, INT8_BLOCK_SIZE]);
  for (let row = 0; row < 3; row++) {
    const padding = q.codes.subarray((row * 2 + 1) * INT8_BLOCK_SIZE + (inFeatures - INT8_BLOCK_SIZE), (row * 2 + 2) * INT8_BLOCK_SIZE);
    assert.equal(padding.length, 2 * INT8_BLOCK_SIZE - inFeatures);
    assert.ok(
      padding.every((c) => c === INT8_ZERO_POINT),
      `row ${row}: padding decodes to 0`,
    );
    // The partial block's scale comes from its 11 real weights only.
    const tail = Array.from(w.data.subarray(row * inFeatures + INT8_BLOCK_SIZE, (row + 1) * inFeatures));
    assert.ok(Math.abs(q.scales[row * 2 + 1]! - Math.max(...tail.map(Math.abs)) / 127) < 1e-9);
  }
  const back = dequantize(q, inFeatures);
  w.data.forEach((v, i) => assert.ok(Math.abs(back[i]! - v) <= q.scales[Math.floor(i / inFeatures) * 2 + Math.floor((i % inFeatures) / 32)]! / 2 + 1e-9));
});

test('int8 keeps an all-zero block at the zero point with scale 0 (no NaN)', () => {
  const w: Tensor = { dims: [2, 32], data: new Float32Array(64) };
  w.data[40] = -0.5;
  const q = quantizeInt8(w);
  assert.deepEqual(Array.from(q.scales), [0, Math.fround(0.5 / 127)]);
  assert.ok(q.codes.subarray(0, 32).every((c) => c === INT8_ZERO_POINT));
  assert.equal(q.codes[40], INT8_ZERO_POINT - 127);
  const back = dequantize(q, 32);
  assert.ok(back.every((v, i) => (i === 40 ? Math.abs(v + 0.5) < 1e-6 : v === 0)));
});
