/**
 * The llama.cpp peer (node-llama-cpp) on models exported as GGUF: greedy
 * text equal to offramp's on the same weights, so the benchmark's columns
 * compare the same work. stories260K (trained, llama2.c tokenizer), a
 * tiny random Llama with rotate-half rope, grouped-query attention, an
 * untied head and GPT-2's byte-level tokenizer (what the export permutes
 * and converts). Not GPT-2: on a random tiny GPT-2, llama.cpp's greedy
 * text leaves offramp's after some ten tokens (not investigated; ggml's
 * GELU approximation is one suspect), so the GPT-2 export is tested by
 * re-import only (gguf.test.ts).
 *
 * Each model's prompts run one at a time; stories260K's then run all at
 * once too (one context sequence each, their steps batched by
 * node-llama-cpp) and must give the same text. Now and then the peer's
 * batched steps repeat a token in two of the texts at once ("but it was was
 * too high"), at places where offramp's top two logits are 1.7 to 9.5
 * apart, so not a rounding tie: 2 of 25 concurrent runs, and 1 of 6 runs of
 * this test, in one process on 2026-12-06, and one CI run failed on it. Not
 * investigated further (node-llama-cpp 3.21.1). So up to three concurrent
 * runs are made and one must match every text: a peer whose sequences mixed
 * would differ every time. Not the tiny random Llama: there, in runs
 * of 8 x 4 concurrent requests, 0 to 12 of the 32 left the one-at-a-time
 * text, some from the first token on, at places where offramp's top two
 * logits are 0.04 to 0.8 apart (so not a rounding tie), with flash
 * attention on or off and an F32 or F16 KV cache alike; alone, every run
 * matched. Not investigated further (node-llama-cpp 3.21.1's llama.cpp);
 * the bench's "same text" column shows it where it happens.
 *
 * Skipped with a message where node-llama-cpp's prebuilt binary does not
 * load (it never builds one); any other load failure fails.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { LlamaCppTarget } from '../bench/llama-cpp-peer.js';
import { LlamaCppUnavailableError } from '../bench/llama-cpp.js';
import { loadPrompts } from '../bench/prompts.js';
import type { RequestRecord } from '../bench/target.js';
import type { Checkpoint, ModelConfig } from '../src/model/index.js';
import { exportGguf } from '../src/model/gguf-export.js';
import { readTokenizerFiles } from '../src/model/hf-llama.js';
import { importLlama2c } from '../src/model/llama2c.js';
import { randomCheckpoint } from '../src/model/synth.js';
import { compileAndLoad, generateTogether, tempDir } from './helpers.js';
import { requireSharedModels, sharedModelPath } from './shared.js';

const MAX_TOKENS = 48;

/** A tiny random Llama with GPT-2's 50,257-token byte-level vocabulary. */
function tinyLlamaWithGpt2Tokens(): Checkpoint {
  const tokenizer = readTokenizerFiles(sharedModelPath('tokenizers', 'gpt2'));
  const config: ModelConfig = {
    architecture: 'llama',
    dim: 64,
    hiddenDim: 96,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 16,
    vocabSize: 50257,
    maxSeqLen: 128,
    normEps: 1e-5,
    rope: { theta: 10000, layout: 'half' },
    tiedEmbeddings: false,
    attentionBias: false,
    bosTokenId: 50256,
    eosTokenIds: [50256],
  };
  const ckpt = randomCheckpoint(config, 3, tokenizer);
  // Larger weights than 0.02, so greedy choices are far from ties.
  for (const t of ckpt.tensors.values()) if (t.dims.length === 2) t.data.forEach((v, i) => (t.data[i] = v * 10));
  return ckpt;
}

for (const [name, make, concurrently] of [
  ['stories260K', () => importLlama2c(sharedModelPath('stories260K', 'stories260K.bin'), sharedModelPath('stories260K', 'tok512.bin')), true],
  ['a tiny Llama with rotate-half rope and GPT-2 tokens', tinyLlamaWithGpt2Tokens, false],
] as const) {
  test(`llama.cpp peer: greedy text equals offramp's on ${name}${concurrently ? ', one at a time and concurrently' : ''}`, { timeout: 120_000 }, async (t) => {
    if (!requireSharedModels(t)) return;
    const ckpt = make();
    const file = path.join(tempDir(t), 'model.gguf');
    exportGguf(ckpt, file);
    const stories = loadPrompts()
      .filter((p) => p.kind === 'story')
      .slice(0, 4);
    assert.ok(stories.length > 1);
    let peer: LlamaCppTarget;
    try {
      peer = await LlamaCppTarget.load('llama.cpp', file, ckpt.config.maxSeqLen, 1, stories.length);
    } catch (error) {
      if (!(error instanceof LlamaCppUnavailableError)) throw error;
      t.skip(`${error.message}: llama.cpp peer test skipped`);
      return;
    }
    t.after(() => peer.close());

    const model = await compileAndLoad(t, ckpt);
    const promptIds = stories.map((p) => model.tokenizer.encode(p.kind === 'story' ? p.prompt : ''));
    const generated = await generateTogether(model, promptIds, MAX_TOKENS);
    const work = stories.map((prompt, index) => ({ index, prompt, seed: 1 }));

    const expected = stories.map((_, i) => {
      const prefix = model.tokenizer.decode(promptIds[i]!);
      return model.tokenizer.decode([...promptIds[i]!, ...generated[i]!]).slice(prefix.length);
    });
    const check = (records: RequestRecord[], how: string) => {
      for (const [i, prompt] of stories.entries()) {
        const record = records[i]!;
        assert.equal(record.error, null, `${prompt.id} ${how}`);
        assert.equal(record.text, expected[i], `${prompt.id} ${how}`);
        assert.equal(record.outputTokens, generated[i]!.length, `${prompt.id} ${how}: one chunk per token`);
      }
    };

    const alone: RequestRecord[] = [];
    for (const w of work) alone.push(await peer.send(w, performance.now(), MAX_TOKENS, 0));
    check(alone, 'alone');
    if (!concurrently) return;

    // All at once on their own sequences (batched into shared llama_decode calls).
    const runTogether = async () => {
      const now = performance.now();
      const together = await Promise.all(work.map((w) => peer.send(w, now, MAX_TOKENS, 0)));
      // They did run at once: every request had its first token before any of them ended.
      const lastFirstToken = Math.max(...together.map((r) => r.chunkMs[0]!));
      assert.ok(lastFirstToken < Math.min(...together.map((r) => r.endMs)), 'the concurrent requests overlapped');
      return together;
    };
    let together = await runTogether();
    for (let attempt = 2; attempt <= 3; attempt++) {
      const differing = together.filter((r, i) => r.text !== expected[i]).length;
      if (differing === 0) break;
      t.diagnostic(`${differing} of ${together.length} concurrent texts differed from one-at-a-time text; concurrent run ${attempt} of 3`);
      together = await runTogether();
    }
    check(together, 'concurrently');
  });
}
