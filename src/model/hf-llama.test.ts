import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ModelFormatError, type Tensor } from './checkpoint.js';
import { importHfLlama } from './hf-llama.js';
import { writeSafetensors } from './safetensors.js';

// A tiny grouped-query Llama: 2 heads sharing 1 kv head, headDim 4.
const DIM = 8;
const HIDDEN = 12;
const LAYERS = 2;
const HEADS = 2;
const KV_HEADS = 1;
const HEAD_DIM = 4;
const VOCAB = 16;

const BASE_CONFIG = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: DIM,
  intermediate_size: HIDDEN,
  num_hidden_layers: LAYERS,
  num_attention_heads: HEADS,
  num_key_value_heads: KV_HEADS,
  vocab_size: VOCAB,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  rope_theta: 500000,
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
};

/** Distinct values per tensor, so a swapped or mistransposed tensor shows. */
function filled(dims: number[], seed: number): Tensor {
  const data = new Float32Array(dims.reduce((n, d) => n * d, 1));
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(seed * 1000 + i);
  return { dims, data };
}

function hfTensors(options: { lmHead?: boolean; qkvBias?: boolean } = {}): Map<string, Tensor> {
  const tensors = new Map<string, Tensor>();
  let seed = 1;
  const add = (name: string, dims: number[]) => tensors.set(name, filled(dims, seed++));
  add('model.embed_tokens.weight', [VOCAB, DIM]);
  for (let i = 0; i < LAYERS; i++) {
    const p = `model.layers.${i}`;
    add(`${p}.input_layernorm.weight`, [DIM]);
    add(`${p}.self_attn.q_proj.weight`, [HEADS * HEAD_DIM, DIM]);
    add(`${p}.self_attn.k_proj.weight`, [KV_HEADS * HEAD_DIM, DIM]);
    add(`${p}.self_attn.v_proj.weight`, [KV_HEADS * HEAD_DIM, DIM]);
    add(`${p}.self_attn.o_proj.weight`, [DIM, HEADS * HEAD_DIM]);
    if (options.qkvBias) {
      add(`${p}.self_attn.q_proj.bias`, [HEADS * HEAD_DIM]);
      add(`${p}.self_attn.k_proj.bias`, [KV_HEADS * HEAD_DIM]);
      add(`${p}.self_attn.v_proj.bias`, [KV_HEADS * HEAD_DIM]);
    }
    add(`${p}.post_attention_layernorm.weight`, [DIM]);
    add(`${p}.mlp.gate_proj.weight`, [HIDDEN, DIM]);
    add(`${p}.mlp.up_proj.weight`, [HIDDEN, DIM]);
    add(`${p}.mlp.down_proj.weight`, [DIM, HIDDEN]);
  }
  add('model.norm.weight', [DIM]);
  if (options.lmHead ?? true) add('lm_head.weight', [VOCAB, DIM]);
  return tensors;
}

interface DirOptions {
  config?: Record<string, unknown>;
  tensors?: Map<string, Tensor>;
  generationConfig?: Record<string, unknown>;
}

/** Writes a Hugging Face-style model directory into a fresh temp dir. */
function makeModelDir(t: { after: (fn: () => void) => void }, options: DirOptions = {}): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'offramp-hf-llama-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...BASE_CONFIG, ...options.config }));
  if (options.generationConfig) fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify(options.generationConfig));
  const tokenizer = { version: '1.0', model: { type: 'BPE', vocab: { a: 0 }, merges: [] } };
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>' }));
  writeSafetensors(path.join(dir, 'model.safetensors'), options.tensors ?? hfTensors());
  return dir;
}

const throwsFormatError = (fn: () => unknown, file: string, message: RegExp) =>
  assert.throws(fn, (err: unknown) => err instanceof ModelFormatError && err.file === file && message.test(err.message));

test('imports an untied Llama: canonical names, [out, in] shapes, values, config', (t) => {
  const source = hfTensors();
  const dir = makeModelDir(t, { tensors: source, generationConfig: { bos_token_id: 1, eos_token_id: [2, 7] } });
  const checkpoint = importHfLlama(dir);
  const { config, tensors } = checkpoint;

  assert.deepEqual(config, {
    architecture: 'llama',
    dim: DIM,
    hiddenDim: HIDDEN,
    numLayers: LAYERS,
    numHeads: HEADS,
    numKvHeads: KV_HEADS,
    headDim: HEAD_DIM,
    vocabSize: VOCAB,
    maxSeqLen: 64,
    normEps: 1e-5,
    rope: { theta: 500000, layout: 'half' },
    tiedEmbeddings: false,
    attentionBias: false,
    bosTokenId: 1,
    eosTokenIds: [2, 7],
  });
  const mapping: [string, string][] = [
    ['model.embed_tokens.weight', 'tok_embeddings'],
    ['model.norm.weight', 'norm'],
    ['lm_head.weight', 'output'],
  ];
  for (let i = 0; i < LAYERS; i++) {
    const p = `model.layers.${i}`;
    mapping.push(
      [`${p}.input_layernorm.weight`, `layers.${i}.attention_norm`],
      [`${p}.self_attn.q_proj.weight`, `layers.${i}.wq`],
      [`${p}.self_attn.k_proj.weight`, `layers.${i}.wk`],
      [`${p}.self_attn.v_proj.weight`, `layers.${i}.wv`],
      [`${p}.self_attn.o_proj.weight`, `layers.${i}.wo`],
      [`${p}.post_attention_layernorm.weight`, `layers.${i}.ffn_norm`],
      [`${p}.mlp.gate_proj.weight`, `layers.${i}.w1`],
      [`${p}.mlp.up_proj.weight`, `layers.${i}.w3`],
      [`${p}.mlp.down_proj.weight`, `layers.${i}.w2`],
    );
  }
  assert.deepEqual([...tensors.keys()].sort(), mapping.map(([, name]) => name).sort());
  for (const [hfName, name] of mapping) {
    assert.deepEqual(tensors.get(name)!.dims, source.get(hfName)!.dims, name);
    assert.deepEqual(tensors.get(name)!.data, source.get(hfName)!.data, name);
  }
  assert.deepEqual(checkpoint.tokenizer, {
    tokenizer: { version: '1.0', model: { type: 'BPE', vocab: { a: 0 }, merges: [] } },
    config: { bos_token: '<s>' },
  });
  assert.equal(checkpoint.source, dir);
});

test('a missing lm_head, or tie_word_embeddings, means a tied head', (t) => {
  const absent = importHfLlama(makeModelDir(t, { tensors: hfTensors({ lmHead: false }) }));
  assert.equal(absent.config.tiedEmbeddings, true);
  assert.equal(absent.tensors.has('output'), false);

  // Some checkpoints save the tied head anyway; it is dropped.
  const saved = importHfLlama(makeModelDir(t, { config: { tie_word_embeddings: true, model_type: 'smollm' } }));
  assert.equal(saved.config.tiedEmbeddings, true);
  assert.equal(saved.tensors.has('output'), false);
});

test('qwen2 carries q/k/v biases; defaults for kv heads, head_dim, eps and theta', (t) => {
  const config = { model_type: 'qwen2', num_key_value_heads: undefined, rms_norm_eps: undefined, rope_theta: undefined, eos_token_id: [2, 3] };
  const noKvGroups = hfTensors({ qkvBias: true });
  for (let i = 0; i < LAYERS; i++) {
    // With kv heads defaulting to heads, k/v projections are as wide as q.
    for (const part of ['k', 'v']) {
      noKvGroups.set(`model.layers.${i}.self_attn.${part}_proj.weight`, filled([HEADS * HEAD_DIM, DIM], 50 + i));
      noKvGroups.set(`model.layers.${i}.self_attn.${part}_proj.bias`, filled([HEADS * HEAD_DIM], 60 + i));
    }
  }
  const checkpoint = importHfLlama(makeModelDir(t, { config, tensors: noKvGroups }));
  assert.equal(checkpoint.config.attentionBias, true);
  assert.equal(checkpoint.config.numKvHeads, HEADS);
  assert.equal(checkpoint.config.headDim, DIM / HEADS);
  assert.equal(checkpoint.config.normEps, 1e-6);
  assert.deepEqual(checkpoint.config.rope, { theta: 10000, layout: 'half' });
  assert.deepEqual(checkpoint.config.eosTokenIds, [2, 3]);
  assert.deepEqual(checkpoint.tensors.get('layers.1.bq')!.data, noKvGroups.get('model.layers.1.self_attn.q_proj.bias')!.data);
  assert.deepEqual(checkpoint.tensors.get('layers.0.bv')!.dims, [HEADS * HEAD_DIM]);

  const dir = makeModelDir(t, { config: { model_type: 'qwen2' } });
  throwsFormatError(() => importHfLlama(dir), path.join(dir, 'model.safetensors'), /missing tensor model.layers.0.self_attn.q_proj.bias/);
});

test('rope scaling: llama3 is kept, other types are refused', (t) => {
  const llama3 = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
  const checkpoint = importHfLlama(makeModelDir(t, { config: { rope_scaling: llama3 } }));
  assert.deepEqual(checkpoint.config.rope?.scaling, { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 });

  const dir = makeModelDir(t, { config: { rope_scaling: { type: 'linear', factor: 2 } } });
  throwsFormatError(() => importHfLlama(dir), path.join(dir, 'config.json'), /rope_scaling type linear is not supported/);
});

test('mistral sliding window caps the context', (t) => {
  const checkpoint = importHfLlama(makeModelDir(t, { config: { model_type: 'mistral', sliding_window: 32 } }));
  assert.equal(checkpoint.config.maxSeqLen, 32);
});

test('unknown architecture, bad config, missing files: errors name the file', (t) => {
  let dir = makeModelDir(t, { config: { model_type: 'bert' } });
  throwsFormatError(() => importHfLlama(dir), path.join(dir, 'config.json'), /model_type bert is not supported/);

  dir = makeModelDir(t, { config: { hidden_size: 'big' } });
  throwsFormatError(() => importHfLlama(dir), path.join(dir, 'config.json'), /hidden_size/);

  for (const file of ['config.json', 'tokenizer.json', 'model.safetensors']) {
    dir = makeModelDir(t);
    fs.rmSync(path.join(dir, file));
    const named = file === 'model.safetensors' ? dir : path.join(dir, file);
    throwsFormatError(() => importHfLlama(dir), named, file === 'model.safetensors' ? /no model.safetensors/ : /missing/);
  }
  // tokenizer_config.json is optional.
  dir = makeModelDir(t);
  fs.rmSync(path.join(dir, 'tokenizer_config.json'));
  assert.equal(importHfLlama(dir).tokenizer.config, undefined);
});

test('shape mismatches and unknown tensors are refused', (t) => {
  const wrongShape = hfTensors();
  wrongShape.set('model.layers.1.mlp.up_proj.weight', filled([DIM, HIDDEN], 99)); // transposed by mistake
  let dir = makeModelDir(t, { tensors: wrongShape });
  throwsFormatError(() => importHfLlama(dir), path.join(dir, 'model.safetensors'), /up_proj.weight has shape \[8,12\], expected \[12,8\]/);

  const extra = hfTensors();
  extra.set('model.layers.0.self_attn.q_norm.weight', filled([HEAD_DIM], 98));
  dir = makeModelDir(t, { tensors: extra });
  throwsFormatError(() => importHfLlama(dir), path.join(dir, 'model.safetensors'), /unexpected tensor model.layers.0.self_attn.q_norm.weight/);
});
