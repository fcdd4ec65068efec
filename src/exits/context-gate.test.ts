import assert from 'node:assert/strict';
import test from 'node:test';
import { ContextDraftGate } from './context-gate.js';

/** Asks the gate `steps` times; returns the steps (1-based) at which it opened. */
function openings(gate: ContextDraftGate, steps: number, accepted = 0): number[] {
  const opened: number[] = [];
  for (let step = 1; step <= steps; step++) {
    if (!gate.opens()) continue;
    opened.push(step);
    gate.record(accepted);
  }
  return opened;
}

test('a sequence whose drafts hold keeps drafting from its text at every step', () => {
  const gate = new ContextDraftGate();
  assert.deepEqual(
    openings(gate, 50, 1),
    Array.from({ length: 50 }, (_, i) => i + 1),
  );
});

test('drafts that never hold close the gate after the trial passes, then probes come twice as far apart, up to one in 64 steps', () => {
  const gate = new ContextDraftGate();
  const opened = openings(gate, 400);
  assert.deepEqual(opened.slice(0, 5), [1, 2, 3, 4, 5], 'the first passes always draft');
  const gaps = opened
    .slice(4)
    .map((step, i, rest) => (i === 0 ? 0 : step - rest[i - 1]!))
    .slice(1);
  assert.deepEqual(gaps.slice(0, 5), [4, 8, 16, 32, 64]);
  assert.ok(
    gaps.slice(5).every((gap) => gap === 64),
    `probes at most one in 64 steps: ${gaps.join(',')}`,
  );
});

test('a probe whose drafts hold opens the gate again', () => {
  const gate = new ContextDraftGate();
  openings(gate, 40); // closed, probing every 16 steps or so by now
  const probe = openings(gate, 64, 3)[0]!;
  assert.ok(probe <= 64, 'a probe came');
  assert.ok(gate.opens() && gate.opens(), 'open at the steps after it');
});

test('about half a draft kept per pass is the line', () => {
  const twoOfThree = new ContextDraftGate();
  for (let pass = 0; pass < 30; pass++) {
    assert.ok(twoOfThree.opens(), `pass ${pass}: two passes in three keeping a draft stay open`);
    twoOfThree.record(pass % 3 === 2 ? 0 : 1);
  }
  const oneOfThree = new ContextDraftGate();
  let pass = 0;
  while (pass < 30 && oneOfThree.opens()) oneOfThree.record(pass++ % 3 === 0 ? 1 : 0);
  assert.ok(pass < 30, 'one pass in three keeping a draft closes the gate');
});
