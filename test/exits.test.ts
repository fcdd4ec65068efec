/**
 * Early exits end to end on stories260K, with plain-head ramps and with the
 * trained ramps that ship in models/: never-exit thresholds change nothing,
 * exits at the oracle layers change no token, and after a catch-up pass the
 * next token's distribution equals a full recompute (KV exact).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EXITS_OFF, type EarlyExitOptions } from '../src/engine/engine.js';
import { LocalEngine } from '../src/engine/local.js';
import { drawKey, GREEDY, sample, type SamplingParams } from '../src/engine/sampler.js';
import type { GenerateRequest, TokenEvent } from '../src/engine/types.js';
import { importLlama2c } from '../src/model/llama2c.js';
import type { Model, TrainRampsMode } from '../src/model/index.js';
import { compiledForward, compileAndLoad } from './helpers.js';
import { requireSharedModels, sharedModelPath } from './shared.js';

const PROMPTS = ['Once upon a time', 'Tom and his dog', 'The sun was hot and', 'Lily wanted to'];
const EXITS_ON: EarlyExitOptions = { ...EXITS_OFF, enabled: true };

/** 'off': plain-head ramps; 'auto': the trained ramps shipped for this checkpoint (installed, not trained). */
const RAMP_KINDS: [string, TrainRampsMode][] = [
  ['plain-head ramps', 'off'],
  ['trained ramps', 'auto'],
];

async function loadStories(t: { after(fn: () => void): void }, trainRamps: TrainRampsMode): Promise<Model> {
  const ckpt = importLlama2c(sharedModelPath('stories260K', 'stories260K.bin'), sharedModelPath('stories260K', 'tok512.bin'));
  const model = await compileAndLoad(t, ckpt, { trainRamps });
  assert.equal(model.hasTrainedRamps, trainRamps === 'auto', 'the shipped ramps match the shared checkpoint');
  return model;
}

function engineFor(model: Model, earlyExit: EarlyExitOptions, maxRunning = 4): LocalEngine {
  return new LocalEngine(model, { maxRunning, maxStepTokens: 512, maxContext: model.config.maxSeqLen, earlyExit });
}

async function tokenEvents(engine: LocalEngine, request: Partial<GenerateRequest> & { promptTokens: number[] }): Promise<TokenEvent[]> {
  const events: TokenEvent[] = [];
  const full: GenerateRequest = { id: `r${Math.random()}`, sampling: GREEDY, maxTokens: 60, stop: [], earlyExit: 'on', ...request };
  for await (const event of engine.generate(full)) {
    if (event.type === 'error') throw new Error(event.message);
    if (event.type === 'token') events.push(event);
  }
  return events;
}

const tokensOf = (events: TokenEvent[]) => events.flatMap((e) => e.tokenIds);

for (const [kind, trainRamps] of RAMP_KINDS) {
  test(`${kind}: with every ramp frozen at never-exit, output is identical to exits off`, async (t) => {
    if (!requireSharedModels(t)) return;
    const model = await loadStories(t, trainRamps);
    const off = engineFor(model, EXITS_OFF);
    const on = engineFor(model, EXITS_ON);
    const controller = on.engine.controller!;
    controller.setThresholds(
      model.manifest.rampCandidates.slice(0, 3).map((layer) => ({ layer, threshold: 0 })),
      { freeze: true },
    );
    const prompts = PROMPTS.map((p) => model.tokenizer.encode(p));
    const a = await Promise.all(prompts.map((promptTokens) => tokenEvents(off, { promptTokens, earlyExit: 'off' })));
    const b = await Promise.all(prompts.map((promptTokens) => tokenEvents(on, { promptTokens })));
    assert.deepEqual(b.map(tokensOf), a.map(tokensOf));
    assert.ok(b.flat().every((e) => e.exitLayer === null));
    assert.ok(controller.state().tokens > 0, 'the ramps were evaluated and fed back');
  });

  test(`${kind}: exits at the oracle layers change no token, and catch-up keeps the KV cache exact`, async (t) => {
    if (!requireSharedModels(t)) return;
    const model = await loadStories(t, trainRamps);
    const engine = engineFor(model, EXITS_OFF);
    for (const prompt of PROMPTS) {
      const promptTokens = model.tokenizer.encode(prompt);
      const traced = await tokenEvents(engine, { promptTokens, exitOverride: { kind: 'trace' }, earlyExit: 'off' });
      // The oracle: the earliest ramp whose argmax is the full model's (the first token comes from the prompt pass).
      const plan = traced.map((e, i) => (i === 0 ? null : (e.trace!.ramps.find((r) => r.token === e.trace!.finalToken)?.layer ?? null)));
      const reference = await tokenEvents(engine, { promptTokens, earlyExit: 'off', logprobs: 3 });
      const exited = await tokenEvents(engine, { promptTokens, exitOverride: { kind: 'plan', layers: plan }, logprobs: 3 });
      assert.deepEqual(tokensOf(exited), tokensOf(reference), prompt);
      assert.deepEqual(
        exited.map((e) => e.exitLayer),
        plan.slice(0, exited.length),
        'tokens exit where planned',
      );
      // A full-model token right after exited ones ran the catch-up pass first: its distribution
      // must equal the one decoded without exits (and a fresh prompt pass over the same tokens).
      const afterCatchUp = exited.map((e, i) => i).filter((i) => i > 1 && plan[i] === null && plan[i - 1] !== null);
      assert.ok(afterCatchUp.length > 0, `${prompt}: no catch-up happened`);
      for (const i of afterCatchUp) {
        const recompute = await tokenEvents(engine, {
          promptTokens: [...promptTokens, ...tokensOf(exited).slice(0, i)],
          maxTokens: 1,
          earlyExit: 'off',
          logprobs: 3,
        });
        for (const other of [reference[i]!, recompute[0]!]) {
          exited[i]!.logprobs!.top.forEach((entry, k) => {
            assert.equal(entry.token, other.logprobs!.top[k]!.token);
            assert.ok(
              Math.abs(entry.logprob - other.logprobs!.top[k]!.logprob) < 1e-4,
              `${prompt} token ${i}: ${entry.logprob} vs ${other.logprobs!.top[k]!.logprob}`,
            );
          });
        }
      }
    }
  });

  test(`${kind}: forced exits in a batch: sequences exiting at different ramps keep their own streams`, async (t) => {
    if (!requireSharedModels(t)) return;
    const model = await loadStories(t, trainRamps);
    const engine = engineFor(model, EXITS_OFF, 4);
    const prompts = PROMPTS.map((p) => model.tokenizer.encode(p));
    // Every other token exits at a different ramp per sequence; tokens may differ from the full model's,
    // but each sequence must equal the same plan run alone.
    const plans = prompts.map((_, s) => Array.from({ length: 60 }, (_, i) => (i % 2 === 1 ? s % 4 : null)));
    const soloPlanned = [];
    for (const [s, promptTokens] of prompts.entries())
      soloPlanned.push(tokensOf(await tokenEvents(engine, { promptTokens, exitOverride: { kind: 'plan', layers: plans[s]! } })));
    const together = await Promise.all(
      prompts.map((promptTokens, s) => tokenEvents(engine, { promptTokens, exitOverride: { kind: 'plan', layers: plans[s]! } })),
    );
    assert.deepEqual(together.map(tokensOf), soloPlanned);
    assert.ok(together.every((events) => events.some((e) => e.exitLayer !== null)));
  });
}

test('temperature 0.8: under coupled draws the agreement the controller counts equals a re-check against the full model', async (t) => {
  if (!requireSharedModels(t)) return;
  const model = await loadStories(t, 'auto');
  const engine = engineFor(model, EXITS_ON);
  const controller = engine.engine.controller!;
  // Low thresholds (an exit wherever the margin is above 0.05), frozen: many tokens leave, some of them wrong, so the count has something to check.
  controller.setThresholds(
    [1, 3].map((layer) => ({ layer, threshold: 0.95 })),
    { freeze: true },
  );
  const sampling: SamplingParams = { temperature: 0.8, topP: 0.95, topK: 0, minP: 0 };
  const { vocabSize } = model.config;
  let exited = 0;
  let disagreed = 0;
  let decoded = 0;
  for (const [i, prompt] of PROMPTS.entries()) {
    const promptTokens = model.tokenizer.encode(prompt);
    const seed = 100 + i;
    const events = await tokenEvents(engine, { promptTokens, sampling, seed, maxTokens: 80 });
    // The re-check: one pass of the full model over the streamed text, each position drawn with its own key.
    const tokens = [...promptTokens, ...tokensOf(events)];
    const { logits } = compiledForward(model, tokens);
    events.forEach((event, k) => {
      if (k > 0) decoded++; // the first token comes from the prompt pass, which no ramp reads
      if (event.exitLayer === null) return;
      const index = promptTokens.length + k;
      const full = sample(logits.subarray((index - 1) * vocabSize, index * vocabSize), sampling, drawKey(seed, index));
      exited++;
      if (full !== event.tokenIds[0]) disagreed++;
    });
  }
  const state = controller.state();
  assert.ok(exited > decoded / 5 && disagreed > 0, `${exited} of ${decoded} tokens left at a ramp, ${disagreed} of them wrong`);
  assert.equal(state.tokens, decoded, 'every decoded token got a verdict');
  assert.equal(Math.round(state.tokens * (1 - state.cumulativeAgreement!)), disagreed, `the re-check found ${disagreed} of ${exited} exited tokens differ`);
});
