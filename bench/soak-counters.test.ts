/**
 * The soak's counters and judging, with hand-made outcomes: no model, no
 * server. Above all, the warm-up's reset clears every count, so that no part
 * (mismatched, hung) can outgrow its whole (checked, total) in the report.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SoakCounters, type Incident } from './soak-counters.js';
import type { Malformed, Outcome, SoakCase } from './soak-requests.js';

const soakCase: SoakCase = { id: 'short-01', path: '/v1/completions', body: { prompt: 'Once', max_tokens: 16 } };
const SOLO = 'upon a time';

function outcome(fields: Partial<Outcome>): Outcome {
  return {
    status: 200,
    statusAtMs: 1,
    endAtMs: 2,
    text: SOLO,
    finishReason: 'length',
    done: true,
    error: null,
    completionTokens: 0,
    retryAfter: null,
    aborted: false,
    failed: null,
    ...fields,
  };
}

const badJson: Malformed = { name: 'bad JSON', status: 400, path: '/v1/completions', body: '{' };

/** One of everything the load can produce, a mismatched text and a hung request among them. */
function judgeAllKinds(counters: SoakCounters, incidents: Incident[]): void {
  counters.judgeGeneration(incidents, 'stream', soakCase, SOLO, outcome({}));
  counters.judgeGeneration(incidents, 'whole', soakCase, SOLO, outcome({ done: false })); // [DONE] is a stream's; a whole answer is judged by its finish_reason
  counters.judgeGeneration(incidents, 'stream', soakCase, SOLO, outcome({ text: 'upon a dime' }));
  counters.judgeGeneration(incidents, 'stream', soakCase, SOLO, outcome({ status: 0, aborted: true }));
  counters.judgeGeneration(incidents, 'disconnect', soakCase, SOLO, outcome({ status: 0, aborted: true }));
  counters.judgeGeneration(incidents, 'stream', soakCase, SOLO, outcome({ error: { message: 'engine restarting', code: null } }));
  counters.judgeGeneration(incidents, 'burst', soakCase, SOLO, outcome({ status: 429, retryAfter: '1' }));
  counters.judgeMalformed(incidents, badJson, outcome({ status: 400, error: { message: 'bad JSON', code: null } }));
  counters.judgeMalformed(incidents, badJson, outcome({ status: 500, error: { message: 'oops', code: null } }));
  counters.bursts.count += 1;
  counters.bursts.sent += 24;
}

test('judging counts each outcome where it belongs and files an incident for each failure', () => {
  const counters = new SoakCounters();
  const incidents: Incident[] = [];
  judgeAllKinds(counters, incidents);
  assert.equal(counters.total, 9);
  assert.deepEqual(counters.byKind, { stream: 4, whole: 1, disconnect: 1, burst: 1, malformed: 2 });
  assert.deepEqual(counters.byStatus, { 0: 2, 200: 4, 400: 1, 429: 1, 500: 1 });
  assert.deepEqual(counters.streams, { accepted: 3, finished: 2, errorFrames: 1 });
  assert.deepEqual(counters.texts, { checked: 3, exact: 2, mismatched: 1, mismatches: [{ case: 'short-01', expected: SOLO, got: 'upon a dime' }] });
  assert.equal(counters.hung, 1);
  assert.equal(counters.disconnects, 1);
  assert.deepEqual(counters.malformed, { sent: 2, wrongStatus: 1 });
  assert.deepEqual(counters.bursts, { count: 1, sent: 24, rejected429: 1 });
  assert.deepEqual(
    incidents.map((i) => [i.kind, i.excusable, i.what]),
    [
      ['stream', false, 'text differs from its solo answer (short-01)'],
      ['stream', false, 'hung: no complete answer within 60 s (short-01)'],
      ['stream', true, 'error frame: engine restarting'],
      ['malformed', false, 'bad JSON: status 500, not 400'],
    ],
  );
});

test('reset() clears every count, mismatched and hung included, and leaves the incidents alone', () => {
  const counters = new SoakCounters();
  const incidents: Incident[] = [];
  judgeAllKinds(counters, incidents);
  const filed = incidents.length;
  counters.reset();
  assert.deepEqual(counters, new SoakCounters());
  assert.equal(incidents.length, filed, 'a failure during the warm-up still fails the run');
  // Measured phase: one exact answer. Each part is within its whole again.
  counters.judgeGeneration(incidents, 'stream', soakCase, SOLO, outcome({}));
  assert.deepEqual(counters.texts, { checked: 1, exact: 1, mismatched: 0, mismatches: [] });
  assert.equal(counters.hung, 0);
  assert.equal(counters.total, 1);
});

test('reset() gives fresh objects: nothing recorded before it shows through a reference taken before it', () => {
  const counters = new SoakCounters();
  counters.judgeGeneration([], 'stream', soakCase, SOLO, outcome({ text: 'other' }));
  const before = counters.texts;
  counters.reset();
  counters.judgeGeneration([], 'stream', soakCase, SOLO, outcome({ text: 'other again' }));
  assert.equal(before.mismatched, 1);
  assert.deepEqual(counters.texts.mismatches, [{ case: 'short-01', expected: SOLO, got: 'other again' }]);
});
