/**
 * The llama.cpp peer (node-llama-cpp) on stories260K exported as GGUF:
 * greedy text equal to offramp's on the same file, so the benchmark's
 * columns compare the same work. Skipped with a message where
 * node-llama-cpp's prebuilt binary does not load (it never builds one).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { LlamaCppTarget } from '../bench/llama-cpp-peer.js';
import { loadPrompts } from '../bench/prompts.js';
import { exportGguf } from '../src/model/gguf-export.js';
import { importGguf } from '../src/model/gguf-import.js';
import { TextTokenizer } from '../src/model/index.js';
import { importLlama2c } from '../src/model/llama2c.js';
import { compileAndLoad, generateTogether, tempDir } from './helpers.js';
import { requireSharedModels, sharedModelPath } from './shared.js';

const MAX_TOKENS = 48;

test('llama.cpp peer: greedy text equals offramp on the same GGUF', { timeout: 120_000 }, async (t) => {
  if (!requireSharedModels(t)) return;
  const file = path.join(tempDir(t), 'stories260K.gguf');
  exportGguf(importLlama2c(sharedModelPath('stories260K', 'stories260K.bin'), sharedModelPath('stories260K', 'tok512.bin')), file);
  let peer: LlamaCppTarget;
  try {
    peer = await LlamaCppTarget.load('llama.cpp', file, 512, 1);
  } catch (error) {
    t.skip(`node-llama-cpp did not load (${(error as Error).message.split('\n')[0]}): llama.cpp peer test skipped`);
    return;
  }
  t.after(() => peer.close());
  const stories = loadPrompts().filter((p) => p.kind === 'story').slice(0, 4);
  assert.ok(stories.length > 0);

  const ckpt = importGguf(file);
  const model = await compileAndLoad(t, ckpt);
  const tokenizer = TextTokenizer.fromFiles(ckpt.tokenizer);
  const promptIds = stories.map((p) => tokenizer.encode(p.kind === 'story' ? p.prompt : ''));
  const generated = await generateTogether(model, promptIds, MAX_TOKENS);

  for (const [i, prompt] of stories.entries()) {
    const record = await peer.send({ index: i, prompt, seed: 1 }, performance.now(), MAX_TOKENS, 0);
    assert.equal(record.error, null);
    const prefix = tokenizer.decode(promptIds[i]!);
    const expected = tokenizer.decode([...promptIds[i]!, ...generated[i]!]).slice(prefix.length);
    assert.equal(record.text, expected, `${prompt.id}`);
    assert.equal(record.outputTokens, generated[i]!.length, `${prompt.id}: one chunk per token`);
  }
});
