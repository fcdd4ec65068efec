import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ExitController } from './controller.js';
import { informative, synthTrace } from './synthetic.js';
import { formatTrace, parseTrace, readTrace, replay, TRACE_FORMAT, TraceFormatError, TraceWriter, writeTrace, type Trace, type TraceHeader } from './trace.js';

const costs = { blockMs: [1, 1, 1, 1], rampMs: 0.1 };
const header: TraceHeader = { format: TRACE_FORMAT, model: 'tiny', numLayers: 4, candidateLayers: [0, 1, 2], costs, confidence: 'margin' };
const small: Trace = {
  header,
  tokens: [
    // Ramp 1 is confident and right; ramp 0 is not confident.
    {
      ramps: [
        { layer: 0, confidence: 0.1, argmax: 7 },
        { layer: 1, confidence: 0.99, argmax: 5 },
        { layer: 2, confidence: 0.99, argmax: 5 },
      ],
      final: 5,
    },
    // Ramp 0 is confident and wrong.
    {
      ramps: [
        { layer: 0, confidence: 0.98, argmax: 8 },
        { layer: 1, confidence: 0.2, argmax: 9 },
        { layer: 2, confidence: 0.5, argmax: 9 },
      ],
      final: 9,
    },
    // Nobody is confident: the full model streams.
    {
      ramps: [
        { layer: 0, confidence: 0.1, argmax: 1 },
        { layer: 1, confidence: 0.2, argmax: 2 },
        { layer: 2, confidence: 0.3, argmax: 3 },
      ],
      final: 3,
    },
  ],
};

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'offramp-trace-'));

test('write, read and stream-write round-trip', () => {
  const dir = tmp();
  try {
    const file = path.join(dir, 'a.jsonl');
    writeTrace(file, small);
    assert.deepEqual(readTrace(file), small);
    const streamed = path.join(dir, 'b.jsonl');
    const writer = new TraceWriter(streamed, header);
    for (const token of small.tokens) writer.write(token);
    writer.close();
    assert.equal(fs.readFileSync(streamed, 'utf8'), formatTrace(small));
    assert.throws(() => writer.write(small.tokens[0]!), /after close/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('malformed traces name the line', () => {
  assert.throws(() => parseTrace(''), TraceFormatError);
  assert.throws(() => parseTrace('{"format":"other/1"}\n', 'x.jsonl'), /x\.jsonl:1: bad header/);
  const text = formatTrace(small).replace('"final":9', '"final":-1');
  assert.throws(() => parseTrace(text, 't'), /t:3: bad token line/);
  assert.throws(() => parseTrace(formatTrace(small) + '{oops\n', 't'), /t:5: not JSON/);
});

test('replay exits at the first active ramp that clears its threshold and judges it by the final argmax', () => {
  const c = new ExitController({ numLayers: 4, candidateLayers: [0, 1, 2], costs });
  c.setThresholds(
    [
      { layer: 0, threshold: 0.05 },
      { layer: 1, threshold: 0.05 },
    ],
    { freeze: true },
  );
  const result = replay(c, small);
  assert.deepEqual(result.decisions, [
    { exitLayer: 1, agrees: true },
    { exitLayer: 0, agrees: false },
    { exitLayer: null, agrees: true },
  ]);
  assert.equal(result.agreement, 2 / 3);
  assert.equal(result.exitRate, 2 / 3);
  assert.equal(result.savedMs, 2 + 3);
  const state = c.state();
  assert.equal(state.tokens, 3);
  assert.deepEqual(
    state.ramps.map((r) => r.exitRate),
    [1 / 3, 1 / 3],
  );
});

test('deferred feedback (maxDeferred) changes when records arrive, not what they say', () => {
  const trace = synthTrace({
    numLayers: 8,
    costs: { blockMs: new Array<number>(8).fill(1), rampMs: 0.2 },
    tokens: 3_000,
    ramps: new Map([
      [2, informative(0.8)],
      [5, informative(0.9)],
    ]),
  });
  const frozen = () => {
    const c = new ExitController({ numLayers: 8, candidateLayers: [2, 5] });
    c.setThresholds(
      [
        { layer: 2, threshold: 0.15 },
        { layer: 5, threshold: 0.2 },
      ],
      { freeze: true },
    );
    return c;
  };
  const [a, b] = [frozen(), frozen()];
  const now = replay(a, trace);
  const later = replay(b, trace, { maxDeferred: 16 });
  assert.deepEqual(later.decisions, now.decisions);
  assert.deepEqual(b.state().windowedAgreement, a.state().windowedAgreement);
  assert.equal(b.state().tokens, 3_000, 'every record delivered, the tail flushed at the end');
});
