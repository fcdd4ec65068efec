import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tuneThresholds, type TuneInput } from './tuner.js';
import type { TokenRecord } from './types.js';

/** One ramp at layer 0 of a 2-block model: exiting saves 1 ms. */
const oneRamp = (records: TokenRecord[], extra: Partial<TuneInput> = {}) =>
  tuneThresholds({ records, layers: [0], start: [0], costs: { blockMs: [1, 1], rampMs: 0 }, target: 0.995, ...extra });

/** Record whose uncertainty at layer 0 is `u`. */
const at0 = (u: number, agrees: boolean): TokenRecord => ({ ramps: [{ layer: 0, confidence: 1 - u, agrees }], exitLayer: null });
const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-9, `${a} vs ${b}`);

test('MIMD: the taken ramp’s step doubles after each move', () => {
  const records = Array.from({ length: 1000 }, (_, r) => at0(r / 1000, true));
  const { moves, thresholds, agreement } = oneRamp(records);
  const path = [0.01, 0.03, 0.07, 0.15, 0.31, 0.63, 1];
  assert.equal(moves.length, path.length);
  moves.forEach((m, i) => close(m.to, path[i]!));
  close(thresholds[0]!, 1);
  assert.equal(agreement, 1);
});

test('MIMD: steps halve when no move is valid; stops once every step is below minStep', () => {
  // Agrees below u = 0.05 only: 5 misses per 1,000 fit the 0.995 target, so the frontier is just past 0.054.
  const records = Array.from({ length: 1000 }, (_, r) => at0(r / 1000, r / 1000 < 0.05));
  const result = oneRamp(records);
  const t = result.thresholds[0]!;
  assert.ok(t > 0.054 && t <= 0.0551, `threshold ${t}`);
  assert.ok(result.agreement >= 0.995);
  assert.ok(
    result.steps.every((s) => s < 0.001),
    `steps ${result.steps}`,
  );
  // Overshoots were refused, not taken: the path never exceeds the frontier.
  assert.ok(result.moves.every((m) => m.to <= 0.0551));
  assert.ok(result.iterations < 100);
});

test('stops at once with minStep = initialStep when nothing is valid', () => {
  const records = Array.from({ length: 100 }, () => at0(0, false));
  const result = oneRamp(records, { initialStep: 0.01, minStep: 0.01 });
  assert.deepEqual(result.thresholds, [0]);
  assert.equal(result.iterations, 1);
});

/** Two ramps at layers 0 and 1 of a 3-block model: exits save 2 and 1 ms. */
function twoRamps(at0Tokens: { n: number; misses: number }, at1Tokens: { n: number; misses: number }) {
  const records: TokenRecord[] = [];
  const push = (u0: number, a0: boolean, u1: number, a1: boolean) =>
    records.push({
      ramps: [
        { layer: 0, confidence: 1 - u0, agrees: a0 },
        { layer: 1, confidence: 1 - u1, agrees: a1 },
      ],
      exitLayer: null,
    });
  for (let i = 0; i < at0Tokens.n; i++) push(0, i >= at0Tokens.misses, 1, true);
  for (let i = 0; i < at1Tokens.n; i++) push(1, true, 0, i >= at1Tokens.misses);
  while (records.length < 1000) push(1, true, 1, true);
  return tuneThresholds({ records, layers: [0, 1], start: [0, 0], costs: { blockMs: [1, 1, 1], rampMs: 0 }, target: 0.99 });
}

test('picks the move with the most saving per agreement lost', () => {
  // Layer 0: 10 exits save 20 ms for 3 misses (6.7 ms per miss); layer 1: 8 exits save 8 ms for 1 miss (8 per miss).
  const { moves } = twoRamps({ n: 10, misses: 3 }, { n: 8, misses: 1 });
  assert.equal(moves[0]!.layer, 1);
  assert.equal(moves[0]!.savingMs, 8);
  assert.equal(moves[0]!.lost, 1);
});

test('a move that saves and loses nothing wins outright', () => {
  // Layer 0 saves only 4 ms but loses nothing; layer 1 saves 20 ms per miss.
  const { moves } = twoRamps({ n: 2, misses: 0 }, { n: 20, misses: 1 });
  assert.deepEqual({ layer: moves[0]!.layer, savingMs: moves[0]!.savingMs, lost: moves[0]!.lost }, { layer: 0, savingMs: 4, lost: 0 });
});

test('overhead counts: exiting earlier also skips later ramps', () => {
  const records: TokenRecord[] = Array.from({ length: 10 }, () => ({
    ramps: [
      { layer: 0, confidence: 1, agrees: true },
      { layer: 1, confidence: 1, agrees: true },
    ],
    exitLayer: null,
  }));
  const r = tuneThresholds({ records, layers: [0, 1], start: [0, 0], costs: { blockMs: [1, 1, 1], rampMs: 0.5 }, target: 1 });
  // First move exits all 10 at layer 0: 2 ms saved each, plus 1 ms of the layer-1 ramp they no longer pay.
  assert.equal(r.moves[0]!.layer, 0);
  assert.equal(r.moves[0]!.savingMs, 30);
});

test('never climbs past the evidence: a ramp nobody could exit from stays at 0', () => {
  const silent = Array.from({ length: 500 }, () => at0(1, true));
  assert.deepEqual(oneRamp(silent).thresholds, [0]);
  // But it crosses a gap to reach data: every token sits at u = 0.5 and agrees.
  const gap = Array.from({ length: 500 }, () => at0(0.5, true));
  const t = oneRamp(gap).thresholds[0]!;
  assert.ok(t > 0.5 && t < 1, `threshold ${t}`);
});

test('records without the ramp (it was inactive then) never exit there', () => {
  const records: TokenRecord[] = Array.from({ length: 100 }, () => ({ ramps: [], exitLayer: null }));
  assert.deepEqual(oneRamp(records).thresholds, [0]);
});

test('drift guard: the newest records must hold their own target', () => {
  // 990 old tokens agree, the 10 newest disagree, all equally confident: 0.99 over the window.
  const records = [...Array.from({ length: 990 }, () => at0(0.001, true)), ...Array.from({ length: 10 }, () => at0(0.001, false))];
  assert.ok(oneRamp(records, { target: 0.99 }).thresholds[0]! > 0);
  assert.deepEqual(oneRamp(records, { target: 0.99, recent: { count: 100, target: 0.99 } }).thresholds, [0]);
});

test('starts from the given thresholds and only raises them; empty window changes nothing', () => {
  const records = Array.from({ length: 1000 }, (_, r) => at0(r / 1000, r / 1000 < 0.05));
  assert.ok(oneRamp(records, { start: [0.3] }).thresholds[0]! >= 0.3);
  const empty = oneRamp([], { start: [0.2] });
  assert.deepEqual(empty.thresholds, [0.2]);
  assert.equal(empty.agreement, 1);
});

test('tokens decoded in a batch save nothing by exiting, so they give the tuner no reason to exit', () => {
  const records = Array.from({ length: 1000 }, (_, r) => at0(r / 1000, true));
  assert.deepEqual(oneRamp(records.map((rec) => ({ ...rec, stepRows: 16 }))).thresholds, [0]);
  assert.deepEqual(oneRamp(records.map((rec) => ({ ...rec, stepRows: 1 }))).thresholds, [1]);
});
