/**
 * GGUF in and out: llama.cpp's own stories260K.gguf reproduces the golden
 * texts; a GGUF written by `offramp export --format gguf` imports to the
 * same logits as the model it came from (F32), or within what Q8_0 and
 * Q4_0 allow; the tokenizer survives the trip both ways.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { prepareModel, readManifest, readPreparedCheckpoint, TextTokenizer, type Checkpoint, type ModelConfig } from '../src/model/index.js';
import type { TokenizerFiles } from '../src/model/checkpoint.js';
import { exportGguf, type GgufTensorType } from '../src/model/gguf-export.js';
import { importGguf } from '../src/model/gguf-import.js';
import { ggufTokenizer, ggufTokenizerMetadata } from '../src/model/gguf-tokenizer.js';
import { readGgufHeader, readTensorBytes, writeGguf } from '../src/model/gguf.js';
import { dequantize, F16 } from '../src/model/gguf-quants.js';
import { importLlama2c } from '../src/model/llama2c.js';
import { readTokenizerFiles } from '../src/model/hf-llama.js';
import { compiledForward, compileAndLoad, PROMPT_TOKENS, runCli, tempDir, tinyCheckpoint } from './helpers.js';
import { relativeError } from './reference.js';
import { requireSharedModels, sharedModelPath } from './shared.js';

const STORIES = (file: string) => sharedModelPath('stories260K', file);

/** Logits of `tokens` as one prompt through `ckpt` compiled to float32. */
async function logitsOf(t: { after(fn: () => void): void }, ckpt: Checkpoint, tokens = PROMPT_TOKENS): Promise<Float32Array> {
  return compiledForward(await compileAndLoad(t, ckpt), tokens).logits;
}

function exportAndImport(t: { after(fn: () => void): void }, ckpt: Checkpoint, type: GgufTensorType = 'f32'): Checkpoint {
  const file = path.join(tempDir(t), `model-${type}.gguf`);
  exportGguf(ckpt, file, type);
  return importGguf(file);
}

test("llama.cpp's stories260K.gguf reproduces both golden texts", (t) => {
  if (!requireSharedModels(t)) return;
  const cache = tempDir(t);
  for (const [prompt, golden] of [
    ['Once upon a time', 'golden-once-upon-a-time.txt'],
    ['Tom and his dog', 'golden-tom-and-his-dog.txt'],
  ] as const) {
    const tokenizer = TextTokenizer.fromFiles(importGguf(STORIES('stories260K.gguf')).tokenizer);
    // 256 tokens follow BOS in the golden files, the prompt's own included.
    const promptTokens = tokenizer.encode(prompt).length - 1;
    const result = runCli(
      ['generate', '--model', STORIES('stories260K.gguf'), '--prompt', prompt, '--temperature', '0', '--max-tokens', String(256 - promptTokens)],
      {
        OFFRAMP_CACHE_DIR: cache,
      },
    );
    assert.equal(result.status, 0, result.stderr);
    assert.equal(prompt + result.stdout, fs.readFileSync(STORIES(golden), 'utf8'));
  }
});

test('stories260K.gguf imports as the llama2.c checkpoint does: config, tokenizer, logits', async (t) => {
  if (!requireSharedModels(t)) return;
  const gguf = importGguf(STORIES('stories260K.gguf'));
  const bin = importLlama2c(STORIES('stories260K.bin'), STORIES('tok512.bin'));
  const { normEps, eosTokenIds, tiedEmbeddings, ...shape } = gguf.config;
  const { normEps: binEps, eosTokenIds: _binEos, tiedEmbeddings: _binTied, ...binShape } = bin.config;
  assert.deepEqual(shape, binShape);
  assert.equal(normEps, Math.fround(binEps), 'GGUF stores the epsilon as float32');
  assert.deepEqual(eosTokenIds, [2]);
  assert.equal(tiedEmbeddings, false, "llama.cpp's converter writes output.weight even for a shared classifier");
  assert.deepEqual(gguf.tokenizer, bin.tokenizer);
  const err = relativeError(await logitsOf(t, gguf), await logitsOf(t, bin));
  assert.ok(err < 1e-6, `relative error ${err}`);
});

const roundTrips: [string, () => Checkpoint][] = [
  ['tiny llama with grouped-query attention', () => tinyCheckpoint({})],
  [
    'tiny llama, untied head, q/k/v bias, rotate-half rope',
    () => tinyCheckpoint({ tiedEmbeddings: false, attentionBias: true, rope: { theta: 500000, layout: 'half' } }),
  ],
  ['stories260K', () => importLlama2c(STORIES('stories260K.bin'), STORIES('tok512.bin'))],
  ['tiny GPT-2', () => tinyCheckpoint({ architecture: 'gpt2', numKvHeads: 4, rope: null, attentionBias: true, hiddenDim: 128 })],
];
for (const [name, make] of roundTrips) {
  test(`F32 GGUF export round-trips the ${name}: same logits within 1e-5`, async (t) => {
    if (!requireSharedModels(t)) return;
    const original = make();
    const imported = exportAndImport(t, original);
    assert.equal(imported.config.numKvHeads, original.config.numKvHeads);
    if (original.config.rope) assert.equal(imported.config.rope!.layout, 'interleaved', "GGUF holds llama.cpp's rotary order");
    const err = relativeError(await logitsOf(t, imported), await logitsOf(t, original));
    assert.ok(err < 1e-5, `relative error ${err}`);
  });
}

test('a prepared float32 directory exports to the same weights as its checkpoint', async (t) => {
  if (!requireSharedModels(t)) return;
  const original = tinyCheckpoint({ tiedEmbeddings: false, attentionBias: true });
  const dir = path.join(tempDir(t), 'prepared');
  await prepareModel(original, dir, { trainRamps: 'off' });
  const fromDir = readPreparedCheckpoint(dir);
  for (const [name, tensor] of original.tensors) assert.deepEqual(fromDir.tensors.get(name), tensor, name);
  const err = relativeError(await logitsOf(t, exportAndImport(t, fromDir)), await logitsOf(t, original));
  assert.ok(err < 1e-5, `relative error ${err}`);
});

// Largest error per value, as a fraction of its block's largest magnitude: half a step of max/127
// for Q8_0 (and the fp16 scale's rounding over 127 steps), a whole step of max/8 for Q4_0 (its
// codes reach -8 but only +7).
// The logits' bound is loose by design: measured 0.014 (Q8_0) and 0.24 (Q4_0) of the largest logit here.
for (const [type, maxError, maxLogitsError] of [
  ['q8_0', 0.5 / 127 + 2 ** -11, 0.03],
  ['q4_0', (1 / 8) * (1 + 2 ** -10), 0.4],
] as const) {
  test(`${type.toUpperCase()} GGUF files import within their quantization error`, async (t) => {
    if (!requireSharedModels(t)) return;
    const original = importLlama2c(STORIES('stories260K.bin'), STORIES('tok512.bin'));
    const file = path.join(tempDir(t), `model.gguf`);
    exportGguf(original, file, type);
    for (const x of readGgufHeader(file).tensors) {
      // ffn_down's rows of 172 are not whole blocks of 32: it stays F32, as llama-quantize would leave it.
      assert.equal(x.type.name, x.ne.length === 2 && x.ne[0]! % 32 === 0 ? type.toUpperCase() : 'F32', x.name);
    }
    const imported = importGguf(file);
    for (const [name, tensor] of original.tensors) {
      const got = imported.tensors.get(name)!.data;
      if (tensor.dims.length === 1) {
        assert.deepEqual(got, tensor.data, `${name} stays float32`);
        continue;
      }
      for (let block = 0; block < tensor.data.length; block += 32) {
        const values = tensor.data.subarray(block, block + 32);
        const max = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        values.forEach((v, j) => assert.ok(Math.abs(got[block + j]! - v) <= max * maxError + 1e-9, `${name}[${block + j}]`));
      }
    }
    const err = relativeError(await logitsOf(t, imported), await logitsOf(t, original));
    assert.ok(err < maxLogitsError, `logits relative error ${err}`);
  });
}

test('a Q8_0 GGUF prepares to int8 by default, its blocks kept as they are', (t) => {
  if (!requireSharedModels(t)) return;
  const dir = tempDir(t);
  const file = path.join(dir, 'stories260K-q8_0.gguf');
  exportGguf(importLlama2c(STORIES('stories260K.bin'), STORIES('tok512.bin')), file, 'q8_0');
  const result = runCli(['prepare', file, '--out', path.join(dir, 'prepared')]);
  assert.equal(result.status, 0, result.stderr);
  const manifest = readManifest(path.join(dir, 'prepared'));
  assert.equal(manifest.quantization, 'int8');
  const header = readGgufHeader(file);
  const q = readTensorBytes(
    header,
    header.tensors.find((x) => x.name === 'blk.0.attn_q.weight')!,
  );
  const weights = fs.readFileSync(path.join(dir, 'prepared', 'weights.bin'));
  const codesRef = manifest.weights['layers.0.wqkv']!;
  const scalesRef = manifest.weights['layers.0.wqkv.scales']!;
  // wq is the first 64 rows of the fused wqkv; each row of 64 inputs is 2 blocks in both layouts.
  for (let block = 0; block < 64 * 2; block++) {
    const scale = weights.readFloatLE(scalesRef.offset + 4 * block);
    assert.equal(scale, dequantize(F16, q.subarray(block * 34, block * 34 + 2), 1)[0], `block ${block}'s scale`);
    for (let j = 0; j < 32; j++) {
      assert.equal(weights[codesRef.offset + block * 32 + j]! - 128, q.readInt8(block * 34 + 2 + j), `block ${block} code ${j}`);
    }
  }
});

test('tokenizers survive GGUF metadata both ways: llama2.c SentencePiece and GPT-2 byte-level BPE', (t) => {
  if (!requireSharedModels(t)) return;
  const texts = ['Once upon a time, Tom said "hi!"', '  two  spaces\nand a newline', 'ünïcödé 123456 and emoji 🐶', "it's 42 o'clock"];
  const gpt2 = readTokenizerFiles(sharedModelPath('tokenizers', 'gpt2'));
  const llama = importLlama2c(STORIES('stories260K.bin'), STORIES('tok512.bin'));
  const cases: [string, TokenizerFiles, ModelConfig][] = [
    ['llama2.c', llama.tokenizer, llama.config],
    ['gpt2', gpt2, { ...llama.config, vocabSize: 50257, bosTokenId: 50256, eosTokenIds: [50256] }],
  ];
  for (const [name, files, config] of cases) {
    const file = path.join(tempDir(t), `${name}.gguf`);
    writeGguf(file, ggufTokenizerMetadata(name, files, config), []);
    const back = ggufTokenizer(file, readGgufHeader(file).metadata);
    assert.equal(back.vocabSize, config.vocabSize);
    assert.deepEqual(back.eosTokenIds, config.eosTokenIds.slice(0, 1));
    const before = TextTokenizer.fromFiles(files);
    const after = TextTokenizer.fromFiles(back.files);
    for (const text of texts) {
      const ids = before.encode(text);
      assert.deepEqual(after.encode(text), ids, `${name}: ${JSON.stringify(text)}`);
      assert.equal(after.decode(ids), before.decode(ids));
    }
  }
});
