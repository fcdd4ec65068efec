import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { getTensor, ModelConfigSchema, type Checkpoint, type TokenizerFiles } from './checkpoint.js';
import { SYNTH_SHAPES, synthCheckpoint, synthTokenizer, type SynthShape } from './synth.js';
import { TextTokenizer } from './tokenizer.js';

const FAKE_TOKENIZER: TokenizerFiles = { tokenizer: { model: { type: 'BPE', vocab: {}, merges: [] } } };
// From dist/src/model/ to the shared/ folder beside the project.
const TOKENIZERS_DIR = fileURLToPath(new URL('../../../../shared/models/tokenizers/', import.meta.url));

/** Every canonical tensor a checkpoint of this config must have, with its shape. */
function expectedShapes(checkpoint: Checkpoint): Map<string, number[]> {
  const { architecture, dim, hiddenDim, numHeads, numKvHeads, headDim, vocabSize, maxSeqLen } = checkpoint.config;
  const gpt2 = architecture === 'gpt2';
  const shapes = new Map<string, number[]>([
    ['tok_embeddings', [vocabSize, dim]],
    ['norm', [dim]],
  ]);
  if (gpt2) shapes.set('pos_embeddings', [maxSeqLen, dim]).set('norm_bias', [dim]);
  for (let i = 0; i < checkpoint.config.numLayers; i++) {
    const l = `layers.${i}.`;
    shapes.set(`${l}attention_norm`, [dim]).set(`${l}ffn_norm`, [dim]);
    shapes
      .set(`${l}wq`, [numHeads * headDim, dim])
      .set(`${l}wk`, [numKvHeads * headDim, dim])
      .set(`${l}wv`, [numKvHeads * headDim, dim]);
    shapes
      .set(`${l}wo`, [dim, numHeads * headDim])
      .set(`${l}w1`, [hiddenDim, dim])
      .set(`${l}w2`, [dim, hiddenDim]);
    if (gpt2) {
      for (const bias of ['attention_norm_bias', 'ffn_norm_bias', 'bo', 'b2']) shapes.set(l + bias, [dim]);
      shapes.set(`${l}bq`, [dim]).set(`${l}bk`, [dim]).set(`${l}bv`, [dim]).set(`${l}b1`, [hiddenDim]);
    } else {
      shapes.set(`${l}w3`, [hiddenDim, dim]);
    }
  }
  return shapes;
}

test('same seed gives identical weights, another seed different ones', () => {
  const a = synthCheckpoint('stories15M', 7, FAKE_TOKENIZER);
  const b = synthCheckpoint('stories15M', 7, FAKE_TOKENIZER);
  const c = synthCheckpoint('stories15M', 8, FAKE_TOKENIZER);
  assert.deepEqual([...a.tensors.keys()], [...b.tensors.keys()]);
  for (const [name, t] of a.tensors) assert.deepEqual(t.data, b.tensors.get(name)!.data, name);
  assert.notDeepEqual(a.tensors.get('layers.3.wq')!.data, c.tensors.get('layers.3.wq')!.data);
  assert.equal(a.tokenizer, FAKE_TOKENIZER);
  assert.equal(a.source, 'synth:stories15M:seed=7');

  // Roughly N(0, 0.02²); norms are ones.
  const w = a.tensors.get('tok_embeddings')!.data;
  let sum = 0;
  let sumSquares = 0;
  for (const v of w) {
    sum += v;
    sumSquares += v * v;
  }
  assert.ok(Math.abs(sum / w.length) < 1e-4);
  assert.ok(Math.abs(Math.sqrt(sumSquares / w.length) - 0.02) < 1e-4);
  assert.ok(a.tensors.get('layers.0.ffn_norm')!.data.every((v) => v === 1));
});

// Parameter counts of the published models (tied heads counted once).
const PARAMETERS: Partial<Record<SynthShape, number>> = { gpt2: 124_439_808, 'smollm-135m': 134_515_008 };

for (const shape of Object.keys(SYNTH_SHAPES) as SynthShape[]) {
  test(`${shape}: valid config, every tensor of the right shape`, () => {
    const started = performance.now();
    const checkpoint = synthCheckpoint(shape, 1, FAKE_TOKENIZER);
    const elapsedMs = performance.now() - started;
    assert.ok(elapsedMs < 10_000, `took ${elapsedMs} ms`);
    assert.deepEqual(ModelConfigSchema.parse(checkpoint.config), checkpoint.config);
    assert.notEqual(checkpoint.config, SYNTH_SHAPES[shape]); // a copy: callers may not alter the table
    const shapes = expectedShapes(checkpoint);
    assert.deepEqual([...checkpoint.tensors.keys()].sort(), [...shapes.keys()].sort());
    for (const [name, dims] of shapes) getTensor(checkpoint, name, dims);
    const parameters = [...checkpoint.tensors.values()].reduce((n, t) => n + t.data.length, 0);
    if (PARAMETERS[shape]) assert.equal(parameters, PARAMETERS[shape]);
  });
}

test('synthTokenizer: GPT-2 as is; for smollm-135m cut to 49,152 ids with <|endoftext|> at 0', { skip: !fs.existsSync(TOKENIZERS_DIR) }, () => {
  const gpt2 = TextTokenizer.fromFiles(synthTokenizer('gpt2', TOKENIZERS_DIR));
  assert.equal(gpt2.vocabSize, SYNTH_SHAPES.gpt2.vocabSize);

  const files = synthTokenizer('smollm-135m', TOKENIZERS_DIR);
  const smol = TextTokenizer.fromFiles(files);
  assert.equal(smol.vocabSize, 49152);
  const vocab = (files.tokenizer.model as { vocab: Record<string, number> }).vocab;
  assert.equal(new Set(Object.values(vocab)).size, 49152); // ids 0..49151, each once
  assert.equal(vocab['<|endoftext|>'], 0);
  const text = 'Once upon a time, a little robot said "Hello!" — naïve café 你好.';
  const ids = smol.encode(text);
  assert.ok(ids.every((id) => id >= 0 && id < 49152));
  assert.equal(smol.decode(ids), text);
  assert.equal(smol.encode('<|endoftext|>', false)[0], 0);
});

test('synthTokenizer: llama2.c 32k vocabulary for the stories shapes', { skip: !fs.existsSync(TOKENIZERS_DIR) }, () => {
  const tokenizer = TextTokenizer.fromFiles(synthTokenizer('stories15M', TOKENIZERS_DIR));
  assert.equal(tokenizer.vocabSize, 32000);
});
