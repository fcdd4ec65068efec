import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../util/index.js';
import { baselineMsPerToken, cycleExpectation, DraftController, draftMsPerToken } from './drafts.js';
import type { Costs } from './types.js';

/** Five blocks of 0.1 ms, a ramp of 0.02 ms, a head of 0.05 ms, a fused step of 0.4 ms. */
const COSTS: Costs = { blockMs: [0.1, 0.1, 0.1, 0.1, 0.1], rampMs: 0.02, headMs: 0.05, fusedMs: 0.4 };

test('draft cycles: nothing confident drafts nothing; certain, always-right drafts emit the whole run plus one', () => {
  assert.deepEqual(cycleExpectation(0, 0.9, 8), { tokens: 1, drafts: 0, anyDraft: 0 });
  const sure = cycleExpectation(1, 1, 8);
  assert.ok(Math.abs(sure.tokens - 9) < 1e-12 && Math.abs(sure.drafts - 8) < 1e-12);
});

test('draft cycles: the closed sums match a simulation of drafting and verifying', () => {
  const rng = new Rng(5);
  const [p, a, run] = [0.7, 0.8, 4];
  let tokens = 0;
  let drafts = 0;
  const cycles = 200_000;
  for (let c = 0; c < cycles; c++) {
    let d = 0;
    while (d < run && rng.next() < p) d++;
    drafts += d;
    let accepted = 0;
    while (accepted < d && rng.next() < a) accepted++;
    tokens += accepted + 1; // the accepted prefix, then the full model's token
  }
  const expected = cycleExpectation(p, a, run);
  assert.ok(Math.abs(tokens / cycles - expected.tokens) < 0.02, `${tokens / cycles} vs ${expected.tokens}`);
  assert.ok(Math.abs(drafts / cycles - expected.drafts) < 0.02);
});

test('draft cost: the baseline is one call over every block and the head, by the fitted line when there is one', () => {
  const call = { overheadMs: 0.1, blockMs: 0.01, rampMs: 0.005, headMs: 0.02 };
  // A fused median of 0.9 ms (calls over whole batches) must not stand in for one row's step.
  assert.ok(Math.abs(baselineMsPerToken({ ...COSTS, fusedMs: 0.9, call }) - (0.1 + 5 * 0.01 + 0.02)) < 1e-12);
  assert.ok(draftMsPerToken({ ...COSTS, fusedMs: 0.9, call }, 3, 0.1, 0.9, 1, 0) > baselineMsPerToken({ ...COSTS, fusedMs: 0.9, call }));
});

test('draft cost: alone in its step, accepted drafts from an early ramp beat the fused step; in a batch they never do', () => {
  const baseline = baselineMsPerToken(COSTS);
  assert.equal(baseline, 0.4);
  assert.ok(draftMsPerToken(COSTS, 1, 0.9, 0.95, 8, 1) < 0.95 * baseline);
  assert.ok(draftMsPerToken(COSTS, 0, 0.9, 0.95, 8, 1) < draftMsPerToken(COSTS, 2, 0.9, 0.95, 8, 1), 'the same drafts from an earlier ramp cost less');
  assert.ok(draftMsPerToken(COSTS, 1, 0.9, 0.95, 8, 0) > baseline);
  // Drafts that are always wrong only add the shallow steps.
  assert.ok(draftMsPerToken(COSTS, 1, 0.9, 0, 8, 1) > baseline);
});

/** Records from ramp `layer`: confidence uniform in [0, 1], agreeing when confidence > `sureAbove` (else with probability `belowRate`). */
function feed(drafts: DraftController, layer: number, n: number, sureAbove: number, belowRate: number, stepRows = 1, seed = 1): void {
  const rng = new Rng(seed);
  for (let i = 0; i < n; i++) {
    const confidence = rng.next();
    const agrees = confidence > sureAbove || rng.next() < belowRate;
    drafts.record({ ramps: [{ layer, confidence, agrees }], exitLayer: null, stepRows });
  }
}

test('draft tuning: a ramp whose confident drafts hold drafts from about where they stop holding', () => {
  const drafts = new DraftController({ numLayers: 5, candidateLayers: [1, 3], costs: COSTS });
  assert.equal(drafts.plan, null, 'nothing drafts before records');
  feed(drafts, 1, 1_000, 0.3, 0.1);
  const plan = drafts.plan!;
  assert.equal(plan.layer, 1);
  assert.ok(plan.minConfidence > 0.25 && plan.minConfidence < 0.5, `min confidence ${plan.minConfidence}`);
  assert.ok(plan.maxDraft >= 2 && plan.msPerToken! < 0.4);
  assert.ok(drafts.draftsAt(1, 0.9) && !drafts.draftsAt(1, 0.1) && !drafts.draftsAt(3, 0.9));
});

test('draft tuning: drafts that are rarely right, or rows that never decode alone, turn drafting off', () => {
  const wrong = new DraftController({ numLayers: 5, candidateLayers: [1], costs: COSTS });
  feed(wrong, 1, 1_000, 1, 0.3);
  assert.equal(wrong.plan, null);
  const batched = new DraftController({ numLayers: 5, candidateLayers: [1], costs: COSTS });
  feed(batched, 1, 1_000, 0.3, 0.1, 16);
  assert.equal(batched.plan, null);
  // Without measured costs nothing is judged.
  const uncosted = new DraftController({ numLayers: 5, candidateLayers: [1] });
  feed(uncosted, 1, 1_000, 0.3, 0.1);
  assert.equal(uncosted.plan, null);
});

test('draft state: acceptance and mean accepted run per ramp and for drafts from the text, from verifications', () => {
  const drafts = new DraftController({ numLayers: 5, candidateLayers: [1, 2] });
  drafts.recordOutcome({ layer: 1, drafted: 4, accepted: 4 });
  drafts.recordOutcome({ layer: 1, drafted: 4, accepted: 0 });
  drafts.recordOutcome({ layer: 2, drafted: 0, accepted: 0 });
  drafts.recordOutcome({ layer: 'context', drafted: 3, accepted: 1 });
  drafts.recordOutcome({ layer: 'context', drafted: 0, accepted: 0 });
  drafts.countTokens(5, 4);
  const state = drafts.state();
  assert.deepEqual(state.ramps[0], { layer: 1, samples: 0, drafted: 8, accepted: 4, acceptance: 0.5, runs: 2, meanAcceptedRun: 2 });
  assert.equal(state.ramps[1]!.acceptance, null);
  assert.deepEqual(state.context, { drafted: 3, accepted: 1, acceptance: 1 / 3, runs: 1, meanAcceptedRun: 1 });
  assert.equal(state.draftedTokens, 4);
  assert.throws(() => drafts.setPlan({ layer: 4, minConfidence: 0.5, maxDraft: 4 }), /not a candidate/);
});

test('draft clock: a plan whose timed steps do not beat the steps without it is dropped, and waits before drafting again', () => {
  const drafts = new DraftController({ numLayers: 5, candidateLayers: [1], costs: COSTS, minTimedTokens: 50, backoff: 3_000 });
  feed(drafts, 1, 1_000, 0.3, 0.1);
  assert.ok(drafts.plan, 'the model says drafting pays');
  for (let i = 0; i < 20; i++) drafts.recordStep(2.5, 5, true); // 0.5 ms per token
  for (let i = 0; i < 100; i++) drafts.recordStep(0.4, 1, false); // without the plan: 0.4
  feed(drafts, 1, 128, 0.3, 0.1, 1, 2);
  assert.equal(drafts.plan, null);
  assert.equal(drafts.state().drops, 1);
  feed(drafts, 1, 1_000, 0.3, 0.1, 1, 3);
  assert.equal(drafts.plan, null, 'still waiting');
  feed(drafts, 1, 3_000, 0.3, 0.1, 1, 4);
  assert.ok(drafts.plan, 'tried again after the wait');
});

test('draft tuning: a plan must beat what the steps without a plan measured, where that is below the fused step', () => {
  const drafts = new DraftController({ numLayers: 5, candidateLayers: [1], costs: COSTS, minTimedTokens: 50 });
  // Lossless passes over the lookahead head's and the text's drafts emit 2.5 tokens a 0.5 ms pass: 0.2 ms a token.
  for (let i = 0; i < 40; i++) drafts.recordStep(0.5, 2.5, false);
  feed(drafts, 1, 1_000, 0.3, 0.1);
  assert.equal(drafts.plan, null, 'the ramp plan beats the fused step (0.4 ms) but not the 0.2 ms measured without it');
  assert.ok(Math.abs(drafts.state().measured.withoutPlanMsPerToken! - 0.2) < 1e-12);
  const unmeasured = new DraftController({ numLayers: 5, candidateLayers: [1], costs: COSTS, minTimedTokens: 50 });
  feed(unmeasured, 1, 1_000, 0.3, 0.1);
  assert.ok(unmeasured.plan, 'until steps are timed, the fused step is the baseline');
});
