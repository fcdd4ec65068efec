import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CostMeter } from './cost-meter.js';

test('costs: null until every block is timed; the split cost is blocks + head − fused, once both paths are timed', () => {
  const meter = new CostMeter(2);
  meter.addBlock(0, 0.2);
  assert.equal(meter.snapshot(), null);
  meter.addBlock(1, 0.3);
  assert.deepEqual(meter.snapshot(), { blockMs: [0.2, 0.3], rampMs: 0.3, splitMs: 0 });
  meter.addHead(0.1);
  meter.addRamp(0.05);
  meter.addFused(0.4);
  const costs = meter.snapshot()!;
  assert.equal(costs.rampMs, 0.05);
  assert.ok(Math.abs(costs.splitMs! - (0.2 + 0.3 + 0.1 - 0.4)) < 1e-12);
});

test('costs: a pause inside one timed call does not move the cost', () => {
  const meter = new CostMeter(1);
  for (let i = 0; i < 40; i++) meter.addBlock(0, 0.1);
  meter.addBlock(0, 25); // a garbage-collection pause
  assert.equal(meter.snapshot()!.blockMs[0], 0.1);
});
