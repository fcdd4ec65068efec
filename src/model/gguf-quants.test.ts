import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { readGgufHeader, readTensorBytes, writeGguf, type GgufEntry } from './gguf.js';
import { BF16, dequantize, F16, F32, floatToHalf, Q4_0, Q8_0, quantize } from './gguf-quants.js';
import { INT8_BLOCK_SIZE, INT8_ZERO_POINT, quantizeInt8 } from './quantize.js';

/** [rows, 64] values of varied magnitude per block, with some exact zeros and one block all zero. */
function matrix(rows: number): Float32Array {
  const data = Float32Array.from({ length: rows * 64 }, (_, i) => Math.sin(i * 0.37) * 0.03 * (1 + (i % 5)) * (i % 11 === 0 ? 0 : 1));
  data.fill(0, 64, 96);
  return data;
}

/** Each block's largest magnitude, per value. */
function blockMaxAbs(values: Float32Array): Float32Array {
  const out = new Float32Array(values.length);
  for (let b = 0; b < values.length; b += 32)
    out.fill(
      values.subarray(b, b + 32).reduce((m, v) => Math.max(m, Math.abs(v)), 0),
      b,
      b + 32,
    );
  return out;
}

test('F16 and BF16 decode exactly; floatToHalf rounds to nearest even and handles the edges', () => {
  const halves = [0x0000, 0x8000, 0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x7c00, 0x3555];
  const bytes = new Uint8Array(new Uint16Array(halves).buffer);
  assert.deepEqual(Array.from(dequantize(F16, bytes, halves.length)), [0, -0, 1, -2, 65504, 2 ** -24, 1023 * 2 ** -24, 2 ** -14, Infinity, 0.333251953125]);
  for (const h of halves) assert.equal(floatToHalf(dequantize(F16, new Uint8Array(new Uint16Array([h]).buffer), 1)[0]!), h);
  assert.equal(floatToHalf(1 + 2 ** -11), 0x3c00, 'a tie rounds to the even mantissa');
  assert.equal(floatToHalf(1 + 3 * 2 ** -11), 0x3c02);
  assert.equal(floatToHalf(70000), 0x7c00, 'overflow is infinity');
  assert.equal(floatToHalf(2 ** -26), 0, 'underflow is zero');
  const bf16 = new Uint8Array(new Uint16Array([0x3f80, 0xc0a0]).buffer);
  assert.deepEqual(Array.from(dequantize(BF16, bf16, 2)), [1, -5]);
  const f32 = Float32Array.from([1.5, -2.25e-8]);
  assert.deepEqual(dequantize(F32, quantize(F32, f32), 2), f32);
});

test('Q8_0: within about half a step of each block, and exactly the int8 MatMulNBits blocks of --quantize int8', () => {
  const values = matrix(4);
  const q8 = quantize(Q8_0, values);
  assert.equal(q8.length, (values.length / 32) * 34);
  const restored = dequantize(Q8_0, q8, values.length);
  const maxAbs = blockMaxAbs(values);
  // A step is max/127; the fp16 scale adds up to 2^-11 relative over 127 steps.
  values.forEach((v, i) => assert.ok(Math.abs(restored[i]! - v) <= maxAbs[i]! * (0.5 / 127 + 2 ** -11) + 1e-12, `value ${i}`));
  // quantize.ts on the dequantized values recovers every block's own scale and codes.
  const int8 = quantizeInt8({ dims: [4, 64], data: restored });
  const view = new DataView(q8.buffer);
  for (let block = 0; block < values.length / 32; block++) {
    const scale = dequantize(F16, q8.subarray(block * 34, block * 34 + 2), 1)[0]!;
    assert.equal(int8.scales[block], scale, `block ${block}'s scale`);
    for (let j = 0; j < 32; j++) {
      const code = view.getInt8(block * 34 + 2 + j);
      assert.equal(int8.codes[block * INT8_BLOCK_SIZE + j]! - INT8_ZERO_POINT, scale === 0 ? 0 : code, `block ${block} code ${j}`);
    }
  }
});

test('Q4_0: within one step (max/8) of each block, the largest value exact up to the fp16 scale', () => {
  const values = matrix(3);
  const q4 = quantize(Q4_0, values);
  assert.equal(q4.length, (values.length / 32) * 18);
  const restored = dequantize(Q4_0, q4, values.length);
  const maxAbs = blockMaxAbs(values);
  values.forEach((v, i) => {
    const error = Math.abs(restored[i]! - v);
    assert.ok(error <= (maxAbs[i]! / 8) * (1 + 2 ** -10) + 1e-12, `value ${i}: error ${error}`);
    if (Math.abs(v) === maxAbs[i]) assert.ok(error <= maxAbs[i] * 2 ** -10, `the extreme value ${i}`);
  });
});

test('writeGguf and readGgufHeader round-trip metadata of every type and tensor bytes, aligned to 32', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'offramp-gguf-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'x.gguf');
  const metadata = new Map<string, GgufEntry>([
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['a.u8', { type: 'uint8', value: 255 }],
    ['a.i8', { type: 'int8', value: -128 }],
    ['a.u16', { type: 'uint16', value: 65535 }],
    ['a.i16', { type: 'int16', value: -3 }],
    ['a.u32', { type: 'uint32', value: 4294967295 }],
    ['a.i32', { type: 'int32', value: -7 }],
    ['a.f32', { type: 'float32', value: 0.5 }],
    ['a.bool', { type: 'bool', value: true }],
    ['a.u64', { type: 'uint64', value: 2 ** 40 }],
    ['a.i64', { type: 'int64', value: -(2 ** 40) }],
    ['a.f64', { type: 'float64', value: 0.1 }],
    ['a.strings', { type: 'array', itemType: 'string', values: ['▁a', 'ü', ''] }],
    ['a.floats', { type: 'array', itemType: 'float32', values: [1, -0.25] }],
  ]);
  const embd = Float32Array.from({ length: 3 * 64 }, (_, i) => i / 7);
  const norm = Float32Array.from([1, 2, 3]);
  writeGguf(file, metadata, [
    { name: 'norm', ne: [3], type: F32, data: quantize(F32, norm) },
    { name: 'embd', ne: [64, 3], type: Q8_0, data: quantize(Q8_0, embd) },
  ]);
  const header = readGgufHeader(file);
  assert.equal(header.version, 3);
  assert.deepEqual(Object.fromEntries(header.metadata), {
    'general.architecture': 'llama',
    'a.u8': 255,
    'a.i8': -128,
    'a.u16': 65535,
    'a.i16': -3,
    'a.u32': 4294967295,
    'a.i32': -7,
    'a.f32': 0.5,
    'a.bool': true,
    'a.u64': 2 ** 40,
    'a.i64': -(2 ** 40),
    'a.f64': 0.1,
    'a.strings': ['▁a', 'ü', ''],
    'a.floats': [1, -0.25],
  });
  assert.deepEqual(
    header.tensors.map((x) => [x.name, x.ne, x.type.name, x.fileOffset % 32]),
    [
      ['norm', [3], 'F32', 0],
      ['embd', [64, 3], 'Q8_0', 0],
    ],
  );
  assert.deepEqual(dequantize(F32, readTensorBytes(header, header.tensors[0]!), 3), norm);
  assert.deepEqual(readTensorBytes(header, header.tensors[1]!), Buffer.from(quantize(Q8_0, embd)));
  assert.deepEqual(fs.readdirSync(dir), ['x.gguf'], 'no partial file left');
});
