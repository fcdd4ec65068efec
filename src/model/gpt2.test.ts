import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ModelFormatError, type Tensor } from './checkpoint.js';
import { importGpt2 } from './gpt2.js';
import { writeSafetensors } from './safetensors.js';

const DIM = 6;
const HEADS = 2;
const LAYERS = 2;
const VOCAB = 10;
const POSITIONS = 8;
const HIDDEN = 4 * DIM;

const BASE_CONFIG = {
  model_type: 'gpt2',
  activation_function: 'gelu_new',
  n_embd: DIM,
  n_head: HEADS,
  n_layer: LAYERS,
  n_positions: POSITIONS,
  n_inner: null,
  vocab_size: VOCAB,
  layer_norm_epsilon: 1e-5,
  bos_token_id: 50256,
  eos_token_id: 50256,
};

/** Distinct values per tensor, so a swapped or mistransposed tensor shows. */
function filled(dims: number[], seed: number): Tensor {
  const data = new Float32Array(dims.reduce((n, d) => n * d, 1));
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(seed * 1000 + i);
  return { dims, data };
}

function gpt2Tensors(prefix: string): Map<string, Tensor> {
  const tensors = new Map<string, Tensor>();
  let seed = 1;
  const add = (name: string, dims: number[]) => tensors.set(prefix + name, filled(dims, seed++));
  add('wte.weight', [VOCAB, DIM]);
  add('wpe.weight', [POSITIONS, DIM]);
  for (let i = 0; i < LAYERS; i++) {
    add(`h.${i}.ln_1.weight`, [DIM]);
    add(`h.${i}.ln_1.bias`, [DIM]);
    add(`h.${i}.attn.bias`, [1, 1, POSITIONS, POSITIONS]); // the causal mask buffer old checkpoints save
    add(`h.${i}.attn.c_attn.weight`, [DIM, 3 * DIM]);
    add(`h.${i}.attn.c_attn.bias`, [3 * DIM]);
    add(`h.${i}.attn.c_proj.weight`, [DIM, DIM]);
    add(`h.${i}.attn.c_proj.bias`, [DIM]);
    add(`h.${i}.ln_2.weight`, [DIM]);
    add(`h.${i}.ln_2.bias`, [DIM]);
    add(`h.${i}.mlp.c_fc.weight`, [DIM, HIDDEN]);
    add(`h.${i}.mlp.c_fc.bias`, [HIDDEN]);
    add(`h.${i}.mlp.c_proj.weight`, [HIDDEN, DIM]);
    add(`h.${i}.mlp.c_proj.bias`, [DIM]);
  }
  add('ln_f.weight', [DIM]);
  add('ln_f.bias', [DIM]);
  return tensors;
}

function makeModelDir(t: { after: (fn: () => void) => void }, tensors: Map<string, Tensor>, config: Record<string, unknown> = {}): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'offramp-gpt2-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...BASE_CONFIG, ...config }));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({ model: { type: 'BPE', vocab: { a: 0 }, merges: [] } }));
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  return dir;
}

/** Element [row, col] of a row-major tensor. */
const at = (t: Tensor, row: number, col: number): number => t.data[row * t.dims[1]! + col]!;

for (const prefix of ['', 'transformer.']) {
  test(`imports GPT-2 ${prefix ? 'with' : 'without'} the transformer. prefix: split, transposed, renamed`, (t) => {
    const source = gpt2Tensors(prefix);
    if (prefix) source.set('lm_head.weight', source.get('transformer.wte.weight')!);
    const checkpoint = importGpt2(makeModelDir(t, source));
    const { config, tensors } = checkpoint;
    assert.deepEqual(config, {
      architecture: 'gpt2',
      dim: DIM,
      hiddenDim: HIDDEN,
      numLayers: LAYERS,
      numHeads: HEADS,
      numKvHeads: HEADS,
      headDim: DIM / HEADS,
      vocabSize: VOCAB,
      maxSeqLen: POSITIONS,
      normEps: 1e-5,
      rope: null,
      tiedEmbeddings: true,
      attentionBias: true,
      bosTokenId: 50256,
      eosTokenIds: [50256],
    });
    assert.equal(checkpoint.tokenizer.config, undefined);

    const src = (name: string) => source.get(prefix + name)!;
    assert.deepEqual(tensors.get('tok_embeddings'), src('wte.weight'));
    assert.deepEqual(tensors.get('pos_embeddings'), src('wpe.weight'));
    assert.deepEqual(tensors.get('norm'), src('ln_f.weight'));
    assert.deepEqual(tensors.get('norm_bias'), src('ln_f.bias'));
    assert.equal(tensors.has('output'), false);

    for (let i = 0; i < LAYERS; i++) {
      const layer = (name: string) => tensors.get(`layers.${i}.${name}`)!;
      const cAttn = src(`h.${i}.attn.c_attn.weight`);
      const cAttnBias = src(`h.${i}.attn.c_attn.bias`);
      (['q', 'k', 'v'] as const).forEach((part, k) => {
        const w = layer(`w${part}`);
        assert.deepEqual(w.dims, [DIM, DIM]);
        for (let o = 0; o < DIM; o++) {
          for (let n = 0; n < DIM; n++) assert.equal(at(w, o, n), at(cAttn, n, k * DIM + o), `w${part}[${o},${n}]`);
        }
        assert.deepEqual([...layer(`b${part}`).data], [...cAttnBias.data.subarray(k * DIM, (k + 1) * DIM)]);
      });
      const transposed: [string, string, number, number][] = [
        ['wo', 'attn.c_proj.weight', DIM, DIM],
        ['w1', 'mlp.c_fc.weight', HIDDEN, DIM],
        ['w2', 'mlp.c_proj.weight', DIM, HIDDEN],
      ];
      for (const [name, hfName, outDim, inDim] of transposed) {
        const w = layer(name);
        const conv = src(`h.${i}.${hfName}`);
        assert.deepEqual(w.dims, [outDim, inDim], name);
        for (let o = 0; o < outDim; o++) {
          for (let n = 0; n < inDim; n++) assert.equal(at(w, o, n), at(conv, n, o), `${name}[${o},${n}]`);
        }
      }
      const copied: [string, string][] = [
        ['attention_norm', 'ln_1.weight'],
        ['attention_norm_bias', 'ln_1.bias'],
        ['bo', 'attn.c_proj.bias'],
        ['ffn_norm', 'ln_2.weight'],
        ['ffn_norm_bias', 'ln_2.bias'],
        ['b1', 'mlp.c_fc.bias'],
        ['b2', 'mlp.c_proj.bias'],
      ];
      for (const [name, hfName] of copied) assert.deepEqual(layer(name), src(`h.${i}.${hfName}`), name);
      assert.equal(tensors.has(`layers.${i}.w3`), false);
    }
  });
}

test('n_inner sets the hidden size', (t) => {
  const source = gpt2Tensors('');
  for (let i = 0; i < LAYERS; i++) {
    source.set(`h.${i}.mlp.c_fc.weight`, filled([DIM, 10], 70 + i));
    source.set(`h.${i}.mlp.c_fc.bias`, filled([10], 80 + i));
    source.set(`h.${i}.mlp.c_proj.weight`, filled([10, DIM], 90 + i));
  }
  const checkpoint = importGpt2(makeModelDir(t, source, { n_inner: 10 }));
  assert.equal(checkpoint.config.hiddenDim, 10);
  assert.deepEqual(checkpoint.tensors.get('layers.1.w2')!.dims, [DIM, 10]);
});

test('errors name the file: missing files, shapes, unsupported configs', (t) => {
  const throwsFormatError = (fn: () => unknown, file: string, message: RegExp) =>
    assert.throws(fn, (err: unknown) => err instanceof ModelFormatError && err.file === file && message.test(err.message));

  let dir = makeModelDir(t, gpt2Tensors(''));
  fs.rmSync(path.join(dir, 'tokenizer.json'));
  throwsFormatError(() => importGpt2(dir), path.join(dir, 'tokenizer.json'), /missing/);

  const noFinalNorm = gpt2Tensors('');
  noFinalNorm.delete('ln_f.bias');
  dir = makeModelDir(t, noFinalNorm);
  throwsFormatError(() => importGpt2(dir), path.join(dir, 'model.safetensors'), /missing tensor ln_f.bias/);

  const wrongShape = gpt2Tensors('');
  wrongShape.set('h.1.attn.c_attn.weight', filled([3 * DIM, DIM], 5)); // already [out, in]: not what GPT-2 stores
  dir = makeModelDir(t, wrongShape);
  throwsFormatError(() => importGpt2(dir), path.join(dir, 'model.safetensors'), /h.1.attn.c_attn.weight has shape \[18,6\], expected \[6,18\]/);

  dir = makeModelDir(t, gpt2Tensors(''), { model_type: 'bert' });
  throwsFormatError(() => importGpt2(dir), path.join(dir, 'config.json'), /model_type bert is not gpt2/);

  dir = makeModelDir(t, gpt2Tensors(''), { activation_function: 'relu' });
  throwsFormatError(() => importGpt2(dir), path.join(dir, 'config.json'), /activation_function relu/);

  dir = makeModelDir(t, gpt2Tensors(''), { n_embd: undefined });
  throwsFormatError(() => importGpt2(dir), path.join(dir, 'config.json'), /n_embd/);
});
