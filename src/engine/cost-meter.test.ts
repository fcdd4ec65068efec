import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CostMeter } from './cost-meter.js';

test('costs: null until every block is timed; the split cost is blocks + head − fused, once both paths are timed', () => {
  const meter = new CostMeter(2);
  meter.addSpan(0, 0, 'hidden', 0.2);
  assert.equal(meter.snapshot(), null);
  meter.addSpan(1, 1, 'hidden', 0.3);
  assert.deepEqual(meter.snapshot(), { blockMs: [0.2, 0.3], rampMs: 0.3, splitMs: 0, headMs: 0, fusedMs: 0 });
});

test('costs: a span call is shared evenly between its blocks and the ramp or head that ends it', () => {
  const meter = new CostMeter(3);
  meter.addSpan(0, 1, 'ramp', 0.3);
  meter.addSpan(2, 2, 'head', 0.4);
  meter.addFused(0.3);
  const costs = meter.snapshot()!;
  costs.blockMs.forEach((ms, i) => assert.ok(Math.abs(ms - [0.1, 0.1, 0.2][i]!) < 1e-12));
  assert.ok(Math.abs(costs.rampMs - 0.1) < 1e-12);
  assert.ok(Math.abs(costs.splitMs! - (0.1 + 0.1 + 0.2 + 0.2 - 0.3)) < 1e-12);
});

test('costs: a pause inside one timed call does not move the cost', () => {
  const meter = new CostMeter(1);
  for (let i = 0; i < 40; i++) meter.addSpan(0, 0, 'hidden', 0.1);
  meter.addSpan(0, 0, 'hidden', 25); // a garbage-collection pause
  assert.equal(meter.snapshot()!.blockMs[0], 0.1);
});

test('costs: a span call is shared by work, so a ramp lighter than a block is charged less than one', () => {
  const meter = new CostMeter(2, { block: 4, ramp: 1, head: 2 });
  meter.addSpan(0, 1, 'ramp', 0.9); // 4 + 4 + 1 units: 0.1 ms each
  meter.addSpan(0, 1, 'head', 1.0); // 4 + 4 + 2 units: 0.1 ms each
  const costs = meter.snapshot()!;
  assert.ok(Math.abs(costs.rampMs - 0.1) < 1e-12, `ramp ${costs.rampMs}`);
  assert.ok(
    costs.blockMs.every((ms) => Math.abs(ms - 0.4) < 1e-12),
    `blocks ${costs.blockMs}`,
  );
});

test('costs: one-row calls of different sizes fit a line: a fixed cost per call plus what each part adds', () => {
  const meter = new CostMeter(4, { block: 2, ramp: 1, head: 4 });
  // Truth: 0.05 ms per call, 0.01 ms per unit of work.
  const truth = (work: number) => 0.05 + 0.01 * work;
  for (let i = 0; i < 3; i++) {
    meter.addSpan(0, 0, 'ramp', truth(3));
    meter.addSpan(1, 3, 'head', truth(10));
    meter.addFused(truth(12));
    meter.addSpan(0, 3, 'head', 99, 16); // a batch of 16 rows: not a one-row call
  }
  const call = meter.snapshot()!.call!;
  assert.ok(Math.abs(call.overheadMs - 0.05) < 1e-9 && Math.abs(call.blockMs - 0.02) < 1e-9);
  assert.ok(Math.abs(call.rampMs - 0.01) < 1e-9 && Math.abs(call.headMs - 0.04) < 1e-9);
});
