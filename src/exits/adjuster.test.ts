import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  bestUtilityMs,
  budgetRampCount,
  chooseNewLayer,
  countUsage,
  NO_USAGE,
  planAdjustment,
  shadowBestMs,
  spreadLayers,
  utilityMs,
  type AdjustInput,
  type RampUsage,
} from './adjuster.js';

const blocks = (n: number, ms = 1) => new Array<number>(n).fill(ms);

test('budget: Σ rampMs ≤ rampBudget × (Σ blockMs + head), capped by maxRamps', () => {
  // 8 blocks of 1 ms, ramp 0.2 ms: 10% of 8.2 ms = 0.82 ms = 4 ramps.
  assert.equal(budgetRampCount({ blockMs: blocks(8), rampMs: 0.2 }, 0.1, 10), 4);
  assert.equal(budgetRampCount({ blockMs: blocks(8), rampMs: 0.2 }, 0.1, 3), 3);
  // A tiny model whose head costs a block: 10% of 6 blocks' worth buys no ramp.
  assert.equal(budgetRampCount({ blockMs: blocks(5), rampMs: 1 }, 0.1, 3), 0);
  // An exact fit counts: 20% of (9 + 1) ms is two 1 ms ramps.
  assert.equal(budgetRampCount({ blockMs: blocks(9, 1), rampMs: 1 }, 0.2, 3), 2);
  // … even where floating point lands just under it (0.3 × 3 / 0.1 = 8.999999999999998).
  assert.equal(budgetRampCount({ blockMs: [1, 1.9], rampMs: 0.1 }, 0.3, 10), 9);
  assert.equal(budgetRampCount({ blockMs: blocks(8), rampMs: 0 }, 0.1, 3), 3);
});

test('spread: centres of equal bins over the candidates', () => {
  assert.deepEqual(spreadLayers([0, 1, 2, 3, 4, 5, 6], 3), [1, 3, 5]);
  assert.deepEqual(
    spreadLayers(
      Array.from({ length: 31 }, (_, i) => i),
      3,
    ),
    [5, 15, 25],
  );
  assert.deepEqual(spreadLayers([0, 1, 2, 3], 1), [2]);
  assert.deepEqual(spreadLayers([2, 4], 5), [2, 4]);
  assert.deepEqual(spreadLayers([0, 1, 2], 0), []);
});

test("utility: savings of exits minus overhead of passes, minus the ramp's share of the split cost", () => {
  const costs = { blockMs: blocks(8), rampMs: 0.5 };
  const usage = { ...NO_USAGE, exits: 10, soloExits: 10, passes: 20, share: 12 };
  assert.equal(utilityMs(costs, 3, usage), 10 * 4 - 20 * 0.5);
  assert.equal(utilityMs({ ...costs, splitMs: 2 }, 3, usage), 10 * 4 - 20 * 0.5 - 12 * 2);
});

test('best utility: the most confident tokens exit while their misses fit the target, ties together', () => {
  const costs = { blockMs: blocks(8), rampMs: 0.5, splitMs: 2 };
  // 100 tokens read layer 3: confidences 0.99, 0.98, …; the 5th and the 30th most confident miss.
  const records = Array.from({ length: 100 }, (_, i) => ({
    ramps: [{ layer: 3, confidence: 1 - (i + 1) / 100, agrees: i !== 4 && i !== 29 }],
    exitLayer: null,
  }));
  const split = () => 1;
  // At 0.99, one miss in 100 tokens: the best threshold takes the 29 tokens before the second miss (4 ms saved each).
  assert.equal(bestUtilityMs(records, 3, costs, 0.99, split), 29 * 4 - 71 * 0.5 - 100 * 2);
  // At 0.995 no miss fits: the four before the first.
  assert.equal(bestUtilityMs(records, 3, costs, 0.995, split), 4 * 4 - 96 * 0.5 - 100 * 2);
  // A miss tied with the tokens before it takes them down with it.
  const tied = records.map((r, i) => (i < 5 ? { ...r, ramps: [{ ...r.ramps[0]!, confidence: 1 }] } : r));
  assert.equal(bestUtilityMs(tied, 3, costs, 0.995, split), -100 * 0.5 - 100 * 2);
  // In a batch an exit saves nothing: none is worth making.
  const batched = records.map((r) => ({ ...r, stepRows: 16 }));
  assert.equal(bestUtilityMs(batched, 3, costs, 0.99, split), 29 * 0 - 71 * 0.5 - 100 * 2);
  // Tokens that left at an earlier ramp did not read this one: 50 readers with one miss among them, which fits.
  const earlier = records.map((r, i) => (i % 2 ? { ...r, ramps: [{ layer: 1, confidence: 1, agrees: true }, ...r.ramps], exitLayer: 1 } : r));
  assert.equal(
    bestUtilityMs(earlier, 3, costs, 0.99, () => 0),
    50 * 4,
  );
});

test('utility in a batch: an exit saves only alone in its step, and pays for the catch-up its deferral added', () => {
  const costs = { blockMs: blocks(8), rampMs: 0.5 };
  // 10 exits, 4 of them alone in their step; the catch-ups run apart from the batch cost 3 ms.
  const usage = { ...NO_USAGE, exits: 10, soloExits: 4, overheadMs: 3, passes: 20 };
  assert.equal(utilityMs(costs, 3, usage), 4 * 4 - 3 - 20 * 0.5);
  // Counting records: a batched exit adds its overhead and no solo exit.
  const counted = { ...NO_USAGE };
  countUsage(counted, { ramps: [], exitLayer: 3, stepRows: 16, overheadMs: 0.25 }, true, 1);
  countUsage(counted, { ramps: [], exitLayer: 3 }, true, 1);
  countUsage(counted, { ramps: [], exitLayer: null, stepRows: 16 }, false, 0.5);
  assert.deepEqual(counted, { exits: 2, soloExits: 1, overheadMs: 0.25, passes: 1, share: 2.5 });
});

test('new ramp: middle of the widest stretch without an exit, only where exiting pays', () => {
  const costs = { blockMs: blocks(12), rampMs: 1.5 };
  const all = Array.from({ length: 11 }, (_, i) => i);
  // Active 2 and 5: the widest stretch is 5..11, whose middle is 8.
  assert.equal(chooseNewLayer(all, [2, 5], costs, 12, new Set()), 8);
  assert.equal(chooseNewLayer(all, [2, 5], costs, 12, new Set([8])), 7);
  // Exiting at 10 saves 1 ms < 1.5 ms ramp: never chosen, even when it is all that is left.
  assert.equal(chooseNewLayer([10], [], costs, 12, new Set()), null);
  // Ties go to the earlier layer.
  assert.equal(chooseNewLayer([0, 1, 2, 3, 4, 5, 6], [1, 3, 5], { blockMs: blocks(8), rampMs: 0 }, 8, new Set()), 0);
});

/** An 8-block model with 0.2 ms ramps; the active layers are those `usage` names. */
const adjustInput = (usage: [number, RampUsage][]): AdjustInput => ({
  active: usage.map(([layer]) => layer),
  usage: new Map(usage),
  onProbation: new Set(),
  bestMs: new Map(usage.map(([layer]) => [layer, 1])),
  costs: { blockMs: blocks(8), rampMs: 0.2 },
  numLayers: 8,
  candidates: [0, 1, 2, 3, 4, 5, 6],
  maxActive: 3,
  blocked: new Set(),
});
const use = (exits: number, passes: number): RampUsage => ({ ...NO_USAGE, exits, soloExits: exits, passes });

test('plan: negative once → probation, negative again → deactivate, room → activate', () => {
  const base = adjustInput([
    [1, use(100, 400)],
    [3, use(0, 400)],
    [5, use(50, 200)],
  ]);
  const first = planAdjustment(base);
  assert.deepEqual(first.probation, [3]);
  assert.deepEqual(first.deactivate, []);
  assert.equal(first.activate, null, 'no room');
  assert.equal(first.utilities.get(3), -80);

  const second = planAdjustment({ ...base, onProbation: new Set([3]) });
  assert.deepEqual(second.deactivate, [3]);
  assert.notEqual(second.activate, 3, 'a dropped layer is not tried again at once');
  assert.equal(second.activate, 0);

  const recovered = planAdjustment({ ...base, onProbation: new Set([1]) });
  assert.deepEqual(recovered.recovered, [1]);

  // No threshold could have made layer 3 pay over the period: no probation.
  const hopeless = planAdjustment({ ...base, bestMs: new Map([...base.bestMs, [3, -1]]) });
  assert.deepEqual(hopeless.probation, []);
  assert.deepEqual(hopeless.deactivate, [3]);
});

test('plan: no new ramp beside one that lost time, nor right after the last one goes', () => {
  const base = adjustInput([
    [1, use(0, 400)],
    [5, use(50, 200)],
  ]);
  assert.deepEqual(planAdjustment(base).probation, [1]);
  assert.equal(planAdjustment(base).activate, null, 'layer 1 is losing time');
  const paying = { ...base, usage: new Map([...base.usage, [1, use(100, 300)]]) };
  assert.equal(planAdjustment(paying).activate, 3, 'both pay: room is used');
  const lastGoes = planAdjustment({ ...base, active: [1], onProbation: new Set([1]) });
  assert.deepEqual(lastGoes.deactivate, [1]);
  assert.equal(lastGoes.activate, null);
});

test("shadow: each candidate's best utility as a new ramp, with the split cost only when none is active", () => {
  const costs = { blockMs: blocks(4), rampMs: 0.1, splitMs: 1 };
  // Layer 0 is confident about the one token in 4 it agrees on; layer 2 agrees on 3 in 4 but is sure of none.
  const records = [true, false, false, false].map((agrees0, i) => ({
    ramps: [
      { layer: 0, confidence: agrees0 ? 0.9 : 0.5, agrees: agrees0 },
      { layer: 2, confidence: 0.5, agrees: i < 3 },
    ],
    exitLayer: null,
  }));
  const alone = shadowBestMs(records, [0, 2], costs, 0.99, true);
  assert.ok(Math.abs(alone.get(0)! - (1 * 3 - 3 * 0.1 - 4 * 1)) < 1e-12);
  assert.ok(Math.abs(alone.get(2)! - (-4 * 0.1 - 4 * 1)) < 1e-12);
  const beside = shadowBestMs(records, [0, 2], costs, 0.99, false);
  assert.ok(Math.abs(beside.get(0)! - (1 * 3 - 3 * 0.1)) < 1e-12);
});
