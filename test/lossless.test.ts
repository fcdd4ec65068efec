/**
 * Lossless mode end to end: ramps draft, the deep blocks verify, and the
 * text is exits off's, greedy and sampled with a seed. Drafts are forced at
 * every position (a plan), on stories260K's trained ramps and on a tiny
 * random model, so that rejections and rollbacks really happen; the KV
 * cache after each rollback is compared with an exits-off pass over the
 * same tokens. Drafts from the text itself (prompt lookup) are checked on
 * their own, with the draft controller free.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Engine, EXITS_OFF, type EarlyExitOptions } from '../src/engine/engine.js';
import { LocalEngine } from '../src/engine/local.js';
import { GREEDY, type SamplingParams } from '../src/engine/sampler.js';
import type { EngineEvent, GenerateRequest, TokenEvent } from '../src/engine/types.js';
import { importLlama2c } from '../src/model/llama2c.js';
import type { Model } from '../src/model/index.js';
import { compileAndLoad, tinyCheckpoint } from './helpers.js';
import { requireSharedModels, sharedModelPath } from './shared.js';

const EXITS_ON: EarlyExitOptions = { ...EXITS_OFF, enabled: true };
const PROMPTS = ['Once upon a time', 'Tom and his dog', 'Lily wanted to'];
const SAMPLED: SamplingParams = { temperature: 0.8, topP: 0.95, topK: 0, minP: 0 };
const MAX_TOKENS = 48;
/** A broken rollback can leave a sequence decoding forever: fail instead of hanging. */
const LIMIT = { timeout: 60_000 };

async function loadStories(t: { after(fn: () => void): void }): Promise<Model> {
  const ckpt = importLlama2c(sharedModelPath('stories260K', 'stories260K.bin'), sharedModelPath('stories260K', 'tok512.bin'));
  return compileAndLoad(t, ckpt, { trainRamps: 'auto' });
}

const loadTiny = (t: { after(fn: () => void): void }): Promise<Model> => compileAndLoad(t, tinyCheckpoint({ numLayers: 4 }));

/** Drafts at every position after the first (which the prompt pass decides), cycling through the candidate ramps. */
function draftEverywhere(model: Model): GenerateRequest['exitOverride'] {
  const candidates = model.manifest.rampCandidates;
  return { kind: 'plan', layers: Array.from({ length: MAX_TOKENS }, (_, i) => (i === 0 ? null : candidates[Math.floor(i / 5) % candidates.length]!)) };
}

function request(promptTokens: number[], extra: Partial<GenerateRequest>): GenerateRequest {
  return { id: `r${Math.random()}`, promptTokens, sampling: GREEDY, seed: 11, maxTokens: MAX_TOKENS, stop: [], earlyExit: 'off', ...extra };
}

async function run(engine: LocalEngine, req: GenerateRequest): Promise<{ tokens: TokenEvent[]; text: string; finishReason: string }> {
  const tokens: TokenEvent[] = [];
  let text = '';
  for await (const event of engine.generate(req)) {
    if (event.type === 'error') throw new Error(event.message);
    if (event.type === 'token') tokens.push(event);
    text += event.text;
    if (event.type === 'finished') return { tokens, text, finishReason: event.finishReason };
  }
  throw new Error('the stream ended without a finished event');
}

const ids = (events: TokenEvent[]) => events.flatMap((e) => e.tokenIds);

/** Drafts made and drafts accepted so far, over every ramp. */
function draftTotals(engine: Engine): { drafted: number; accepted: number } {
  const ramps = engine.drafts!.state().ramps;
  return { drafted: ramps.reduce((n, r) => n + r.drafted, 0), accepted: ramps.reduce((n, r) => n + r.accepted, 0) };
}

const MODELS: [string, (t: { after(fn: () => void): void }) => Promise<Model>][] = [
  ['stories260K, trained ramps', loadStories],
  ['tiny random model', loadTiny],
];

for (const [name, load] of MODELS) {
  for (const [sampling, label] of [
    [GREEDY, 'greedy'],
    [SAMPLED, 'sampled at 0.8 with a seed'],
  ] as const) {
    test(`lossless (${name}, ${label}): drafts at every position give exits off's text; some are rejected and rolled back`, LIMIT, async (t) => {
      if (!requireSharedModels(t)) return;
      const model = await load(t);
      const engine = new LocalEngine(model, { maxRunning: 4, maxStepTokens: 512, maxContext: model.config.maxSeqLen, earlyExit: EXITS_ON });
      const exitOverride = draftEverywhere(model);
      const prompts = PROMPTS.map((p) => model.tokenizer.encode(p));
      const off = await Promise.all(prompts.map((p) => run(engine, request(p, { sampling }))));
      const lossless = await Promise.all(prompts.map((p) => run(engine, request(p, { sampling, earlyExit: 'lossless', exitOverride }))));
      assert.deepEqual(
        lossless.map((r) => r.text),
        off.map((r) => r.text),
      );
      assert.deepEqual(
        lossless.map((r) => ids(r.tokens)),
        off.map((r) => ids(r.tokens)),
      );
      const verified = lossless.flatMap((r) => r.tokens).filter((e) => e.verified);
      assert.ok(verified.length > 0, 'some drafts were verified and streamed');
      assert.ok(verified.every((e) => e.exitLayer !== null && model.manifest.rampCandidates.includes(e.exitLayer)));
      const { drafted, accepted } = draftTotals(engine.engine);
      assert.ok(accepted > 0 && accepted < drafted, `drafted ${drafted}, accepted ${accepted}: some drafts must be rejected`);
    });
  }
}

test(
  "lossless drafts from the text itself where it repeats (prompt lookup), greedy only: exits off's text; some such drafts are rejected",
  LIMIT,
  async (t) => {
    if (!requireSharedModels(t)) return;
    const model = await loadStories(t);
    // One sequence at a time: a sequence drafts from its text only when it decodes alone.
    const engine = new LocalEngine(model, { maxRunning: 1, maxStepTokens: 512, maxContext: model.config.maxSeqLen, earlyExit: EXITS_ON });
    const contextDrafts = () => engine.engine.drafts!.state().context;
    const guessesKept = () => engine.engine.drafts!.state().lookahead.accepted;
    const same = async (prompt: number[], sampling: SamplingParams): Promise<TokenEvent[]> => {
      // Long enough for stories260K to repeat itself.
      const off = await run(engine, request(prompt, { sampling, maxTokens: 160 }));
      const lossless = await run(engine, request(prompt, { sampling, maxTokens: 160, earlyExit: 'lossless' }));
      assert.deepEqual(ids(lossless.tokens), ids(off.tokens));
      assert.equal(lossless.text, off.text);
      return lossless.tokens.filter((e) => e.verified && e.exitLayer === null);
    };
    const prompts = PROMPTS.map((p) => model.tokenizer.encode(p));
    const fromText: TokenEvent[] = [];
    for (const prompt of prompts) fromText.push(...(await same(prompt, GREEDY)));
    const { drafted, accepted } = contextDrafts();
    assert.ok(accepted > 0 && accepted < drafted, `drafted ${drafted} from the text, accepted ${accepted}: some must be rejected`);
    // Verified drafts that no ramp made: the text's, and the lookahead head's guesses.
    assert.ok(
      fromText.length > 0 && fromText.length <= accepted + guessesKept(),
      `${fromText.length} streamed tokens were drafts from the text or guesses, ${accepted} from the text`,
    );
    // Sampled text keeps too few of them to pay: it drafts none from the text (only the lookahead head's guesses).
    for (const prompt of prompts) await same(prompt, SAMPLED);
    assert.equal(contextDrafts().drafted, drafted);
  },
);

test('lossless: top-k, top-p, min-p, logprobs, max_tokens and the end of the context behave as with exits off', LIMIT, async (t) => {
  if (!requireSharedModels(t)) return;
  const model = await loadTiny(t);
  const maxContext = 40; // the prompt plus up to 36 tokens: some requests run into the context's end mid-run
  const engine = new LocalEngine(model, { maxRunning: 2, maxStepTokens: 512, maxContext, earlyExit: EXITS_ON });
  const promptTokens = model.tokenizer.encode('Tom and his dog');
  const cases: Partial<GenerateRequest>[] = [
    { sampling: { temperature: 1, topP: 0.9, topK: 0, minP: 0 } },
    { sampling: { temperature: 0.7, topP: 1, topK: 5, minP: 0 }, maxTokens: 7 },
    { sampling: { temperature: 1.3, topP: 1, topK: 0, minP: 0.05 }, logprobs: 3 },
    { sampling: GREEDY, logprobs: 2, maxTokens: 1 },
    { sampling: GREEDY, maxTokens: maxContext - promptTokens.length },
    { sampling: { temperature: 0.9, topP: 0.8, topK: 20, minP: 0.01 }, maxTokens: maxContext - promptTokens.length, seed: 5 },
  ];
  for (const extra of cases) {
    const maxTokens = extra.maxTokens ?? 30;
    const off = await run(engine, request(promptTokens, { ...extra, maxTokens }));
    const lossless = await run(engine, request(promptTokens, { ...extra, maxTokens, earlyExit: 'lossless', exitOverride: draftEverywhere(model) }));
    const label = JSON.stringify(extra);
    assert.deepEqual(ids(lossless.tokens), ids(off.tokens), label);
    assert.equal(lossless.finishReason, off.finishReason, label);
    // Logprobs are the full model's (from the verifying pass: the same numbers up to float rounding).
    lossless.tokens.forEach((e, i) => {
      const want = off.tokens[i]!.logprobs;
      assert.equal(e.logprobs === undefined, want === undefined, label);
      if (!e.logprobs || !want) return;
      assert.deepEqual(
        e.logprobs.top.map((x) => x.token),
        want.top.map((x) => x.token),
        label,
      );
      for (const [got, expected] of [[e.logprobs.logprob, want.logprob], ...e.logprobs.top.map((x, k) => [x.logprob, want.top[k]!.logprob])])
        assert.ok(Math.abs(got! - expected!) < 1e-4, `${label}: logprob ${got} vs ${expected}`);
    });
  }
});

test('lossless: after every rollback the KV cache of every layer equals an exits-off pass over the same tokens', LIMIT, async (t) => {
  if (!requireSharedModels(t)) return;
  const model = await loadStories(t);
  const { numLayers, maxSeqLen } = model.config;
  const options = { maxRunning: 1, maxStepTokens: 512, maxContext: maxSeqLen };
  const engine = new Engine(model, { ...options, earlyExit: EXITS_ON }, () => {});
  const promptTokens = model.tokenizer.encode('Tom and his dog');
  engine.add(request(promptTokens, { id: 'drafting', earlyExit: 'lossless', exitOverride: draftEverywhere(model) }));
  let checked = 0;
  while (engine.hasWork) {
    const rejectedBefore = draftTotals(engine);
    engine.step();
    const after = draftTotals(engine);
    const seq = engine.sequence('drafting');
    if (!seq || after.drafted - after.accepted === rejectedBefore.drafted - rejectedBefore.accepted) continue;
    // A rollback: every layer holds exactly the positions before the rejected draft's, plus it.
    const length = seq.layerLengths[0]!;
    assert.ok(seq.layerLengths.every((n) => n === length) && seq.drafts.length === 0 && seq.deferred.length === 0);
    const reference = new Engine(model, { ...options, earlyExit: EXITS_OFF }, () => {});
    reference.add(request(seq.tokens.slice(0, length), { id: 'reference', maxTokens: 2 }));
    reference.step();
    for (let layer = 0; layer < numLayers; layer++) {
      const got = engine.cached('drafting', layer);
      const want = reference.cached('reference', layer);
      assert.equal(got.keys.length, want.keys.length);
      for (const part of ['keys', 'values'] as const)
        got[part].forEach((v, i) => assert.ok(Math.abs(v - want[part][i]!) < 1e-4, `layer ${layer} ${part}[${i}]: ${v} vs ${want[part][i]}`));
    }
    checked++;
  }
  assert.ok(checked > 0, 'no rollback happened');
});

test('lossless: a stop string inside a verified run ends the text where exits off ends it', LIMIT, async (t) => {
  if (!requireSharedModels(t)) return;
  const model = await loadStories(t);
  const engine = new LocalEngine(model, { maxRunning: 2, maxStepTokens: 512, maxContext: model.config.maxSeqLen, earlyExit: EXITS_ON });
  const promptTokens = model.tokenizer.encode('Once upon a time');
  const exitOverride = draftEverywhere(model);
  const free = await run(engine, request(promptTokens, { earlyExit: 'lossless', exitOverride }));
  // A token that was a verified draft with another verified draft after it: the stop string ends inside that run.
  const at = free.tokens.findIndex((e, i) => i > 2 && e.verified && free.tokens[i + 1]?.verified && e.text.trim().length > 1);
  assert.ok(at > 0, 'no run of two verified drafts to stop in');
  const before = free.tokens
    .slice(0, at)
    .map((e) => e.text)
    .join('');
  const stop = free.tokens[at]!.text.trim();
  assert.ok(!before.includes(stop), 'the stop string first appears in that token');
  const off = await run(engine, request(promptTokens, { stop: [stop] }));
  const lossless = await run(engine, request(promptTokens, { stop: [stop], earlyExit: 'lossless', exitOverride }));
  assert.equal(off.finishReason, 'stop');
  assert.equal(lossless.finishReason, 'stop');
  assert.equal(lossless.text, off.text);
  assert.ok(!lossless.text.includes(stop));
});

test('lossless: aborting while drafts wait unverified frees the slot; the other stream and the next request decode exactly', LIMIT, async (t) => {
  if (!requireSharedModels(t)) return;
  const model = await loadStories(t);
  const events: EngineEvent[] = [];
  const options = { maxRunning: 2, maxStepTokens: 512, maxContext: model.config.maxSeqLen, earlyExit: EXITS_ON };
  const engine = new Engine(model, options, (e) => events.push(e));
  const [first, second] = ['Lily wanted to', 'Tom and his dog'].map((p) => model.tokenizer.encode(p)) as [number[], number[]];
  const exitOverride = draftEverywhere(model);
  // Two streams: in a batch a sequence drafts one position per step, so its drafts wait between steps.
  engine.add(request(first, { id: 'aborted', earlyExit: 'lossless', exitOverride }));
  engine.add(request(second, { id: 'kept', earlyExit: 'lossless', exitOverride }));
  while (!(engine.sequence('aborted')?.drafts.length ?? 0)) engine.step();
  engine.abort('aborted');
  engine.step();
  assert.equal(engine.numRunning, 1, 'the aborted request left its slot');
  engine.add(request(first, { id: 'next', earlyExit: 'lossless', exitOverride }));
  while (engine.hasWork) engine.step();
  const finished = new Map(events.flatMap((e) => (e.type === 'finished' ? [[e.requestId, e.finishReason]] : [])));
  assert.deepEqual([...finished].sort(), [
    ['aborted', 'abort'],
    ['kept', 'length'],
    ['next', 'length'],
  ]);
  const tokensOf = (id: string) => events.flatMap((e) => (e.type === 'token' && e.requestId === id ? e.tokenIds : []));
  const local = new LocalEngine(model, { ...options, earlyExit: EXITS_OFF });
  assert.deepEqual(tokensOf('next'), ids((await run(local, request(first, {}))).tokens));
  assert.deepEqual(tokensOf('kept'), ids((await run(local, request(second, {}))).tokens));
});
