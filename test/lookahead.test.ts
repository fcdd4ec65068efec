/**
 * The lookahead head on stories260K's shipped ramps: the fused graph that
 * carries it computes the same logits and keys and values as the plain
 * fused graph, and lossless decoding drafts its guesses, one sequence at a
 * time and in a batch (each row's guess verified in one call over two
 * positions a row): exits off's text, greedy and sampled, most greedy
 * guesses kept, some rejected, and after each rejection every row's KV
 * cache is an exits-off pass's.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Engine, EXITS_OFF } from '../src/engine/engine.js';
import { LocalEngine } from '../src/engine/local.js';
import { argmax, GREEDY, type SamplingParams } from '../src/engine/sampler.js';
import type { GenerateRequest } from '../src/engine/types.js';
import { importLlama2c } from '../src/model/llama2c.js';
import { KvCache, type Model } from '../src/model/index.js';
import { compileAndLoad, PROMPT_TOKENS } from './helpers.js';
import { requireSharedModels, sharedModelPath } from './shared.js';

async function loadStories(t: { after(fn: () => void): void }): Promise<Model> {
  const ckpt = importLlama2c(sharedModelPath('stories260K', 'stories260K.bin'), sharedModelPath('stories260K', 'tok512.bin'));
  return compileAndLoad(t, ckpt, { trainRamps: 'auto' });
}

test("the fused graph with the lookahead head gives the plain fused graph's logits and KV, and the head's logits per scored position", async (t) => {
  if (!requireSharedModels(t)) return;
  const model = await loadStories(t);
  assert.ok(model.hasLookahead, 'the shipped ramps include a lookahead head');
  const { vocabSize, numLayers } = model.config;
  const seqLen = PROMPT_TOKENS.length;
  const input = model.embed(
    PROMPT_TOKENS,
    PROMPT_TOKENS.map((_, i) => i),
  );
  const rows = { firstSlot: 0, numRows: 1, seqLen, pastLengths: [0] };
  const plainKv = new KvCache(model.config, 1, 64);
  const plain = new Float32Array(seqLen * vocabSize);
  model.runFused(input, rows, plainKv, plain, 'every');
  const guessingKv = new KvCache(model.config, 1, 64);
  const guessing = new Float32Array(seqLen * vocabSize);
  const guesses = new Float32Array(seqLen * model.rampWidth).fill(NaN);
  model.runFused(input.slice(), rows, guessingKv, guessing, 'every', guesses);
  assert.deepEqual(guessing, plain);
  for (let layer = 0; layer < numLayers; layer++) assert.deepEqual(guessingKv.read(layer, 0, seqLen), plainKv.read(layer, 0, seqLen));
  assert.ok(
    guesses.every((logit) => Number.isFinite(logit)),
    'every position has the head logits',
  );
  // Each position's scores differ: the head reads that position's state, not a constant.
  const best = Array.from({ length: seqLen }, (_, p) => argmax(guesses.subarray(p * model.rampWidth, (p + 1) * model.rampWidth)));
  assert.ok(new Set(best).size > 1, `best columns ${best.join(', ')}`);
});

test(
  "lossless drafts the lookahead head's guesses: exits off's text, greedy (most guesses kept, some rejected) and sampled (a draw coupled with the full model's)",
  { timeout: 60_000 },
  async (t) => {
    if (!requireSharedModels(t)) return;
    const model = await loadStories(t);
    // One sequence at a time: the guesses of a sequence decoding alone (a batch is the next test).
    const engine = new LocalEngine(model, {
      maxRunning: 1,
      maxStepTokens: 512,
      maxContext: model.config.maxSeqLen,
      earlyExit: { ...EXITS_OFF, enabled: true },
    });
    const guessed = () => engine.engine.drafts!.state().lookahead;
    const text = async (req: Omit<GenerateRequest, 'id'>): Promise<number[]> => {
      const tokens: number[] = [];
      for await (const event of engine.generate({ ...req, id: `r${Math.random()}` })) {
        if (event.type === 'error') throw new Error(event.message);
        if (event.type === 'token') tokens.push(...event.tokenIds);
      }
      return tokens;
    };
    const sampled: SamplingParams = { temperature: 0.8, topP: 0.95, topK: 0, minP: 0 };
    const same = async (sampling: SamplingParams) => {
      for (const prompt of ['Once upon a time', 'Tom and his dog', 'Lily wanted to']) {
        const req = { promptTokens: model.tokenizer.encode(prompt), sampling, seed: 5, maxTokens: 96, stop: [] };
        assert.deepEqual(
          await text({ ...req, earlyExit: 'lossless' }),
          await text({ ...req, earlyExit: 'off' }),
          `${prompt}, temperature ${sampling.temperature}`,
        );
      }
    };
    await same(GREEDY);
    const { drafted, accepted } = guessed();
    // Three greedy requests of 96 tokens: a guess at most steps; a head that guessed at random would keep almost none.
    assert.ok(drafted >= 60, `${drafted} guesses drafted`);
    assert.ok(accepted > 0.3 * drafted && accepted < drafted, `${accepted} of ${drafted} guesses kept`);
    // Sampled: a guess only where the row drew the full model's most likely token, drawn with the next position's key.
    await same(sampled);
    const afterSampled = guessed();
    assert.ok(afterSampled.drafted - drafted >= 30, `${afterSampled.drafted - drafted} sampled guesses drafted`);
    // Coupled (the guess drawn with its position's key) about 45% hold here; drawn with another key, about a third.
    assert.ok(afterSampled.accepted - accepted > 0.4 * (afterSampled.drafted - drafted), `${afterSampled.accepted - accepted} sampled guesses kept`);
  },
);

test(
  "in a batch each row drafts its guess and one call verifies them all: exits off's text; after a rejected guess every row's KV cache is an exits-off pass's",
  { timeout: 60_000 },
  async (t) => {
    if (!requireSharedModels(t)) return;
    const model = await loadStories(t);
    const { numLayers } = model.config;
    // A short context, which the rows fill to its end side by side.
    const options = { maxRunning: 3, maxStepTokens: 512, maxContext: 72 };
    const prompts = ['Once upon a time', 'Tom and his dog', 'Lily wanted to'].map((p) => model.tokenizer.encode(p));
    const request = (i: number, earlyExit: 'off' | 'lossless'): GenerateRequest => ({
      id: `${earlyExit}-${i}`,
      promptTokens: prompts[i]!,
      sampling: GREEDY,
      maxTokens: options.maxContext - prompts[i]!.length,
      stop: [],
      earlyExit,
    });
    const texts = async (earlyExit: 'off' | 'lossless', onStep?: (engine: Engine) => void): Promise<number[][]> => {
      const out: number[][] = prompts.map(() => []);
      const engine = new Engine(model, { ...options, earlyExit: { ...EXITS_OFF, enabled: true } }, (event) => {
        if (event.type === 'token') out[Number(event.requestId.split('-')[1])]!.push(...event.tokenIds);
      });
      prompts.forEach((_, i) => engine.add(request(i, earlyExit)));
      while (engine.hasWork) {
        engine.step();
        onStep?.(engine);
      }
      return out;
    };
    let checked = 0;
    let rejected = 0;
    let guessed = 0;
    const lossless = await texts('lossless', (engine) => {
      const { drafted, accepted } = engine.drafts!.state().lookahead;
      guessed = drafted;
      if (drafted - accepted === rejected) return;
      rejected = drafted - accepted;
      for (let i = 0; i < prompts.length; i++) {
        const seq = engine.sequence(`lossless-${i}`);
        if (!seq) continue;
        const length = seq.layerLengths[0]!;
        assert.ok(seq.layerLengths.every((n) => n === length) && seq.deferred.length === 0, 'every layer holds the same positions');
        const reference = new Engine(model, { ...options, earlyExit: EXITS_OFF }, () => {});
        reference.add({ ...request(i, 'off'), id: 'reference', promptTokens: seq.tokens.slice(0, length), maxTokens: 2 });
        reference.step();
        for (let layer = 0; layer < numLayers; layer++) {
          const got = engine.cached(`lossless-${i}`, layer);
          const want = reference.cached('reference', layer);
          assert.equal(got.keys.length, want.keys.length);
          for (const part of ['keys', 'values'] as const)
            got[part].forEach((v, k) => assert.ok(Math.abs(v - want[part][k]!) < 1e-4, `row ${i} layer ${layer} ${part}[${k}]: ${v} vs ${want[part][k]}`));
        }
        checked++;
      }
    });
    assert.deepEqual(lossless, await texts('off'));
    assert.ok(rejected > 0 && checked > 0, `${rejected} guesses rejected, ${checked} caches checked`);
    // Three rows of about 65 tokens decoding side by side: a sequence left alone at the end could not have drafted this many.
    assert.ok(guessed >= 60 && rejected < 0.7 * guessed, `${guessed} guesses, ${rejected} rejected`);
  },
);
