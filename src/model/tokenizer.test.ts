import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ModelFormatError, type TokenizerFiles } from './checkpoint.js';
import { readTokenizerFiles } from './hf-llama.js';
import { convertLlama2cTokenizer } from './llama2c-tokenizer.js';
import { IncrementalDecoder, TextTokenizer } from './tokenizer.js';
import { requireSharedModels, sharedModelPath } from '../../test/shared.js';

/**
 * A tiny Llama-style tokenizer (byte fallback, "▁" for spaces), built by
 * hand so these tests need no model files. Ids: 0 <unk>, 1 <s>, 2 </s>,
 * 3..258 <0x00>..<0xFF>, then ▁ a b ▁a ab ▁ab.
 */
function tinyFiles(config: Record<string, unknown> = {}): TokenizerFiles {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  for (const piece of ['▁', 'a', 'b', '▁a', 'ab', '▁ab']) vocab[piece] = Object.keys(vocab).length;
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const tokenizer = {
    version: '1.0',
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: '▁' },
        { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      unk_token: '<unk>',
      fuse_unk: true,
      byte_fallback: true,
      vocab,
      merges: [
        ['▁', 'a'],
        ['a', 'b'],
        ['▁a', 'b'],
      ],
    },
  };
  return { tokenizer, config: { bos_token: '<s>', eos_token: { content: '</s>', special: true }, ...config } };
}

/** The tests' directories lie under one, removed when they end. */
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'offramp-tokenizer-'));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

function tempDir(): string {
  return fs.mkdtempSync(path.join(scratch, 'dir-'));
}

/** Feeds `generated` one id at a time; returns the pieces (flush last). */
function stream(tokenizer: TextTokenizer, prompt: number[], generated: number[]): string[] {
  const decoder = new IncrementalDecoder(tokenizer, prompt);
  const pieces = generated.map((id) => decoder.push(id));
  pieces.push(decoder.flush());
  return pieces;
}

/**
 * Checks the incremental decoder's contract at every split of `ids` into
 * prompt + generated: the pieces add up to decode(all) minus decode(prompt),
 * and no piece carries a broken character the whole text does not have.
 * Splits inside a character are skipped: there decode(prompt) ends in U+FFFD
 * and "minus" means nothing (an encoded prompt never ends that way).
 */
function assertStreamsLikeDecode(tokenizer: TextTokenizer, ids: number[], label: string): void {
  const whole = tokenizer.decode(ids);
  let checked = 0;
  for (let split = 0; split <= ids.length; split++) {
    const prompt = ids.slice(0, split);
    const before = tokenizer.decode(prompt);
    if (!whole.startsWith(before)) continue;
    checked++;
    const pieces = stream(tokenizer, prompt, ids.slice(split));
    assert.equal(pieces.join(''), whole.slice(before.length), `${label}, prompt of ${split} ids`);
    if (!whole.includes('\uFFFD')) {
      for (const piece of pieces) assert.ok(!piece.includes('\uFFFD'), `${label}: piece ${JSON.stringify(piece)} splits a character`);
    }
  }
  assert.ok(checked > ids.length / 2, `${label}: only ${checked} of ${ids.length + 1} splits checked`);
}

test('encodes and decodes with a tokenizer built from files', () => {
  const tokenizer = TextTokenizer.fromFiles(tinyFiles({ chat_template: '{{ messages }}' }));
  assert.equal(tokenizer.vocabSize, 265);
  assert.deepEqual(tokenizer.encode('ab a'), [1, 264, 262]);
  assert.deepEqual(tokenizer.encode('ab a', false), [264, 262]);
  assert.deepEqual(tokenizer.encode(''), [1]);
  // "é" has no piece: its two UTF-8 bytes fall back to byte tokens.
  assert.deepEqual(tokenizer.encode('é', false), [259, 3 + 0xc3, 3 + 0xa9]);
  assert.equal(tokenizer.decode([1, 264, 262, 259, 3 + 0xc3, 3 + 0xa9, 2]), 'ab a é');
  assert.equal(tokenizer.decode([]), '');
  assert.equal(tokenizer.decode([1, 2]), '');
  assert.equal(tokenizer.bosToken, '<s>');
  assert.equal(tokenizer.eosToken, '</s>');
  assert.equal(tokenizer.chatTemplate, '{{ messages }}');
  assert.throws(() => tokenizer.decode([265]), RangeError);
  assert.throws(() => tokenizer.decode([-1]), RangeError);
});

test('a chat template that is not a single string is not used', () => {
  const tokenizer = TextTokenizer.fromFiles(tinyFiles({ chat_template: [{ name: 'default', template: 'x' }] }));
  assert.equal(tokenizer.chatTemplate, undefined);
  assert.equal(TextTokenizer.fromFiles({ tokenizer: tinyFiles().tokenizer }).bosToken, undefined);
});

test('load reads tokenizer.json and the optional tokenizer_config.json, naming a bad file', async () => {
  const files = tinyFiles();
  const dir = tempDir();
  await assert.rejects(
    TextTokenizer.load(dir),
    (error: unknown) => error instanceof ModelFormatError && error.file === path.join(dir, 'tokenizer.json') && /missing/.test(error.message),
  );
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": ');
  await assert.rejects(
    TextTokenizer.load(dir),
    (error: unknown) => error instanceof ModelFormatError && error.file === path.join(dir, 'tokenizer.json') && /invalid JSON/.test(error.message),
  );
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(files.tokenizer));
  const withoutConfig = await TextTokenizer.load(dir);
  assert.deepEqual(withoutConfig.encode('ab'), [1, 264]);
  assert.equal(withoutConfig.eosToken, undefined);

  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), '[1, 2');
  await assert.rejects(
    TextTokenizer.load(dir),
    (error: unknown) => error instanceof ModelFormatError && error.file === path.join(dir, 'tokenizer_config.json'),
  );
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(files.config));
  assert.equal((await TextTokenizer.load(dir)).eosToken, '</s>');

  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({ model: { type: 'Nonsense' } }));
  await assert.rejects(TextTokenizer.load(dir), (error: unknown) => error instanceof ModelFormatError && /not a usable tokenizer/.test(error.message));
});

test('word pieces: the pieces that begin with a letter, not with a leading-space marker, a byte or a special token', () => {
  const tokenizer = TextTokenizer.fromFiles(tinyFiles());
  const pieces = ['▁', 'a', 'b', '▁a', 'ab', '▁ab'];
  assert.deepEqual(
    pieces.map((_, k) => tokenizer.wordPieces[259 + k]),
    [0, 1, 1, 0, 1, 0],
  );
  assert.equal(tokenizer.wordPieces.length, tokenizer.vocabSize);
  assert.equal(
    tokenizer.wordPieces.slice(0, 259).reduce((n, flag) => n + flag, 0),
    0,
    'no special or byte token is a word piece',
  );
});

test('word pieces in byte-level BPE (GPT-2): letters without "Ġ" (space) or another byte stand-in first', (t) => {
  if (!requireSharedModels(t)) return;
  const tokenizer = TextTokenizer.fromFiles(readTokenizerFiles(sharedModelPath('tokenizers', 'gpt2')));
  const flag = (text: string) => {
    const [id, ...rest] = tokenizer.encode(text, false);
    assert.equal(rest.length, 0, `${JSON.stringify(text)} is one token`);
    return tokenizer.wordPieces[id!];
  };
  assert.deepEqual(['the', ' the', '\n', ',', ' ', 'ing'].map(flag), [1, 0, 0, 0, 0, 1]);
});

test('the incremental decoder holds a split character until its last byte arrives', () => {
  const tokenizer = TextTokenizer.fromFiles(tinyFiles());
  const emoji = [...Buffer.from('😀')].map((b) => 3 + b);
  const ids = tokenizer.encode('ab 😀a', false); // ▁ab ▁ <F0> <9F> <98> <80> a
  assert.deepEqual(ids, [264, 259, ...emoji, 260]);
  assert.deepEqual(stream(tokenizer, [1], ids), ['ab', ' ', '', '', '', '😀', 'a', '']);
  assertStreamsLikeDecode(tokenizer, [1, ...ids], 'tiny');
});

test('the incremental decoder passes on invalid bytes once text follows, and flushes what is left', () => {
  const tokenizer = TextTokenizer.fromFiles(tinyFiles());
  // A lone 0xFF can never complete: it is held until the next piece, then emitted as U+FFFD.
  assert.deepEqual(stream(tokenizer, [1], [264, 3 + 0xff, 262]), ['ab', '', '\uFFFD a', '']);
  // A stream that ends inside a character gives its U+FFFD at flush().
  assert.deepEqual(stream(tokenizer, [1], [264, 3 + 0xe4, 3 + 0xb8]), ['ab', '', '', '\uFFFD']);
  // Special tokens decode to nothing.
  assert.deepEqual(stream(tokenizer, [1, 264], [2, 262, 2]), ['', ' a', '', '']);
  // A prompt that ends in many special tokens still gives the space before "a".
  assert.deepEqual(stream(tokenizer, [1, 264, 2, 2, 2, 2, 2, 2, 2], [262]), [' a', '']);
  assertStreamsLikeDecode(tokenizer, [1, 264, 3 + 0xff, 262, 3 + 0xe4, 2, 3 + 0xe4, 3 + 0xb8, 3 + 0xad], 'invalid bytes');
});

const MIXED_TEXTS = [
  'Once upon a time, there was a little dog named Tom.',
  'Tom saw a 🐶 and said "你好!" — then he ran.\nThe end. 😀👍🏽',
  'café, naïve, Ünïcödé; 3.14 and 42!\n\n  spaced   out  ',
  '中文文本 and emoji 🚀🇫🇷 mixed with plain words',
];

test('stories260K: streamed text adds up to decode(all) - decode(prompt), byte-fallback characters whole', (t) => {
  if (!requireSharedModels(t)) return;
  const tokenizer = TextTokenizer.fromFiles(convertLlama2cTokenizer(sharedModelPath('stories260K', 'tok512.bin'), 512));
  const golden = fs.readFileSync(sharedModelPath('stories260K', 'golden-once-upon-a-time.txt'), 'utf8');
  const isByte = (id: number) => id >= 3 && id < 259;
  assert.ok(tokenizer.encode(MIXED_TEXTS[1]!).filter(isByte).length > 10, 'emoji and Chinese fall back to bytes');
  for (const text of [...MIXED_TEXTS, golden]) {
    const ids = tokenizer.encode(text);
    assertStreamsLikeDecode(tokenizer, ids, JSON.stringify(text.slice(0, 20)));
  }
  // The stories model ends a story with BOS or EOS mid-stream; neither shows up.
  const ids = [...tokenizer.encode('Once upon a time'), 2, ...tokenizer.encode('The end.', false)];
  assert.equal(stream(tokenizer, [], ids).join(''), 'Once upon a time The end.');
});

test('stories260K: a prepared directory loads to the same tokenizer', async (t) => {
  if (!requireSharedModels(t)) return;
  const files = convertLlama2cTokenizer(sharedModelPath('stories260K', 'tok512.bin'), 512);
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(files.tokenizer));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(files.config));
  const loaded = await TextTokenizer.load(dir);
  assert.deepEqual(loaded.encode('Once upon a time'), [1, 403, 407, 261, 378]);
  assert.equal(loaded.vocabSize, 512);
  assert.equal(loaded.eosToken, '</s>');
});

test('GPT-2: loads from its directory, streams byte-level pieces whole', async (t) => {
  if (!requireSharedModels(t)) return;
  const tokenizer = await TextTokenizer.load(sharedModelPath('tokenizers', 'gpt2'));
  assert.equal(tokenizer.vocabSize, 50257);
  assert.equal(tokenizer.bosToken, '<|endoftext|>');
  assert.equal(tokenizer.eosToken, '<|endoftext|>');
  assert.equal(tokenizer.chatTemplate, undefined);
  assert.deepEqual(tokenizer.encode('Hello world'), [15496, 995]); // GPT-2 adds no BOS
  // No clean-up of spaces before punctuation: decode gives the text back.
  assert.equal(tokenizer.decode(tokenizer.encode("Hello , world . It 's")), "Hello , world . It 's");
  for (const text of MIXED_TEXTS) {
    const ids = tokenizer.encode(text);
    assertStreamsLikeDecode(tokenizer, ids, JSON.stringify(text.slice(0, 20)));
  }
  const ids = [...tokenizer.encode('The end.'), 50256, ...tokenizer.encode(' 你好')];
  assert.deepEqual(stream(tokenizer, [], ids).join(''), 'The end. 你好');
});
