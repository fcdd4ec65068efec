import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { TokenizerFiles } from './checkpoint.js';
import { TextTokenizer } from './tokenizer.js';
import { truncateBpeVocabulary } from './vocabulary.js';
import { requireSharedModels, sharedModelPath } from '../../test/shared.js';

function tinyBpe(merges: (string | [string, string])[]): TokenizerFiles {
  return {
    tokenizer: {
      added_tokens: [{ id: 6, content: '<|end|>', special: true }],
      model: { type: 'BPE', vocab: { a: 0, b: 1, c: 2, ab: 3, bc: 4, abc: 5, '<|end|>': 6 }, merges },
    },
    config: { eos_token: '<|end|>', bos_token: { content: '<|end|>' }, unk_token: 'a' },
  };
}

test('keeps the first ids and the merges among them, in either merge format', () => {
  type Merges = (string | [string, string])[];
  const cases: [Merges, Merges][] = [
    [['a b', 'b c', 'ab c'], ['a b']],
    [[['a', 'b'], ['b', 'c'], ['ab', 'c']], [['a', 'b']]],
  ];
  for (const [merges, expected] of cases) {
    const files = tinyBpe(merges);
    const cut = truncateBpeVocabulary(files, 4);
    const model = cut.tokenizer.model as { vocab: Record<string, number>; merges: unknown[] };
    assert.deepEqual(model.vocab, { a: 0, b: 1, c: 2, ab: 3 });
    assert.deepEqual(model.merges, expected);
    assert.deepEqual(cut.tokenizer.added_tokens, []);
    // The tokens that are gone leave the config too.
    assert.deepEqual(cut.config, { unk_token: 'a' });
    // The input is untouched.
    assert.equal(Object.keys((files.tokenizer.model as { vocab: object }).vocab).length, 7);
    assert.equal(files.config?.eos_token, '<|end|>');
  }
  assert.throws(() => truncateBpeVocabulary(tinyBpe([]), 8), RangeError);
  assert.throws(() => truncateBpeVocabulary({ tokenizer: { model: { type: 'Unigram' } } }, 4), /BPE/);
});

test('GPT-2 cut to SmolLM-135M size (49,152) still encodes any text, within the ids', (t) => {
  if (!requireSharedModels(t)) return;
  const dir = sharedModelPath('tokenizers', 'gpt2');
  const files: TokenizerFiles = {
    tokenizer: JSON.parse(fs.readFileSync(`${dir}/tokenizer.json`, 'utf8')) as Record<string, unknown>,
    config: JSON.parse(fs.readFileSync(`${dir}/tokenizer_config.json`, 'utf8')) as Record<string, unknown>,
  };
  const full = TextTokenizer.fromFiles(files);
  const cut = truncateBpeVocabulary(files, 49152);
  const merges = (cut.tokenizer.model as { merges: unknown[] }).merges;
  assert.equal(merges.length, 49152 - 256); // GPT-2: 256 bytes, then merge i is id 256 + i
  const tokenizer = TextTokenizer.fromFiles(cut);
  assert.equal(tokenizer.vocabSize, 49152);
  assert.equal(tokenizer.eosToken, undefined); // <|endoftext|> is id 50256
  const common = 'Once upon a time, there was a little girl who loved the sea.';
  assert.deepEqual(tokenizer.encode(common), full.encode(common));
  for (const text of [common, 'Rare words: gazed, Ġ, antidisestablishmentarianism 😀 你好\n\t 42']) {
    const ids = tokenizer.encode(text);
    assert.ok(ids.every((id) => id < 49152));
    assert.equal(tokenizer.decode(ids), text);
  }
  assert.equal((files.tokenizer.model as { merges: unknown[] }).merges.length, 50000);
});
