/**
 * Importer for Hugging Face GPT-2 directories (config.json, model.safetensors,
 * tokenizer.json), with or without the `transformer.` name prefix.
 *
 * GPT-2 stores its projections as Conv1D, [in, out]; they are transposed to the
 * canonical [out, in], and the fused c_attn is split into q, k and v.
 *
 * @module
 */
import path from 'node:path';
import { z } from 'zod';
import { ModelFormatError, type Checkpoint, type ModelConfig, type Tensor } from './checkpoint.js';
import { readJsonObject, readSpecialTokens, readTokenizerFiles } from './hf-llama.js';
import { readSafetensorsDir } from './safetensors.js';

const positiveInt = z.number().int().positive();
const tokenIds = z.union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative())]).nullish();

/** The config.json fields this importer reads; defaults are transformers' GPT2Config defaults. */
const Gpt2ConfigSchema = z.object({
  n_embd: positiveInt,
  n_layer: positiveInt,
  n_head: positiveInt,
  n_positions: positiveInt,
  n_inner: positiveInt.nullish(),
  vocab_size: positiveInt,
  layer_norm_epsilon: z.number().positive().default(1e-5),
  activation_function: z.string().default('gelu_new'),
  scale_attn_weights: z.boolean().default(true),
  scale_attn_by_inverse_layer_idx: z.boolean().default(false),
  bos_token_id: tokenIds.default(50256),
  eos_token_id: tokenIds.default(50256),
});

/** The graph uses the tanh approximation of GELU; these names all mean that. */
const TANH_GELUS = ['gelu_new', 'gelu_pytorch_tanh', 'gelu_fast'];

/** [rows, cols] -> [cols, rows]. */
function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const row = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[row + c]!;
  }
  return out;
}

/** Columns [from, from + width) of a [rows, cols] matrix, transposed: a Conv1D slice as [out, in]. */
function sliceColumnsTransposed(data: Float32Array, rows: number, cols: number, from: number, width: number): Float32Array {
  const out = new Float32Array(width * rows);
  for (let r = 0; r < rows; r++) {
    const row = r * cols + from;
    for (let c = 0; c < width; c++) out[c * rows + r] = data[row + c]!;
  }
  return out;
}

/** Imports a Hugging Face GPT-2 model directory. */
export function importGpt2(dir: string): Checkpoint {
  const configFile = path.join(dir, 'config.json');
  const raw = readJsonObject(configFile);
  if (raw.model_type !== undefined && raw.model_type !== 'gpt2') {
    throw new ModelFormatError(configFile, `model_type ${typeof raw.model_type === 'string' ? raw.model_type : JSON.stringify(raw.model_type)} is not gpt2`);
  }
  const parsed = Gpt2ConfigSchema.safeParse(raw);
  if (!parsed.success) throw new ModelFormatError(configFile, `unexpected config: ${z.prettifyError(parsed.error)}`);
  const hf = parsed.data;
  if (!TANH_GELUS.includes(hf.activation_function)) {
    throw new ModelFormatError(configFile, `activation_function ${hf.activation_function} is not supported (only tanh GELU)`);
  }
  if (!hf.scale_attn_weights || hf.scale_attn_by_inverse_layer_idx) {
    throw new ModelFormatError(configFile, 'only standard 1/sqrt(headDim) attention scaling is supported');
  }
  if (hf.n_embd % hf.n_head !== 0) throw new ModelFormatError(configFile, `n_embd ${hf.n_embd} is not divisible by n_head ${hf.n_head}`);
  const tokenizer = readTokenizerFiles(dir);

  const dim = hf.n_embd;
  const hiddenDim = hf.n_inner ?? 4 * dim;
  const config: ModelConfig = {
    architecture: 'gpt2',
    dim,
    hiddenDim,
    numLayers: hf.n_layer,
    numHeads: hf.n_head,
    numKvHeads: hf.n_head,
    headDim: dim / hf.n_head,
    vocabSize: hf.vocab_size,
    maxSeqLen: hf.n_positions,
    normEps: hf.layer_norm_epsilon,
    rope: null,
    tiedEmbeddings: true,
    attentionBias: true,
    ...readSpecialTokens(dir, hf),
  };

  const { tensors: source, fileOf, source: weightsFile } = readSafetensorsDir(dir);
  // Saved from GPT2LMHeadModel the names carry `transformer.`; from GPT2Model they do not.
  const prefix = source.has('transformer.wte.weight') ? 'transformer.' : '';
  const used = new Set<string>();
  const get = (name: string, dims: number[]): Tensor => {
    const hfName = prefix + name;
    const tensor = source.get(hfName);
    if (!tensor) throw new ModelFormatError(weightsFile, `missing tensor ${hfName}`);
    if (tensor.dims.length !== dims.length || tensor.dims.some((d, i) => d !== dims[i])) {
      throw new ModelFormatError(fileOf.get(hfName)!, `tensor ${hfName} has shape [${tensor.dims}], expected [${dims}]`);
    }
    used.add(hfName);
    return tensor;
  };
  const tensors = new Map<string, Tensor>();
  const copy = (name: string, dims: number[], canonical: string): void => void tensors.set(canonical, get(name, dims));
  /** A Conv1D weight [inDim, outDim] as canonical [outDim, inDim]. */
  const conv1d = (name: string, inDim: number, outDim: number, canonical: string): void => {
    tensors.set(canonical, { dims: [outDim, inDim], data: transpose(get(name, [inDim, outDim]).data, inDim, outDim) });
  };

  copy('wte.weight', [hf.vocab_size, dim], 'tok_embeddings');
  copy('wpe.weight', [hf.n_positions, dim], 'pos_embeddings');
  for (let i = 0; i < hf.n_layer; i++) {
    const h = `h.${i}`;
    const layer = `layers.${i}`;
    copy(`${h}.ln_1.weight`, [dim], `${layer}.attention_norm`);
    copy(`${h}.ln_1.bias`, [dim], `${layer}.attention_norm_bias`);
    // c_attn: [dim, 3 * dim], output columns are q | k | v.
    const qkv = get(`${h}.attn.c_attn.weight`, [dim, 3 * dim]).data;
    const qkvBias = get(`${h}.attn.c_attn.bias`, [3 * dim]).data;
    (['q', 'k', 'v'] as const).forEach((part, k) => {
      tensors.set(`${layer}.w${part}`, { dims: [dim, dim], data: sliceColumnsTransposed(qkv, dim, 3 * dim, k * dim, dim) });
      tensors.set(`${layer}.b${part}`, { dims: [dim], data: qkvBias.slice(k * dim, (k + 1) * dim) });
    });
    conv1d(`${h}.attn.c_proj.weight`, dim, dim, `${layer}.wo`);
    copy(`${h}.attn.c_proj.bias`, [dim], `${layer}.bo`);
    copy(`${h}.ln_2.weight`, [dim], `${layer}.ffn_norm`);
    copy(`${h}.ln_2.bias`, [dim], `${layer}.ffn_norm_bias`);
    conv1d(`${h}.mlp.c_fc.weight`, dim, hiddenDim, `${layer}.w1`);
    copy(`${h}.mlp.c_fc.bias`, [hiddenDim], `${layer}.b1`);
    conv1d(`${h}.mlp.c_proj.weight`, hiddenDim, dim, `${layer}.w2`);
    copy(`${h}.mlp.c_proj.bias`, [dim], `${layer}.b2`);
  }
  copy('ln_f.weight', [dim], 'norm');
  copy('ln_f.bias', [dim], 'norm_bias');

  // Old checkpoints save the causal mask buffers (attn.bias, attn.masked_bias), and LM-head
  // checkpoints a copy of the tied head; anything else is a variant we do not understand.
  for (const name of source.keys()) {
    if (used.has(name) || name === 'lm_head.weight' || /(^|\.)h\.\d+\.attn\.(bias|masked_bias)$/.test(name)) continue;
    throw new ModelFormatError(fileOf.get(name)!, `unexpected tensor ${name} (unsupported model variant?)`);
  }
  return { config, tensors, tokenizer, source: dir };
}
