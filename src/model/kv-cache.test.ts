import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KvCache } from './kv-cache.js';
import { SYNTH_SHAPES } from './synth.js';

const config = { ...SYNTH_SHAPES.stories15M, numLayers: 2, numKvHeads: 2, headDim: 4 };
const stored = (layer: number, row: number, position: number, d: number) => layer * 1e6 + row * 1e3 + position * 4 + d;

/** Appends a distinct value at every (slot, head, position, dim) below `positions` of both layers. */
function fill(kv: KvCache, positions: number): void {
  const rows = { firstSlot: 0, numRows: kv.numSlots, seqLen: positions, pastLengths: new Int32Array(kv.numSlots) };
  for (let layer = 0; layer < 2; layer++) {
    // [slot, head, position, dim], as the graphs return new keys and values; row = slot * 2 + head in the cache.
    const keys = new Float32Array(kv.numSlots * positions * 2 * 4);
    for (let slot = 0; slot < kv.numSlots; slot++) {
      for (let h = 0; h < 2; h++) {
        for (let p = 0; p < positions; p++) {
          for (let d = 0; d < 4; d++) keys[((slot * 2 + h) * positions + p) * 4 + d] = stored(layer, slot * 2 + h, p, d);
        }
      }
    }
    kv.append(
      layer,
      rows,
      keys,
      keys.map((x) => -x),
    );
  }
}

/** Checks the first `positions` of every row of slots 0..slots-1. */
function assertKept(kv: KvCache, positions: number, slots = kv.numSlots): void {
  for (let layer = 0; layer < 2; layer++) {
    const { key, value } = kv.view(layer, 0, kv.numSlots);
    assert.deepEqual(key.dims, [kv.numSlots, 2, kv.capacity, 4]);
    for (let row = 0; row < slots * 2; row++) {
      for (let p = 0; p < positions; p++) {
        const at = (row * kv.capacity + p) * 4;
        assert.equal((key.data as Float32Array)[at + 3], stored(layer, row, p, 3));
        assert.equal((value.data as Float32Array)[at + 1], -stored(layer, row, p, 1));
      }
    }
  }
}

test('the KV cache grows in steps of 32 positions and keeps every stored position', () => {
  const kv = new KvCache(config, 3, 500, 0);
  kv.fit(10);
  assert.equal(kv.capacity, 32);
  fill(kv, 32);
  kv.fit(33);
  assert.equal(kv.capacity, 64);
  assertKept(kv, 32);
  kv.fit(490);
  assert.equal(kv.capacity, 500, 'capped at maxContext');
  assertKept(kv, 32);
  assert.throws(() => kv.fit(501), /exceed/);
});

test('the KV cache shrinks only once the need has stayed at half for 16 fits, keeping what fits', () => {
  const kv = new KvCache(config, 2, 1024, 0);
  kv.fit(300);
  assert.equal(kv.capacity, 320);
  fill(kv, 100);
  kv.fit(170);
  assert.equal(kv.capacity, 320, 'a need above half the capacity does not copy the cache');
  for (let i = 0; i < 15; i++) kv.fit(100);
  kv.fit(200);
  for (let i = 0; i < 15; i++) kv.fit(100);
  assert.equal(kv.capacity, 320, 'a need back above half restarts the count');
  kv.fit(100);
  assert.equal(kv.capacity, 128);
  assertKept(kv, 100);
  kv.fit(300);
  assert.equal(kv.capacity, 320);
  assertKept(kv, 100);
});

test('a change of capacity keeps the slots in use, growing and shrinking', () => {
  const kv = new KvCache(config, 4, 512, 0);
  kv.fit(20);
  fill(kv, 20);
  kv.fit(100, 2);
  assert.equal(kv.capacity, 128);
  assertKept(kv, 20, 2);
  for (let i = 0; i < 16; i++) kv.fit(30, 3);
  assert.equal(kv.capacity, 32);
  assertKept(kv, 20, 2);
});
