/**
 * The controller on a trace recorded from the real stories260K model
 * (test/fixtures, made by bench/record-trace.ts): whatever the constraint,
 * the streamed agreement holds it.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ExitController, readTrace, replay } from './index.js';

const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/stories260K.trace.jsonl', import.meta.url));

test('on the recorded stories260K trace the controller holds each accuracy constraint', () => {
  const trace = readTrace(path.resolve(FIXTURE));
  assert.equal(trace.header.numLayers, 5);
  assert.ok(trace.tokens.length > 2000);
  for (const accuracy of [0.99, 0.95, 0.9]) {
    const controller = new ExitController({
      numLayers: trace.header.numLayers,
      candidateLayers: trace.header.candidateLayers,
      accuracy,
      rampBudget: 0.2,
      costs: trace.header.costs,
    });
    const result = replay(controller, trace, { maxDeferred: 16 });
    assert.ok(result.agreement >= accuracy, `accuracy ${accuracy}: streamed agreement ${result.agreement}`);
    assert.ok(result.exitRate > 0, `accuracy ${accuracy}: some tokens exit`);
  }
});
