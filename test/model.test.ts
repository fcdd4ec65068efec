/**
 * The foundation's promises, on the real stories260K model and on tiny
 * random models: golden greedy text, block outputs equal to a reference
 * forward pass, KV-cached decoding equal to recomputation, the HF importer
 * equal to the llama2.c one, batching that changes nothing, and clear errors.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { KvCache, Model, TextTokenizer, weightsLabel, type Checkpoint, type Tensor } from '../src/model/index.js';
import { convertLlama2cTokenizer } from '../src/model/llama2c-tokenizer.js';
import { importLlama2c } from '../src/model/llama2c.js';
import { writeSafetensors } from '../src/model/safetensors.js';
import { importHfLlama } from '../src/model/hf-llama.js';
import { interleavedToHalf } from '../src/model/tensors.js';
import { compiledForward, compileAndLoad, generateTogether, PROMPT_TOKENS, runCli, tempDir, tinyCheckpoint, tinyVariants } from './helpers.js';
import { referenceForward, relativeError } from './reference.js';
import { requireSharedModels, sharedModelPath } from './shared.js';

const STORIES = (file: string) => sharedModelPath('stories260K', file);

/** Decodes `tokens` one position per call through the KV cache; returns the last position's logits. */
function cachedLogits(model: Model, tokens: number[]): Float32Array {
  const kv = new KvCache(model.config, 2, model.config.maxSeqLen);
  const { dim, vocabSize } = model.config;
  let hidden = new Float32Array(dim) as Float32Array;
  tokens.forEach((token, pos) => {
    hidden = model.embed([token], [pos]);
    for (let layer = 0; layer < model.config.numLayers; layer++) {
      const out = new Float32Array(dim);
      model.runBlock(layer, hidden, out, { firstSlot: 1, numRows: 1, seqLen: 1, pastLengths: [pos] }, kv);
      hidden = out;
    }
  });
  const logits = new Float32Array(vocabSize);
  model.runHead(hidden, 1, logits);
  return logits;
}

/** Asserts that every block's output and the logits match the float64 reference within 1e-4. */
function assertMatchesReference(ckpt: Checkpoint, model: Model, tokens: number[]): void {
  const ref = referenceForward(ckpt, tokens);
  const got = compiledForward(model, tokens);
  const { dim, vocabSize } = model.config;
  got.blocks.forEach((block, layer) => {
    tokens.forEach((_, pos) => {
      const err = relativeError(block.subarray(pos * dim, (pos + 1) * dim), ref.blockOutputs[layer]![pos]!);
      assert.ok(err < 1e-4, `block ${layer} position ${pos}: relative error ${err}`);
    });
  });
  tokens.forEach((_, pos) => {
    const err = relativeError(got.logits.subarray(pos * vocabSize, (pos + 1) * vocabSize), ref.logits[pos]!);
    assert.ok(err < 1e-4, `logits at position ${pos}: relative error ${err}`);
  });
}

for (const [name, file] of [
  ['version-1', 'stories260K.bin'],
  ['legacy', 'stories260K-legacy.bin'],
] as const) {
  test(`generate reproduces both golden texts from the ${name} checkpoint`, (t) => {
    if (!requireSharedModels(t)) return;
    const cache = tempDir(t);
    const tokenizer = TextTokenizer.fromFiles(convertLlama2cTokenizer(STORIES('tok512.bin'), 512));
    for (const [prompt, golden] of [
      ['Once upon a time', 'golden-once-upon-a-time.txt'],
      ['Tom and his dog', 'golden-tom-and-his-dog.txt'],
    ] as const) {
      // 256 tokens follow BOS in the golden files, the prompt's own included.
      const promptTokens = tokenizer.encode(prompt).length - 1;
      const result = runCli(
        [
          'generate',
          '--model',
          STORIES(file),
          '--tokenizer',
          STORIES('tok512.bin'),
          '--prompt',
          prompt,
          '--temperature',
          '0',
          '--max-tokens',
          String(256 - promptTokens),
        ],
        { OFFRAMP_CACHE_DIR: cache },
      );
      assert.equal(result.status, 0, result.stderr);
      assert.equal(prompt + result.stdout, fs.readFileSync(STORIES(golden), 'utf8'));
    }
  });
}

test('each block of stories260K matches the reference forward pass within 1e-4', async (t) => {
  if (!requireSharedModels(t)) return;
  const ckpt = importLlama2c(STORIES('stories260K.bin'), STORIES('tok512.bin'));
  assertMatchesReference(ckpt, await compileAndLoad(t, ckpt), PROMPT_TOKENS);
});

test('tiny random models match the reference: GQA, untied head, q/k/v bias, rotate-half, GPT-2', async (t) => {
  if (!requireSharedModels(t)) return;
  for (const [name, ckpt] of tinyVariants()) {
    await t.test(name, async (t) => assertMatchesReference(ckpt, await compileAndLoad(t, ckpt), PROMPT_TOKENS));
  }
});

test('decoding through the KV cache gives the logits of recomputing the whole prefix', async (t) => {
  if (!requireSharedModels(t)) return;
  for (const ckpt of [
    importLlama2c(STORIES('stories260K.bin'), STORIES('tok512.bin')),
    tinyCheckpoint({ architecture: 'gpt2', numKvHeads: 4, rope: null, attentionBias: true }),
  ]) {
    const model = await compileAndLoad(t, ckpt);
    const vocab = model.config.vocabSize;
    const full = compiledForward(model, PROMPT_TOKENS).logits;
    const last = full.subarray((PROMPT_TOKENS.length - 1) * vocab);
    const err = relativeError(cachedLogits(model, PROMPT_TOKENS), last);
    assert.ok(err < 1e-5, `${ckpt.config.architecture}: relative error ${err}`);
  }
});

/** Writes a llama2.c import as a Hugging Face Llama checkpoint directory (wq/wk permuted for rotate-half, as HF's converter does). */
function writeAsHfLlama(ckpt: Checkpoint, dir: string): void {
  const c = ckpt.config;
  const get = (name: string) => ckpt.tensors.get(name)!;
  const tensors = new Map<string, Tensor>([
    ['model.embed_tokens.weight', get('tok_embeddings')],
    ['model.norm.weight', get('norm')],
  ]);
  for (let i = 0; i < c.numLayers; i++) {
    const hf = (name: string) => `model.layers.${i}.${name}.weight`;
    const ours = (name: string) => get(`layers.${i}.${name}`);
    tensors.set(hf('input_layernorm'), ours('attention_norm'));
    tensors.set(hf('self_attn.q_proj'), interleavedToHalf(ours('wq'), c.headDim));
    tensors.set(hf('self_attn.k_proj'), interleavedToHalf(ours('wk'), c.headDim));
    tensors.set(hf('self_attn.v_proj'), ours('wv'));
    tensors.set(hf('self_attn.o_proj'), ours('wo'));
    tensors.set(hf('post_attention_layernorm'), ours('ffn_norm'));
    tensors.set(hf('mlp.gate_proj'), ours('w1'));
    tensors.set(hf('mlp.up_proj'), ours('w3'));
    tensors.set(hf('mlp.down_proj'), ours('w2'));
  }
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  const config = {
    model_type: 'llama',
    hidden_size: c.dim,
    intermediate_size: c.hiddenDim,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.maxSeqLen,
    rms_norm_eps: c.normEps,
    rope_theta: 10000,
    tie_word_embeddings: true,
    bos_token_id: 1,
    eos_token_id: 2,
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(ckpt.tokenizer.tokenizer));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(ckpt.tokenizer.config));
}

test('stories260K written as a Hugging Face Llama directory compiles to the same logits', async (t) => {
  if (!requireSharedModels(t)) return;
  const llama2c = importLlama2c(STORIES('stories260K.bin'), STORIES('tok512.bin'));
  const hfDir = path.join(tempDir(t), 'hf');
  writeAsHfLlama(llama2c, hfDir);
  const hf = importHfLlama(hfDir);
  assert.equal(hf.config.rope?.layout, 'half');
  const a = compiledForward(await compileAndLoad(t, llama2c), PROMPT_TOKENS).logits;
  const b = compiledForward(await compileAndLoad(t, hf), PROMPT_TOKENS).logits;
  const err = relativeError(b, a);
  assert.ok(err < 1e-5, `relative error ${err}`);
});

for (const [fused, quantization] of [
  [true, 'none'],
  [false, 'none'],
  [true, 'int8'],
  [false, 'int8'],
] as const) {
  test(`sequences of different lengths decoded in one batch give the tokens each gives alone (${fused ? 'fused graph' : 'block by block'}, ${weightsLabel(quantization)})`, async (t) => {
    if (!requireSharedModels(t)) return;
    const model = await compileAndLoad(t, importLlama2c(STORIES('stories260K.bin'), STORIES('tok512.bin')), { fused, quantization });
    const prompts = ['Once upon a time', 'Tom and his dog', 'The sun', 'Lily wanted to play with her friends in the park'].map((p) =>
      model.tokenizer.encode(p),
    );
    const alone = [];
    for (const prompt of prompts) alone.push(...(await generateTogether(model, [prompt], 40)));
    // Five slots for four sequences: the batch spans slot rows that are not decoding too.
    const together = await generateTogether(model, prompts, 40, 5);
    assert.deepEqual(together, alone);
    assert.ok(alone.every((tokens) => tokens.length > 10));
  });
}

test('bad checkpoints give one clear error line and exit 2, leaving no output directory', async (t) => {
  if (!requireSharedModels(t)) return;
  const dir = tempDir(t);
  const good = fs.readFileSync(STORIES('stories260K.bin'));
  const write = (name: string, bytes: Uint8Array) => {
    fs.writeFileSync(path.join(dir, name), bytes);
    return path.join(dir, name);
  };
  const bert = path.join(dir, 'bert');
  fs.mkdirSync(bert);
  fs.writeFileSync(path.join(bert, 'config.json'), JSON.stringify({ model_type: 'bert' }));
  const cases: [string, string[], RegExp][] = [
    ['truncated', [write('truncated.bin', good.subarray(0, 50_000))], /truncated/],
    ['wrong magic', [write('magic.bin', Buffer.alloc(4096, 0xff))], /not a llama2\.c checkpoint|wrong magic/],
    ['unknown architecture', [bert], /bert/],
    ['vocabulary mismatch', [STORIES('stories260K.bin'), '--tokenizer', sharedModelPath('tokenizers', 'llama2-32k', 'tokenizer.bin')], /vocab/i],
    ['missing file', [path.join(dir, 'nope.bin')], /no such file/],
  ];
  for (const [name, args, pattern] of cases) {
    const out = path.join(dir, `out-${name.replace(/ /g, '-')}`);
    const tokenizerArgs = args.includes('--tokenizer') || args[0] === bert ? [] : ['--tokenizer', STORIES('tok512.bin')];
    const result = runCli(['prepare', ...args, ...tokenizerArgs, '--out', out]);
    assert.equal(result.status, 2, `${name}: ${result.stderr}`);
    const lines = result.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `${name}: expected one line, got:\n${result.stderr}`);
    assert.match(lines[0]!, /^offramp: error: /);
    assert.match(lines[0]!, pattern, name);
    assert.doesNotMatch(result.stderr, /\n\s+at /, `${name}: stack trace`);
    assert.equal(fs.existsSync(out), false, `${name}: output directory left behind`);
    assert.deepEqual(
      fs.readdirSync(dir).filter((f) => f.includes('.partial-')),
      [],
      `${name}: partial directory left behind`,
    );
  }
});
