/**
 * Importer for Llama-family and GPT-2 GGUF files (llama.cpp's format): the
 * architecture from `llama.*` (or `gpt2.*`) metadata, the tokenizer from
 * `tokenizer.ggml.*`, and every tensor as float32.
 *
 * F32, F16 and BF16 tensors convert exactly. Q8_0 and Q4_0 tensors are
 * dequantized exactly too (a half-precision scale times a small integer is
 * a float32), so the checkpoint holds the very values llama.cpp computes
 * with. Compiled with `--quantize int8`, a Q8_0 block comes out as the same
 * codes and scale it had: quantize.ts's blocks are also 32 weights of one
 * input row with a symmetric scale max|w| / 127, and ggml's Q8_0 quantizer
 * gives every block's largest weight the code ±127, so that scale is the
 * block's own (see gguf-quants.test.ts). A file whose block matrices are
 * all Q8_0 therefore compiles to int8 unless --quantize says otherwise.
 * Q4_0 is not kept in 4 bits: offramp has no 4-bit layout yet, so it is
 * compiled from the exact dequantized values (float32, or int8 re-quantized).
 *
 * Rotary layout: llama.cpp's Llama graph rotates adjacent pairs (its "norm"
 * rope), and its converter permutes Hugging Face's rotate-half q/k rows into
 * that order, so a GGUF's q/k are already in llama2.c's interleaved layout.
 *
 * @module
 */
import fs from 'node:fs';
import { z } from 'zod';
import { ModelFormatError, type Checkpoint, type ModelConfig, type Tensor } from './checkpoint.js';
import { readGgufHeader, readTensorBytes, type GgufHeader, type GgufTensorInfo } from './gguf.js';
import { dequantize, Q8_0 } from './gguf-quants.js';
import { ggufTokenizer } from './gguf-tokenizer.js';
import { rowRange } from './tensors.js';
import type { Quantization } from './manifest.js';

const count = z.number().int().positive();
const LlamaMetadataSchema = z.object({
  'llama.context_length': count,
  'llama.embedding_length': count,
  'llama.block_count': count,
  'llama.feed_forward_length': count,
  'llama.attention.head_count': count,
  'llama.attention.head_count_kv': count.optional(),
  'llama.attention.key_length': count.optional(),
  'llama.attention.value_length': count.optional(),
  'llama.attention.layer_norm_rms_epsilon': z.number().positive(),
  'llama.rope.freq_base': z.number().positive().optional(),
  'llama.rope.dimension_count': count.optional(),
  'llama.rope.scaling.type': z.string().optional(),
  'llama.rope.scaling.factor': z.number().optional(),
});

const Gpt2MetadataSchema = z.object({
  'gpt2.context_length': count,
  'gpt2.embedding_length': count,
  'gpt2.block_count': count,
  'gpt2.feed_forward_length': count,
  'gpt2.attention.head_count': count,
  'gpt2.attention.layer_norm_epsilon': z.number().positive(),
});

/** GGUF tensor names (after `blk.N.`) and the canonical names they become, per architecture. */
const LLAMA_LAYER_TENSORS: Record<string, string> = {
  'attn_norm.weight': 'attention_norm',
  'attn_q.weight': 'wq',
  'attn_k.weight': 'wk',
  'attn_v.weight': 'wv',
  'attn_q.bias': 'bq',
  'attn_k.bias': 'bk',
  'attn_v.bias': 'bv',
  'attn_output.weight': 'wo',
  'ffn_norm.weight': 'ffn_norm',
  'ffn_gate.weight': 'w1',
  'ffn_down.weight': 'w2',
  'ffn_up.weight': 'w3',
};
/** GPT-2's q/k/v come as one matrix (and bias), split into canonical wq/wk/wv (bq/bk/bv) on import. */
const GPT2_LAYER_TENSORS: Record<string, string> = {
  'attn_norm.weight': 'attention_norm',
  'attn_norm.bias': 'attention_norm_bias',
  'attn_qkv.weight': 'wqkv',
  'attn_qkv.bias': 'bqkv',
  'attn_output.weight': 'wo',
  'attn_output.bias': 'bo',
  'ffn_norm.weight': 'ffn_norm',
  'ffn_norm.bias': 'ffn_norm_bias',
  'ffn_up.weight': 'w1',
  'ffn_up.bias': 'b1',
  'ffn_down.weight': 'w2',
  'ffn_down.bias': 'b2',
};
const LLAMA_MODEL_TENSORS: Record<string, string> = {
  'token_embd.weight': 'tok_embeddings',
  'output_norm.weight': 'norm',
  'output.weight': 'output',
};
const GPT2_MODEL_TENSORS: Record<string, string> = {
  ...LLAMA_MODEL_TENSORS,
  'position_embd.weight': 'pos_embeddings',
  'output_norm.bias': 'norm_bias',
};

/** The canonical name of a GGUF tensor, or undefined when the architecture has no such tensor. */
function canonicalName(name: string, config: ModelConfig): string | undefined {
  const [modelTensors, layerTensors] = config.architecture === 'llama' ? [LLAMA_MODEL_TENSORS, LLAMA_LAYER_TENSORS] : [GPT2_MODEL_TENSORS, GPT2_LAYER_TENSORS];
  if (modelTensors[name]) return modelTensors[name];
  const match = /^blk\.(\d+)\.(.+)$/.exec(name);
  if (!match || Number(match[1]) >= config.numLayers || !layerTensors[match[2]!]) return undefined;
  return `layers.${match[1]}.${layerTensors[match[2]!]}`;
}

function readTensor(header: GgufHeader, info: GgufTensorInfo): Tensor {
  const values = info.ne.reduce((a, b) => a * b, 1);
  // GGUF lists ne[0] (the contiguous dimension) first; checkpoints list it last.
  return { dims: [...info.ne].reverse(), data: dequantize(info.type, readTensorBytes(header, info), values) };
}

function llamaConfig(file: string, header: GgufHeader, vocabSize: number, special: Pick<ModelConfig, 'bosTokenId' | 'eosTokenIds'>): ModelConfig {
  const parsed = LlamaMetadataSchema.safeParse(Object.fromEntries(header.metadata));
  if (!parsed.success) throw new ModelFormatError(file, `bad llama metadata: ${z.prettifyError(parsed.error).replaceAll('\n', ' ')}`);
  const m = parsed.data;
  const numHeads = m['llama.attention.head_count'];
  const dim = m['llama.embedding_length'];
  const headDim = m['llama.attention.key_length'] ?? dim / numHeads;
  if (!Number.isInteger(headDim) || (m['llama.attention.value_length'] ?? headDim) !== headDim) {
    throw new ModelFormatError(
      file,
      `head sizes (key ${headDim}, value ${m['llama.attention.value_length']}) are not supported: they must be equal whole numbers`,
    );
  }
  if ((m['llama.rope.dimension_count'] ?? headDim) !== headDim) {
    throw new ModelFormatError(
      file,
      `rotary embedding on ${m['llama.rope.dimension_count']} of ${headDim} head dimensions is not supported (only all of them)`,
    );
  }
  const scaling = m['llama.rope.scaling.type'];
  if (scaling !== undefined && scaling !== 'none' && !(scaling === 'linear' && m['llama.rope.scaling.factor'] === 1)) {
    throw new ModelFormatError(file, `rope scaling "${scaling}" is not supported`);
  }
  if (header.tensors.some((t) => t.name === 'rope_freqs.weight')) {
    throw new ModelFormatError(
      file,
      'rope_freqs.weight (Llama 3.1 style per-frequency rope scaling) is not supported in GGUF files; import the Hugging Face checkpoint instead',
    );
  }
  return {
    architecture: 'llama',
    dim,
    hiddenDim: m['llama.feed_forward_length'],
    numLayers: m['llama.block_count'],
    numHeads,
    numKvHeads: m['llama.attention.head_count_kv'] ?? numHeads,
    headDim,
    vocabSize,
    maxSeqLen: m['llama.context_length'],
    normEps: m['llama.attention.layer_norm_rms_epsilon'],
    rope: { theta: m['llama.rope.freq_base'] ?? 10000, layout: 'interleaved' },
    tiedEmbeddings: !header.tensors.some((t) => t.name === 'output.weight'),
    attentionBias: header.tensors.some((t) => t.name.endsWith('.attn_q.bias')),
    ...special,
  };
}

function gpt2Config(file: string, header: GgufHeader, vocabSize: number, special: Pick<ModelConfig, 'bosTokenId' | 'eosTokenIds'>): ModelConfig {
  const parsed = Gpt2MetadataSchema.safeParse(Object.fromEntries(header.metadata));
  if (!parsed.success) throw new ModelFormatError(file, `bad gpt2 metadata: ${z.prettifyError(parsed.error).replaceAll('\n', ' ')}`);
  const m = parsed.data;
  const numHeads = m['gpt2.attention.head_count'];
  const dim = m['gpt2.embedding_length'];
  if (dim % numHeads !== 0) throw new ModelFormatError(file, `embedding length ${dim} is not a multiple of ${numHeads} heads`);
  return {
    architecture: 'gpt2',
    dim,
    hiddenDim: m['gpt2.feed_forward_length'],
    numLayers: m['gpt2.block_count'],
    numHeads,
    numKvHeads: numHeads,
    headDim: dim / numHeads,
    vocabSize,
    maxSeqLen: m['gpt2.context_length'],
    normEps: m['gpt2.attention.layer_norm_epsilon'],
    rope: null,
    tiedEmbeddings: !header.tensors.some((t) => t.name === 'output.weight'),
    attentionBias: true,
    ...special,
  };
}

/** Splits GPT-2's fused q/k/v matrices and biases into the canonical per-projection tensors. */
function splitQkv(tensors: Map<string, Tensor>, config: ModelConfig): void {
  for (let i = 0; i < config.numLayers; i++) {
    for (const [fused, parts] of [
      ['wqkv', ['wq', 'wk', 'wv']],
      ['bqkv', ['bq', 'bk', 'bv']],
    ] as const) {
      const tensor = tensors.get(`layers.${i}.${fused}`);
      if (!tensor) continue; // missing: compiling the checkpoint names what is missing
      tensors.delete(`layers.${i}.${fused}`);
      parts.forEach((part, k) => tensors.set(`layers.${i}.${part}`, rowRange(tensor, k * config.dim, config.dim)));
    }
  }
}

/**
 * Reads a Llama-family or GPT-2 GGUF file into a Checkpoint. Throws ModelFormatError
 * (one line naming the file) for another architecture, a tensor type
 * offramp does not read, or a damaged file.
 */
export function importGguf(file: string): Checkpoint {
  const header = readGgufHeader(file);
  const architecture = header.metadata.get('general.architecture');
  if (architecture !== 'llama' && architecture !== 'gpt2') {
    throw new ModelFormatError(file, `GGUF architecture ${JSON.stringify(architecture ?? null)} is not supported (only "llama" and "gpt2")`);
  }
  const tokenizer = ggufTokenizer(file, header.metadata);
  const special = { bosTokenId: tokenizer.bosTokenId, eosTokenIds: tokenizer.eosTokenIds };
  const config = architecture === 'llama' ? llamaConfig(file, header, tokenizer.vocabSize, special) : gpt2Config(file, header, tokenizer.vocabSize, special);
  const tensors = new Map<string, Tensor>();
  for (const info of header.tensors) {
    const name = canonicalName(info.name, config);
    if (!name) throw new ModelFormatError(file, `tensor ${info.name} is not part of a ${architecture} model offramp runs`);
    tensors.set(name, readTensor(header, info));
  }
  if (architecture === 'gpt2') splitQkv(tensors, config);
  return { config, tensors, tokenizer: tokenizer.files, source: file };
}

/** True when `file` is a file named .gguf or starting with GGUF's magic (a damaged .gguf still goes to importGguf, which says what is wrong). */
export function isGgufFile(file: string): boolean {
  if (!fs.statSync(file, { throwIfNoEntry: false })?.isFile()) return false;
  if (file.toLowerCase().endsWith('.gguf')) return true;
  const magic = Buffer.alloc(4);
  const fd = fs.openSync(file, 'r');
  try {
    return fs.readSync(fd, magic, 0, 4, 0) === 4 && magic.toString('latin1') === 'GGUF';
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * How a GGUF file is compiled when no --quantize is given: int8 when every
 * matrix in its blocks is Q8_0 (but those whose rows are not whole blocks), since those blocks become the int8 ones
 * as they are (see above); float32 otherwise. A damaged file says 'none'
 * and fails in importGguf.
 */
export function ggufDefaultQuantization(file: string): Quantization {
  let header: GgufHeader;
  try {
    header = readGgufHeader(file);
  } catch {
    return 'none';
  }
  // Rows that are not whole blocks of 32 cannot be Q8_0 (llama-quantize leaves them float).
  const matrices = header.tensors.filter((t) => t.name.startsWith('blk.') && t.ne.length === 2 && t.ne[0]! % Q8_0.blockSize === 0);
  return matrices.length > 0 && matrices.every((t) => t.type === Q8_0) ? 'int8' : 'none';
}
