/**
 * Importer for Hugging Face Llama-family directories (config.json,
 * model.safetensors or sharded, tokenizer.json): Llama 1-3, Mistral,
 * Qwen2 (q/k/v bias) and SmolLM (a Llama).
 *
 * Hugging Face already stores linear weights as [out, in] and its q/k
 * projections for rotate-half RoPE, so weights only get renamed.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ModelFormatError, type Checkpoint, type ModelConfig, type Tensor, type TokenizerFiles } from './checkpoint.js';
import { readSafetensorsDir } from './safetensors.js';

const SUPPORTED_MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'smollm'];

const positiveInt = z.number().int().positive();
const tokenIds = z.union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative())]).nullish();

/** The config.json fields this importer reads; HF writes every field, defaults mirror transformers'. */
const HfLlamaConfigSchema = z.object({
  model_type: z.string(),
  hidden_size: positiveInt,
  intermediate_size: positiveInt,
  num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt,
  num_key_value_heads: positiveInt.nullish(),
  head_dim: positiveInt.nullish(),
  vocab_size: positiveInt,
  max_position_embeddings: positiveInt,
  rms_norm_eps: z.number().positive().default(1e-6),
  rope_theta: z.number().positive().default(10000),
  rope_scaling: z.record(z.string(), z.unknown()).nullish(),
  attention_bias: z.boolean().default(false),
  mlp_bias: z.boolean().default(false),
  tie_word_embeddings: z.boolean().default(false),
  hidden_act: z.string().default('silu'),
  sliding_window: positiveInt.nullish(),
  use_sliding_window: z.boolean().nullish(),
  bos_token_id: tokenIds,
  eos_token_id: tokenIds,
});
type HfLlamaConfig = z.infer<typeof HfLlamaConfigSchema>;

const GenerationConfigSchema = z.object({ bos_token_id: tokenIds, eos_token_id: tokenIds });

const Llama3ScalingSchema = z.object({
  factor: z.number().positive(),
  low_freq_factor: z.number().positive(),
  high_freq_factor: z.number().positive(),
  original_max_position_embeddings: positiveInt,
});

/** Reads a JSON object file; missing or malformed files are ModelFormatErrors naming the file. */
export function readJsonObject(file: string): Record<string, unknown> {
  if (!fs.existsSync(file)) throw new ModelFormatError(file, 'file is missing');
  let value: unknown;
  try {
    value = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ModelFormatError(file, `not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ModelFormatError(file, 'not a JSON object');
  return value as Record<string, unknown>;
}

/** tokenizer.json (required) and tokenizer_config.json (when present). */
export function readTokenizerFiles(dir: string): TokenizerFiles {
  const tokenizer = readJsonObject(path.join(dir, 'tokenizer.json'));
  const configFile = path.join(dir, 'tokenizer_config.json');
  return fs.existsSync(configFile) ? { tokenizer, config: readJsonObject(configFile) } : { tokenizer };
}

const asList = (ids: number | number[] | null | undefined): number[] => (ids == null ? [] : Array.isArray(ids) ? ids : [ids]);

/** BOS and the EOS set: generation_config.json refines config.json (chat models list extra stop ids there). */
export function readSpecialTokens(
  dir: string,
  config: { bos_token_id?: number | number[] | null; eos_token_id?: number | number[] | null },
): {
  bosTokenId: number | null;
  eosTokenIds: number[];
} {
  let bos = asList(config.bos_token_id)[0] ?? null;
  const eos = asList(config.eos_token_id);
  const generationFile = path.join(dir, 'generation_config.json');
  if (fs.existsSync(generationFile)) {
    const parsed = GenerationConfigSchema.safeParse(readJsonObject(generationFile));
    if (!parsed.success) throw new ModelFormatError(generationFile, z.prettifyError(parsed.error));
    bos = asList(parsed.data.bos_token_id)[0] ?? bos;
    eos.push(...asList(parsed.data.eos_token_id));
  }
  return { bosTokenId: bos, eosTokenIds: [...new Set(eos)] };
}

function ropeScaling(configFile: string, hf: HfLlamaConfig): NonNullable<ModelConfig['rope']>['scaling'] {
  if (!hf.rope_scaling) return undefined;
  // Older configs say `type`, newer ones `rope_type`.
  const kind = hf.rope_scaling.rope_type ?? hf.rope_scaling.type;
  if (kind === 'default') return undefined;
  if (kind !== 'llama3') {
    throw new ModelFormatError(configFile, `rope_scaling type ${String(kind)} is not supported (only llama3 scaling is)`);
  }
  const parsed = Llama3ScalingSchema.safeParse(hf.rope_scaling);
  if (!parsed.success) throw new ModelFormatError(configFile, `bad llama3 rope_scaling: ${z.prettifyError(parsed.error)}`);
  const s = parsed.data;
  return {
    factor: s.factor,
    lowFreqFactor: s.low_freq_factor,
    highFreqFactor: s.high_freq_factor,
    originalMaxPositions: s.original_max_position_embeddings,
  };
}

function toModelConfig(configFile: string, hf: HfLlamaConfig, dir: string, attentionBias: boolean, tied: boolean): ModelConfig {
  const numHeads = hf.num_attention_heads;
  const numKvHeads = hf.num_key_value_heads ?? numHeads;
  if (numHeads % numKvHeads !== 0) {
    throw new ModelFormatError(configFile, `num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  }
  if (!hf.head_dim && hf.hidden_size % numHeads !== 0) {
    throw new ModelFormatError(configFile, `hidden_size ${hf.hidden_size} is not divisible by num_attention_heads ${numHeads}`);
  }
  const headDim = hf.head_dim ?? hf.hidden_size / numHeads;
  if (headDim % 2 !== 0) throw new ModelFormatError(configFile, `head_dim ${headDim} must be even for rotary embeddings`);
  // No sliding-window attention here: up to the window it equals full attention, so cap the context there.
  const windowed = hf.sliding_window != null && (hf.model_type === 'mistral' || hf.use_sliding_window === true);
  const maxSeqLen = windowed ? Math.min(hf.max_position_embeddings, hf.sliding_window!) : hf.max_position_embeddings;
  const scaling = ropeScaling(configFile, hf);
  return {
    architecture: 'llama',
    dim: hf.hidden_size,
    hiddenDim: hf.intermediate_size,
    numLayers: hf.num_hidden_layers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: hf.vocab_size,
    maxSeqLen,
    normEps: hf.rms_norm_eps,
    rope: { theta: hf.rope_theta, layout: 'half', ...(scaling ? { scaling } : {}) },
    tiedEmbeddings: tied,
    attentionBias,
    ...readSpecialTokens(dir, hf),
  };
}

/** Imports a Hugging Face Llama-family model directory. */
export function importHfLlama(dir: string): Checkpoint {
  const configFile = path.join(dir, 'config.json');
  const raw = readJsonObject(configFile);
  // The architecture first: another model's config would fail validation with a less useful message.
  if (typeof raw.model_type !== 'string' || !SUPPORTED_MODEL_TYPES.includes(raw.model_type)) {
    throw new ModelFormatError(configFile, `model_type ${String(raw.model_type)} is not supported (expected one of ${SUPPORTED_MODEL_TYPES.join(', ')})`);
  }
  const parsed = HfLlamaConfigSchema.safeParse(raw);
  if (!parsed.success) throw new ModelFormatError(configFile, `unexpected config: ${z.prettifyError(parsed.error)}`);
  const hf = parsed.data;
  if (hf.mlp_bias) throw new ModelFormatError(configFile, 'mlp_bias is not supported');
  if (hf.hidden_act !== 'silu') throw new ModelFormatError(configFile, `hidden_act ${hf.hidden_act} is not supported (only silu)`);
  const tokenizer = readTokenizerFiles(dir);

  const { tensors: source, fileOf, source: weightsFile } = readSafetensorsDir(dir);
  const attentionBias = hf.model_type === 'qwen2' || hf.attention_bias || source.has('model.layers.0.self_attn.q_proj.bias');
  const tied = hf.tie_word_embeddings || !source.has('lm_head.weight');
  const config = toModelConfig(configFile, hf, dir, attentionBias, tied);
  const { dim, hiddenDim, numHeads, numKvHeads, headDim, vocabSize } = config;

  const tensors = new Map<string, Tensor>();
  const used = new Set<string>();
  const take = (hfName: string, name: string, dims: number[]): void => {
    const tensor = source.get(hfName);
    if (!tensor) throw new ModelFormatError(weightsFile, `missing tensor ${hfName}`);
    if (tensor.dims.length !== dims.length || tensor.dims.some((d, i) => d !== dims[i])) {
      throw new ModelFormatError(fileOf.get(hfName)!, `tensor ${hfName} has shape [${tensor.dims}], expected [${dims}]`);
    }
    tensors.set(name, tensor);
    used.add(hfName);
  };

  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  take('model.embed_tokens.weight', 'tok_embeddings', [vocabSize, dim]);
  for (let i = 0; i < config.numLayers; i++) {
    const hfLayer = `model.layers.${i}`;
    const layer = `layers.${i}`;
    take(`${hfLayer}.input_layernorm.weight`, `${layer}.attention_norm`, [dim]);
    take(`${hfLayer}.self_attn.q_proj.weight`, `${layer}.wq`, [qDim, dim]);
    take(`${hfLayer}.self_attn.k_proj.weight`, `${layer}.wk`, [kvDim, dim]);
    take(`${hfLayer}.self_attn.v_proj.weight`, `${layer}.wv`, [kvDim, dim]);
    if (attentionBias) {
      take(`${hfLayer}.self_attn.q_proj.bias`, `${layer}.bq`, [qDim]);
      take(`${hfLayer}.self_attn.k_proj.bias`, `${layer}.bk`, [kvDim]);
      take(`${hfLayer}.self_attn.v_proj.bias`, `${layer}.bv`, [kvDim]);
    }
    take(`${hfLayer}.self_attn.o_proj.weight`, `${layer}.wo`, [dim, qDim]);
    // Llama's attention_bias also gives o_proj a bias, which the llama graph has no slot for; all zeros is harmless.
    const oBias = source.get(`${hfLayer}.self_attn.o_proj.bias`);
    if (oBias) {
      if (oBias.data.some((v) => v !== 0)) {
        throw new ModelFormatError(fileOf.get(`${hfLayer}.self_attn.o_proj.bias`)!, 'a non-zero o_proj bias is not supported');
      }
      used.add(`${hfLayer}.self_attn.o_proj.bias`);
    }
    take(`${hfLayer}.post_attention_layernorm.weight`, `${layer}.ffn_norm`, [dim]);
    take(`${hfLayer}.mlp.gate_proj.weight`, `${layer}.w1`, [hiddenDim, dim]);
    take(`${hfLayer}.mlp.up_proj.weight`, `${layer}.w3`, [hiddenDim, dim]);
    take(`${hfLayer}.mlp.down_proj.weight`, `${layer}.w2`, [dim, hiddenDim]);
  }
  take('model.norm.weight', 'norm', [dim]);
  if (tied)
    used.add('lm_head.weight'); // a saved copy of the tied head is the embedding again
  else take('lm_head.weight', 'output', [vocabSize, dim]);

  // Anything left over is a variant this importer does not understand (q/k norms, MLP biases, …):
  // refuse rather than silently compute a different model. Old checkpoints store rotary tables; those we recompute.
  for (const name of source.keys()) {
    if (used.has(name) || name.endsWith('.rotary_emb.inv_freq')) continue;
    throw new ModelFormatError(fileOf.get(name)!, `unexpected tensor ${name} (unsupported model variant?)`);
  }
  return { config, tensors, tokenizer, source: dir };
}
