import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ModelFormatError } from './checkpoint.js';
import { convertLlama2cTokenizer } from './llama2c-tokenizer.js';
import { TextTokenizer } from './tokenizer.js';
import { Rng } from '../util/rng.js';
import { requireSharedModels, sharedModelPath } from '../../test/shared.js';

// ---------------------------------------------------------------------------
// The oracle: llama2.c run.c's build_tokenizer + encode(bos=1, eos=0), ported
// line for line. Pieces are kept as byte strings (latin1), so concatenation
// and lookup are byte-exact like run.c's sprintf + strcmp.

interface ReferenceTokenizer {
  vocab: string[];
  scores: number[];
  lookup: Map<string, number>;
}

function loadReference(file: string): ReferenceTokenizer {
  const bytes = fs.readFileSync(file);
  const vocab: string[] = [];
  const scores: number[] = [];
  for (let offset = 4; offset < bytes.length;) {
    scores.push(bytes.readFloatLE(offset));
    const length = bytes.readInt32LE(offset + 4);
    vocab.push(bytes.subarray(offset + 8, offset + 8 + length).toString('latin1'));
    offset += 8 + length;
  }
  // run.c bsearches a sorted copy; duplicates do not occur, so a map is the same.
  return { vocab, scores, lookup: new Map(vocab.map((piece, id) => [piece, id])) };
}

function referenceEncode(t: ReferenceTokenizer, text: string): number[] {
  const utf8 = Buffer.from(text, 'utf8');
  const tokens: number[] = [1]; // BOS
  if (utf8.length > 0) tokens.push(t.lookup.get(' ')!); // dummy prefix
  let buffer: number[] = [];
  for (let i = 0; i < utf8.length; i++) {
    const c = utf8[i]!;
    if ((c & 0xc0) !== 0x80) buffer = []; // not a continuation byte: a new codepoint starts
    buffer.push(c);
    const next = utf8[i + 1] ?? 0;
    if ((next & 0xc0) === 0x80 && buffer.length < 4) continue;
    const id = t.lookup.get(Buffer.from(buffer).toString('latin1'));
    if (id !== undefined) tokens.push(id);
    else for (const b of buffer) tokens.push(b + 3); // byte fallback: <0x00> is id 3
    buffer = [];
  }
  for (;;) {
    let bestScore = -1e10;
    let bestId = -1;
    let bestIdx = -1;
    for (let i = 0; i < tokens.length - 1; i++) {
      const id = t.lookup.get(t.vocab[tokens[i]!]! + t.vocab[tokens[i + 1]!]!);
      if (id !== undefined && t.scores[id]! > bestScore) {
        bestScore = t.scores[id]!;
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  return tokens;
}

// ---------------------------------------------------------------------------

/** Every tokenizer.bin the tests write lies under one directory, removed when they end. */
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'offramp-tok-'));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** Writes a llama2.c tokenizer.bin holding `pieces` (id order) to a temp file. */
function writeTokenizerBin(pieces: { text: string; score: number }[], maxTokenLength = 16): string {
  const parts: Buffer[] = [Buffer.alloc(4)];
  parts[0]!.writeInt32LE(maxTokenLength);
  for (const { text, score } of pieces) {
    const bytes = Buffer.from(text, 'utf8');
    const head = Buffer.alloc(8);
    head.writeFloatLE(score, 0);
    head.writeInt32LE(bytes.length, 4);
    parts.push(head, bytes);
  }
  const dir = fs.mkdtempSync(path.join(scratch, 'bin-'));
  const file = path.join(dir, 'tokenizer.bin');
  fs.writeFileSync(file, Buffer.concat(parts));
  return file;
}

/** The 259 pieces every llama2.c tokenizer starts with, as llama2.c's export writes them. */
function basePieces(): { text: string; score: number }[] {
  const pieces = [
    { text: '<unk>', score: 0 },
    { text: '\n<s>\n', score: 0 },
    { text: '\n</s>\n', score: 0 },
  ];
  for (let b = 0; b < 256; b++) pieces.push({ text: `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, score: 0 });
  return pieces;
}

/** A tiny vocabulary with a known merge order: " a" beats "ab", and "aab" has two splits. */
function tinyPieces(): { text: string; score: number }[] {
  return [
    ...basePieces(),
    { text: ' a', score: -1 },
    { text: 'ab', score: -2 },
    { text: ' ab', score: -3 },
    { text: 'aab', score: -4 },
    { text: 'aa', score: -5 },
    { text: ' ', score: -6 },
    { text: 'a', score: -7 },
    { text: 'b', score: -8 },
    { text: 'é', score: -9 },
  ];
}

function modelMerges(files: { tokenizer: Record<string, unknown> }): unknown[] {
  const model = files.tokenizer.model as { merges: unknown[] };
  return model.merges;
}

test('merges come from splits of pieces, best merged score first', () => {
  const files = convertLlama2cTokenizer(writeTokenizerBin(tinyPieces()), 268);
  assert.deepEqual(modelMerges(files), [
    ['▁', 'a'],
    ['a', 'b'],
    ['▁a', 'b'], // " ab" splits two ways; the longer left part ranks first
    ['▁', 'ab'],
    ['aa', 'b'],
    ['a', 'ab'],
    ['a', 'a'],
  ]);
  const vocab = (files.tokenizer.model as { vocab: Record<string, number> }).vocab;
  assert.equal(vocab['<unk>'], 0);
  assert.equal(vocab['<s>'], 1);
  assert.equal(vocab['</s>'], 2);
  assert.equal(vocab['<0x0A>'], 13);
  assert.equal(vocab['▁ab'], 261);
  assert.deepEqual(files.config, {
    add_bos_token: true,
    add_eos_token: false,
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    clean_up_tokenization_spaces: false,
    tokenizer_class: 'LlamaTokenizerFast',
  });
});

test('a tiny converted tokenizer encodes and decodes like run.c', () => {
  const file = writeTokenizerBin(tinyPieces());
  const tokenizer = TextTokenizer.fromFiles(convertLlama2cTokenizer(file, 268));
  const reference = loadReference(file);
  for (const text of ['', 'a', 'ab', 'aab', 'aaab', 'ab ab  aab', 'b\na', 'é€', 'x y', ' ', 'aaaa bbbb']) {
    const ids = tokenizer.encode(text);
    assert.deepEqual(ids, referenceEncode(reference, text), JSON.stringify(text));
    assert.equal(tokenizer.decode(ids), text, JSON.stringify(text));
  }
  assert.deepEqual(tokenizer.encode('ab', false), [261]);
});

test('a vocabulary size that does not match the model is refused', () => {
  const file = writeTokenizerBin(tinyPieces());
  assert.throws(
    () => convertLlama2cTokenizer(file, 512),
    (error: unknown) => error instanceof ModelFormatError && error.file === file && /has 268 tokens but the model's vocab_size is 512/.test(error.message),
  );
});

test('a truncated or corrupt tokenizer.bin is refused with what is wrong', () => {
  const good = fs.readFileSync(writeTokenizerBin(tinyPieces()));
  const cases: [string, Buffer, RegExp][] = [
    ['empty', Buffer.alloc(0), /too short/],
    ['cut inside a record header', good.subarray(0, good.length - 6), /truncated: token 267 .* no complete score and length/],
    ['cut inside the bytes', good.subarray(0, good.length - 1), /truncated: token 267 needs 2 bytes/],
    ['bad max_token_length', Buffer.concat([Buffer.from([0, 0, 0, 0]), good.subarray(4)]), /max_token_length is 0/],
  ];
  const negative = Buffer.from(good);
  negative.writeInt32LE(-5, 4 + 4); // token 0's length
  cases.push(['negative length', negative, /token 0 at byte 4 has length -5/]);
  const notUtf8 = Buffer.from(good);
  notUtf8[4 + 8] = 0xff; // first byte of "<unk>"
  cases.push(['not UTF-8', notUtf8, /token 0 at byte 4 is not valid UTF-8/]);
  const misplacedByte = tinyPieces();
  misplacedByte[3] = { text: 'x', score: 0 };
  cases.push(['byte tokens out of place', fs.readFileSync(writeTokenizerBin(misplacedByte)), /token 3 is "x", expected the byte token <0x00>/]);
  const duplicate = tinyPieces();
  duplicate.push({ text: ' a', score: -10 });
  cases.push(['duplicate piece', fs.readFileSync(writeTokenizerBin(duplicate)), /tokens 259 and 268 are both "▁a"/]);

  for (const [name, bytes, pattern] of cases) {
    const file = writeTokenizerBin([]);
    fs.writeFileSync(file, bytes);
    const vocabSize = name === 'duplicate piece' ? 269 : 268;
    assert.throws(
      () => convertLlama2cTokenizer(file, vocabSize),
      (error: unknown) => error instanceof ModelFormatError && pattern.test(error.message),
      name,
    );
  }
  assert.throws(() => convertLlama2cTokenizer('/nonexistent/tok.bin', 512), ModelFormatError);
});

// ---------------------------------------------------------------------------
// The real tokenizers in ../shared/models.

/** A seeded PRNG, so fuzz failures reproduce. */
function rng(seed: number): () => number {
  const generator = new Rng(seed);
  return () => generator.next();
}

/** Texts made of random pieces, characters and spaces: they put many merges side by side. */
function fuzzTexts(reference: ReferenceTokenizer, count: number, seed: number): string[] {
  const random = rng(seed);
  const pieces = reference.vocab.slice(259).map((p) => Buffer.from(p, 'latin1').toString('utf8'));
  const extras = [' ', '  ', '\n', '\t', 'é', '😀', '中', '.', ',', '!', '1', '42', 'Ω', '\u00a0'];
  const texts: string[] = [];
  for (let n = 0; n < count; n++) {
    let text = '';
    const length = 1 + Math.floor(random() * 12);
    for (let k = 0; k < length; k++) {
      const pool = random() < 0.8 ? pieces : extras;
      text += pool[Math.floor(random() * pool.length)]!;
    }
    texts.push(text);
  }
  return texts;
}

const HAND_PICKED = [
  '',
  'Once upon a time',
  'Tom and his dog',
  'Hello, world! How are you? (fine; thanks) -- "quoted" \'single\' [brackets] {braces} <angle> a/b\\c',
  'line one\nline two\n\nline four\r\nend',
  'tabs\tand\ttabs',
  'digits 0123456789 and 3.14159, 1,000,000 and 2024-01-01',
  'café naïve résumé Ünïcödé ñ',
  'emoji 😀🚀👍🏽 and flags 🇫🇷',
  '你好，世界。中文文本',
  'Привет мир',
  'a    b     c      d',
  '   leading and trailing   ',
  ' ',
  '  ',
  '\n',
  'x',
  'The the THE tHe',
  'unbelievable transformers tokenization',
  'she said "no" and ran. He laughed!',
];

test('tok512.bin converts to 165 merges and encodes "Once upon a time" as run.c does', (t) => {
  if (!requireSharedModels(t)) return;
  const files = convertLlama2cTokenizer(sharedModelPath('stories260K', 'tok512.bin'), 512);
  assert.equal(modelMerges(files).length, 165);
  const vocab = (files.tokenizer.model as { vocab: Record<string, number> }).vocab;
  assert.equal(vocab['▁'], 410);
  const tokenizer = TextTokenizer.fromFiles(files);
  assert.equal(tokenizer.vocabSize, 512);
  assert.deepEqual(tokenizer.encode('Once upon a time'), [1, 403, 407, 261, 378]);
  assert.deepEqual(tokenizer.encode(''), [1]);
  assert.deepEqual(tokenizer.encode('Once upon a time', false), [403, 407, 261, 378]);
  assert.equal(tokenizer.decode([1, 403, 407, 261, 378, 2]), 'Once upon a time');
  assert.equal(tokenizer.bosToken, '<s>');
  assert.equal(tokenizer.eosToken, '</s>');
});

test('the converted tok512.bin encodes like run.c: golden texts, hand-picked and fuzzed strings', (t) => {
  if (!requireSharedModels(t)) return;
  const file = sharedModelPath('stories260K', 'tok512.bin');
  const reference = loadReference(file);
  const tokenizer = TextTokenizer.fromFiles(convertLlama2cTokenizer(file, 512));
  const golden = ['golden-once-upon-a-time.txt', 'golden-tom-and-his-dog.txt'].map((name) => fs.readFileSync(sharedModelPath('stories260K', name), 'utf8'));
  const texts = [...golden, ...golden.map((g) => g.trimEnd()), ...HAND_PICKED, ...fuzzTexts(reference, 3000, 260)];
  for (const text of texts) {
    const ids = tokenizer.encode(text);
    assert.deepEqual(ids, referenceEncode(reference, text), JSON.stringify(text));
    // Decoding gives the text back: every byte is covered by a piece or a byte token.
    assert.equal(tokenizer.decode(ids), text, JSON.stringify(text));
  }
});

test('the converted 32k Llama 2 tokenizer encodes like run.c, runs of spaces included', (t) => {
  if (!requireSharedModels(t)) return;
  const file = sharedModelPath('tokenizers', 'llama2-32k', 'tokenizer.bin');
  const reference = loadReference(file);
  const tokenizer = TextTokenizer.fromFiles(convertLlama2cTokenizer(file, 32000));
  const spaces: string[] = [];
  for (let n = 1; n <= 40; n++) spaces.push(' '.repeat(n), `a${' '.repeat(n)}b`, `${' '.repeat(n)}x`, `if x:\n${' '.repeat(n)}return`);
  for (const text of [...HAND_PICKED, ...spaces, ...fuzzTexts(reference, 500, 32000)]) {
    assert.deepEqual(tokenizer.encode(text), referenceEncode(reference, text), JSON.stringify(text));
  }
});

test('special tokens typed in text: run.c spells them out, the converted tokenizer reads them as specials', (t) => {
  if (!requireSharedModels(t)) return;
  // The one known difference, and the Hugging Face convention: literal "<s>",
  // "</s>" and "<unk>" in a prompt become the special ids (as with Hugging Face's
  // own Llama 2 tokenizer), where run.c encodes their characters.
  const file = sharedModelPath('stories260K', 'tok512.bin');
  const tokenizer = TextTokenizer.fromFiles(convertLlama2cTokenizer(file, 512));
  const ids = tokenizer.encode('a</s>b');
  assert.ok(ids.includes(2));
  assert.notDeepEqual(ids, referenceEncode(loadReference(file), 'a</s>b'));
});
