import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ModelFormatError, type Tensor } from './checkpoint.js';
import { readSafetensors, readSafetensorsDir, writeSafetensors } from './safetensors.js';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'offramp-safetensors-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A safetensors file from a header (an object, or raw text) and data bytes, built by hand. */
function rawFile(header: unknown, data: Uint8Array): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, data]);
}

const u16le = (values: number[]): Uint8Array => new Uint8Array(new Uint16Array(values).buffer);

const tensor = (dims: number[], values: number[]): Tensor => ({ dims, data: Float32Array.from(values) });

test('write then read returns the same tensors', (t) => {
  const file = path.join(tempDir(t), 'model.safetensors');
  const tensors = new Map<string, Tensor>([
    ['b.weight', tensor([2, 3], [1, -2, 3.5, 1e-8, -0, 65504])],
    ['a.bias', tensor([3], [0.25, 3.4e38, -1])],
    ['scalar', tensor([], [7])],
    ['empty', tensor([0, 4], [])],
  ]);
  writeSafetensors(file, tensors);
  // The data section starts 8-byte aligned.
  assert.equal(Number(fs.readFileSync(file).readBigUInt64LE(0)) % 8, 0);
  const back = readSafetensors(file);
  assert.deepEqual([...back.keys()].sort(), [...tensors.keys()].sort());
  for (const [name, t0] of tensors) {
    assert.deepEqual(back.get(name)!.dims, t0.dims, name);
    assert.deepEqual(back.get(name)!.data, t0.data, name);
  }
});

test('decodes F16 and BF16 known values, ignores __metadata__', (t) => {
  const file = path.join(tempDir(t), 'half.safetensors');
  // F16: 1, -2, 0.5, 65504 (max), 2^-24 (smallest subnormal), -0, +inf, NaN
  const f16 = u16le([0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x8000, 0x7c00, 0x7e00]);
  // BF16: 1, -2, 3.140625 (0x4049), 1e-40-ish subnormal 0x0001 = 2^-133
  const bf16 = u16le([0x3f80, 0xc000, 0x4049, 0x0001]);
  const header = {
    __metadata__: { format: 'pt' },
    h: { dtype: 'F16', shape: [2, 4], data_offsets: [0, 16] },
    b: { dtype: 'BF16', shape: [4], data_offsets: [16, 24] },
  };
  // rawFile does not pad the header, so tensors may start at an unaligned offset.
  fs.writeFileSync(file, rawFile(header, Buffer.concat([f16, bf16])));
  const tensors = readSafetensors(file);
  assert.deepEqual([...tensors.keys()].sort(), ['b', 'h']);
  const h = tensors.get('h')!;
  assert.deepEqual(h.dims, [2, 4]);
  assert.deepEqual([...h.data.subarray(0, 7)], [1, -2, 0.5, 65504, 2 ** -24, -0, Infinity]);
  assert.ok(Object.is(h.data[5], -0));
  assert.ok(Number.isNaN(h.data[7]));
  assert.deepEqual([...tensors.get('b')!.data], [1, -2, 3.140625, Math.fround(2 ** -133)]);
});

test('corrupt and truncated files are ModelFormatErrors naming the file', (t) => {
  const dir = tempDir(t);
  const good = path.join(dir, 'good.safetensors');
  writeSafetensors(good, new Map([['w', tensor([4], [1, 2, 3, 4])]]));
  const bytes = fs.readFileSync(good);
  const entry = { dtype: 'F32', shape: [4], data_offsets: [0, 16] };
  const cases: [string, Buffer, RegExp][] = [
    ['too-short', Buffer.from([1, 2, 3]), /too short/],
    ['truncated-data', bytes.subarray(0, bytes.length - 4), /outside the 12-byte data section/],
    ['truncated-header', bytes.subarray(0, 20), /exceeds/],
    ['not-json', rawFile('{"w": ', new Uint8Array()), /not valid JSON/],
    ['array-header', rawFile([1, 2], new Uint8Array()), /not a JSON object/],
    ['unknown-dtype', rawFile({ w: { ...entry, dtype: 'I64', data_offsets: [0, 32] } }, new Uint8Array(32)), /dtype I64/],
    ['bad-entry', rawFile({ w: { dtype: 'F32', shape: [4] } }, new Uint8Array(16)), /bad header entry for tensor w/],
    ['size-mismatch', rawFile({ w: { ...entry, data_offsets: [0, 12] } }, new Uint8Array(16)), /needs 16/],
    ['reversed-offsets', rawFile({ w: { ...entry, data_offsets: [16, 0] } }, new Uint8Array(16)), /outside/],
  ];
  for (const [name, content, message] of cases) {
    const file = path.join(dir, `${name}.safetensors`);
    fs.writeFileSync(file, content);
    assert.throws(
      () => readSafetensors(file),
      (err: unknown) => err instanceof ModelFormatError && err.file === file && message.test(err.message),
      name,
    );
  }
  assert.throws(() => readSafetensors(path.join(dir, 'absent.safetensors')), ModelFormatError);
});

test('readSafetensorsDir reads a single file or the shards of an index', (t) => {
  const dir = tempDir(t);
  assert.throws(() => readSafetensorsDir(dir), /no model.safetensors/);

  writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), new Map([['a', tensor([2], [1, 2])]]));
  writeSafetensors(
    path.join(dir, 'model-00002-of-00002.safetensors'),
    new Map([
      ['b', tensor([1], [3])],
      ['c', tensor([1], [4])],
    ]),
  );
  const index = path.join(dir, 'model.safetensors.index.json');
  const weightMap = { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors', c: 'model-00002-of-00002.safetensors' };
  fs.writeFileSync(index, JSON.stringify({ metadata: { total_size: 16 }, weight_map: weightMap }));
  const sharded = readSafetensorsDir(dir);
  assert.deepEqual([...sharded.tensors.keys()].sort(), ['a', 'b', 'c']);
  assert.deepEqual([...sharded.tensors.get('c')!.data], [4]);
  assert.equal(sharded.fileOf.get('b'), path.join(dir, 'model-00002-of-00002.safetensors'));
  assert.equal(sharded.source, index);

  fs.writeFileSync(index, JSON.stringify({ weight_map: { ...weightMap, d: 'model-00001-of-00002.safetensors' } }));
  assert.throws(() => readSafetensorsDir(dir), /tensor d listed in the index is not in this shard/);
  fs.writeFileSync(index, JSON.stringify({ weight_map: { a: 'model-00003-of-00003.safetensors' } }));
  assert.throws(() => readSafetensorsDir(dir), /shard listed in the index is missing/);
  fs.writeFileSync(index, '{');
  assert.throws(() => readSafetensorsDir(dir), /bad shard index/);

  writeSafetensors(path.join(dir, 'model.safetensors'), new Map([['only', tensor([1], [5])]]));
  const single = readSafetensorsDir(dir);
  assert.deepEqual([...single.tensors.keys()], ['only']);
  assert.equal(single.source, path.join(dir, 'model.safetensors'));
});
