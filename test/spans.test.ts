/**
 * Fused spans between ramps on stories260K (5 blocks), with ramps after
 * layers 1 and 3: a span call equals the blocks, ramps and head run one at a
 * time (hidden states, logits, the KV cache), its in-graph decision equals
 * runRamp + scoreLogits for every confidence kind (for 'probe' on trained
 * ramps: the probe runRamp returns), and a decode step that
 * reads both ramps and exits at neither makes three model calls.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EXITS_OFF, type EarlyExitOptions } from '../src/engine/engine.js';
import { LocalEngine } from '../src/engine/local.js';
import { GREEDY } from '../src/engine/sampler.js';
import type { GenerateRequest, TokenEvent } from '../src/engine/types.js';
import { CONFIDENCE_KINDS, scoreLogits } from '../src/exits/index.js';
import { importLlama2c } from '../src/model/llama2c.js';
import { KvCache, type BlockRows, type Model, type TrainRampsMode } from '../src/model/index.js';
import { compileAndLoad, PROMPT_TOKENS } from './helpers.js';
import { requireSharedModels, sharedModelPath } from './shared.js';

const RAMPS = [1, 3];
const TOLERANCE = 1e-5;

/** `fused`: spans run as one call each (small models), else composed from the block, ramp and head sessions. */
async function loadStories(t: { after(fn: () => void): void }, trainRamps: TrainRampsMode, fused = true): Promise<Model> {
  const ckpt = importLlama2c(sharedModelPath('stories260K', 'stories260K.bin'), sharedModelPath('stories260K', 'tok512.bin'));
  return compileAndLoad(t, ckpt, { trainRamps, fused });
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < actual.length; i++) assert.ok(Math.abs(actual[i]! - expected[i]!) <= TOLERANCE, `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
}

/** A KV cache with slot 0 holding the prompt's 13 positions and slot 1 its first 10. */
function prefilled(model: Model): KvCache {
  const kv = new KvCache(model.config, 2, 64);
  for (const [slot, length] of [
    [0, 13],
    [1, 10],
  ] as const) {
    const tokens = PROMPT_TOKENS.slice(0, length);
    let hidden = model.embed(
      tokens,
      tokens.map((_, i) => i),
    );
    for (let layer = 0; layer < model.config.numLayers; layer++) {
      const out = new Float32Array(hidden.length);
      model.runBlock(layer, hidden, out, { firstSlot: slot, numRows: 1, seqLen: length, pastLengths: [0] }, kv);
      hidden = out;
    }
  }
  return kv;
}

/** The second-largest column of a row (the first on ties), as TopK(2) orders it. */
function secondBest(row: Float32Array, best: number): number {
  let second = best === 0 ? 1 : 0;
  for (let i = 0; i < row.length; i++) if (i !== best && row[i]! > row[second]!) second = i;
  return second;
}

// Two shapes of call: a decode step (two rows at different positions) and a catch-up (one row, three positions).
const CALLS: [string, BlockRows][] = [
  ['decode batch', { firstSlot: 0, numRows: 2, seqLen: 1, pastLengths: [13, 10] }],
  ['catch-up', { firstSlot: 1, numRows: 1, seqLen: 3, pastLengths: [10] }],
];

for (const [trainRamps, fused, shape, rows] of (['off', 'auto'] as const).flatMap((r) =>
  [true, false].flatMap((f) => CALLS.map(([s, c]) => [r, f, s, c] as const)),
)) {
  const ramps = trainRamps === 'off' ? 'plain-head' : 'trained';
  const what = fused ? 'three calls (and the whole model in one) equal' : 'composed spans equal';
  test(`spans (${ramps} ramps, ${fused ? 'fused' : 'composed'}, ${shape}): ${what} the blocks, ramps and head one at a time`, async (t) => {
    if (!requireSharedModels(t)) return;
    const model = await loadStories(t, trainRamps, fused);
    const { numLayers, dim, vocabSize } = model.config;
    const positions = rows.numRows * rows.seqLen;
    const tokens = PROMPT_TOKENS.slice(0, positions);
    const input = model.embed(
      tokens,
      Array.from({ length: positions }, (_, i) => rows.pastLengths[Math.floor(i / rows.seqLen)]! + (i % rows.seqLen)),
    );

    // One block at a time, each ramp on its own.
    const byBlock = prefilled(model);
    let hidden = input;
    const blockHidden: Float32Array[] = [];
    const rampLogits = new Map<number, Float32Array>();
    const rampProbes = new Map<number, Float32Array>();
    for (let layer = 0; layer < numLayers; layer++) {
      const out = new Float32Array(hidden.length);
      model.runBlock(layer, hidden, out, rows, byBlock);
      blockHidden.push((hidden = out));
      if (RAMPS.includes(layer)) {
        const logits = new Float32Array(positions * model.rampWidth);
        const probe = model.hasTrainedRamps ? new Float32Array(positions) : undefined;
        model.runRamp(layer, out, positions, logits, probe);
        rampLogits.set(layer, logits);
        if (probe) rampProbes.set(layer, probe);
      }
    }
    const headLogits = new Float32Array(positions * vocabSize);
    model.runHead(hidden, positions, headLogits);

    for (const kind of CONFIDENCE_KINDS) {
      const bySpan = prefilled(model);
      const callsBefore = model.calls;
      let spanInput = input;
      let from = 0;
      for (const layer of RAMPS) {
        const out = { hidden: new Float32Array(positions * dim), logits: new Float32Array(positions * model.rampWidth) };
        const withLogits = kind === 'margin';
        const decision = model.runSpan(from, layer, { kind: 'ramp', confidence: kind, logits: withLogits }, spanInput, rows, bySpan, out)!;
        assertClose(out.hidden, blockHidden[layer]!, `${kind}: hidden after block ${layer}`);
        const expected = rampLogits.get(layer)!;
        if (withLogits) assertClose(out.logits, expected, `ramp ${layer} logits`);
        for (let p = 0; p < positions; p++) {
          const row = expected.subarray(p * model.rampWidth, (p + 1) * model.rampWidth);
          const score = scoreLogits(row, kind);
          // A trained ramp's probe is its own output; plain-head ramps have none and score the margin.
          const probe = kind === 'probe' ? rampProbes.get(layer) : undefined;
          const confidence = probe ? Math.min(1, Math.max(0, probe[p]!)) : score.confidence;
          assert.equal(decision.top[2 * p], score.argmax, `${kind}: ramp ${layer} position ${p} best column`);
          assert.equal(decision.top[2 * p + 1], secondBest(row, score.argmax), `${kind}: ramp ${layer} position ${p} second column`);
          assert.ok(
            Math.abs(decision.confidence[p]! - confidence) <= TOLERANCE,
            `${kind}: ramp ${layer} confidence ${decision.confidence[p]} vs ${confidence}`,
          );
        }
        spanInput = out.hidden;
        from = layer + 1;
      }
      const logits = new Float32Array(positions * vocabSize);
      assert.equal(model.runSpan(from, numLayers - 1, { kind: 'head' }, spanInput, rows, bySpan, { logits }), null);
      // Composed: five blocks, two ramps and their decisions, the head.
      assert.equal(model.calls - callsBefore, fused ? 3 : 10, 'one call per fused span, the ramps and the head inside them');
      assertClose(logits, headLogits, `${kind}: head logits`);
      for (let layer = 0; layer < numLayers; layer++) {
        const [a, b] = [bySpan.view(layer, 0, 2), byBlock.view(layer, 0, 2)];
        assertClose(a.key.data as Float32Array, b.key.data as Float32Array, `layer ${layer} keys`);
        assertClose(a.value.data as Float32Array, b.value.data as Float32Array, `layer ${layer} values`);
      }
    }

    if (!fused) return;
    // The whole model as one span is one call of the fused graph, which then scores every new position.
    const whole = prefilled(model);
    const callsBefore = model.calls;
    const logits = new Float32Array(positions * vocabSize);
    assert.equal(model.runSpan(0, numLayers - 1, { kind: 'head' }, input, rows, whole, { logits }), null);
    assert.equal(model.calls - callsBefore, 1, 'one call');
    assertClose(logits, headLogits, 'whole-model span: head logits at every position');
    for (let layer = 0; layer < numLayers; layer++) {
      const [a, b] = [whole.view(layer, 0, 2), byBlock.view(layer, 0, 2)];
      assertClose(a.key.data as Float32Array, b.key.data as Float32Array, `whole-model span: layer ${layer} keys`);
    }
  });
}

const EXITS_ON: EarlyExitOptions = { ...EXITS_OFF, enabled: true };

async function tokenEvents(engine: LocalEngine, request: Partial<GenerateRequest> & { promptTokens: number[] }): Promise<TokenEvent[]> {
  const events: TokenEvent[] = [];
  const full: GenerateRequest = { id: `r${Math.random()}`, sampling: GREEDY, maxTokens: 12, stop: [], earlyExit: 'on', ...request };
  for await (const event of engine.generate(full)) {
    if (event.type === 'error') throw new Error(event.message);
    if (event.type === 'token') events.push(event);
  }
  return events;
}

const tokensOf = (events: TokenEvent[]) => events.flatMap((e) => e.tokenIds);

test('spans: a decode step reading the ramps after layers 1 and 3, exiting at neither, makes three model calls', async (t) => {
  if (!requireSharedModels(t)) return;
  const model = await loadStories(t, 'auto');
  const engineFor = (earlyExit: EarlyExitOptions) => new LocalEngine(model, { maxRunning: 1, maxStepTokens: 512, maxContext: 64, earlyExit });
  const off = engineFor(EXITS_OFF);
  const on = engineFor(EXITS_ON);
  on.engine.controller!.setThresholds(
    RAMPS.map((layer) => ({ layer, threshold: 0 })),
    { freeze: true },
  ); // never exits
  const promptTokens = model.tokenizer.encode('Once upon a time');

  let before = model.calls;
  const reference = await tokenEvents(off, { promptTokens, earlyExit: 'off' });
  const callsOff = model.calls - before;
  before = model.calls;
  const spans = await tokenEvents(on, { promptTokens });
  const callsOn = model.calls - before;

  assert.deepEqual(tokensOf(spans), tokensOf(reference));
  assert.ok(spans.every((e) => e.exitLayer === null));
  // The prompt pass and the first token are the same fused call either way; each later token is one fused call with exits off.
  const decodeSteps = spans.length - 1;
  assert.equal(callsOn - callsOff, 2 * decodeSteps, 'three calls per decode step: blocks 0-1 and ramp, blocks 2-3 and ramp, block 4 and the head');
});

test('spans: a greedy exit without logits takes the token a draw over the ramp logits takes', async (t) => {
  if (!requireSharedModels(t)) return;
  const model = await loadStories(t, 'auto');
  const engine = new LocalEngine(model, { maxRunning: 1, maxStepTokens: 512, maxContext: 64, earlyExit: EXITS_OFF });
  const promptTokens = model.tokenizer.encode('Tom and his dog');
  const exitOverride = { kind: 'plan' as const, layers: Array.from({ length: 12 }, (_, i) => (i % 3 === 0 ? null : RAMPS[i % 2]!)) };
  const withLogits = await tokenEvents(engine, { promptTokens, exitOverride, logprobs: 1 });
  const decisionOnly = await tokenEvents(engine, { promptTokens, exitOverride });
  assert.ok(decisionOnly.some((e) => e.exitLayer !== null));
  assert.deepEqual(tokensOf(decisionOnly), tokensOf(withLogits));
});
