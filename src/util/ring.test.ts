import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Ring } from './ring.js';

test('ring keeps the newest items, oldest first, and returns what it evicts', () => {
  const ring = new Ring<number>(3);
  assert.deepEqual(ring.last(), []);
  assert.equal(ring.push(1), undefined);
  ring.push(2);
  ring.push(3);
  assert.equal(ring.push(4), 1);
  assert.deepEqual(ring.last(), [2, 3, 4]);
  assert.deepEqual(ring.last(2), [3, 4]);
  assert.deepEqual(ring.last(10), [2, 3, 4]);
  assert.equal(ring.size, 3);
  assert.throws(() => new Ring(0), RangeError);
});
