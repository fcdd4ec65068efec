/**
 * Writes a Checkpoint as a GGUF file that llama.cpp loads: `llama.*` or
 * `gpt2.*` hyperparameters, `tokenizer.ggml.*` from the model's
 * tokenizer.json, and tensors under llama.cpp's names (token_embd.weight,
 * blk.N.attn_q.weight, …, output_norm.weight, output.weight when untied;
 * GPT-2 adds position_embd.weight, biases, and one blk.N.attn_qkv).
 *
 * q/k rows are written in the interleaved rotary order llama.cpp's Llama
 * graph expects: a rotate-half (Hugging Face) model's rows are permuted as
 * llama.cpp's converter does.
 *
 * With `type` 'q8_0' or 'q4_0', every matrix whose rows are whole blocks of
 * 32 is quantized as ggml's reference quantizer does; norms, biases and
 * other matrices stay F32 (as llama-quantize leaves what it cannot block).
 *
 * @module
 */
import { getTensor, ModelFormatError, type Checkpoint, type Tensor } from './checkpoint.js';
import { writeGguf, type GgufEntry, type GgufTensorToWrite } from './gguf.js';
import { F32, Q4_0, Q8_0, quantize, type GgmlType } from './gguf-quants.js';
import { ggufTokenizerMetadata } from './gguf-tokenizer.js';
import { concatRows, halfToInterleaved } from './tensors.js';

export const GGUF_TENSOR_TYPES = ['f32', 'q8_0', 'q4_0'] as const;
export type GgufTensorType = (typeof GGUF_TENSOR_TYPES)[number];

/** The type of each --type, and llama.cpp's `general.file_type` code for a file mostly of it. */
const FILE_TYPES: Record<GgufTensorType, { type: GgmlType; fileType: number }> = {
  f32: { type: F32, fileType: 0 },
  q8_0: { type: Q8_0, fileType: 7 },
  q4_0: { type: Q4_0, fileType: 2 },
};

/** GGUF tensor names with the tensors they hold, in file order. */
type NamedTensors = [string, Tensor][];

const u32 = (value: number): GgufEntry => ({ type: 'uint32', value });

/** `llama.*` hyperparameters and tensors; q/k rows in llama.cpp's adjacent-pair rotary order. */
function llamaParts(ckpt: Checkpoint): { metadata: [string, GgufEntry][]; tensors: NamedTensors } {
  const c = ckpt.config;
  if (c.rope?.scaling) throw new ModelFormatError(ckpt.source, 'GGUF export does not write rope scaling (llama.cpp keeps it as a rope_freqs tensor)');
  const metadata: [string, GgufEntry][] = [
    ['llama.context_length', u32(c.maxSeqLen)],
    ['llama.embedding_length', u32(c.dim)],
    ['llama.block_count', u32(c.numLayers)],
    ['llama.feed_forward_length', u32(c.hiddenDim)],
    ['llama.attention.head_count', u32(c.numHeads)],
    ['llama.attention.head_count_kv', u32(c.numKvHeads)],
    ['llama.attention.key_length', u32(c.headDim)],
    ['llama.attention.value_length', u32(c.headDim)],
    ['llama.rope.dimension_count', u32(c.headDim)],
    ['llama.rope.freq_base', { type: 'float32', value: c.rope!.theta }],
    ['llama.attention.layer_norm_rms_epsilon', { type: 'float32', value: c.normEps }],
    ['llama.vocab_size', u32(c.vocabSize)],
  ];
  const get = (name: string, dims: number[]) => getTensor(ckpt, name, dims);
  // llama.cpp rotates adjacent pairs; a rotate-half model's q/k rows go back to that order.
  const rotary = (t: Tensor) => (c.rope!.layout === 'half' ? halfToInterleaved(t, c.headDim) : t);
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const tensors: NamedTensors = [['token_embd.weight', get('tok_embeddings', [c.vocabSize, c.dim])]];
  for (let i = 0; i < c.numLayers; i++) {
    const layer = (name: string, dims: number[]) => get(`layers.${i}.${name}`, dims);
    const blk = (name: string) => `blk.${i}.${name}`;
    tensors.push(
      [blk('attn_norm.weight'), layer('attention_norm', [c.dim])],
      [blk('attn_q.weight'), rotary(layer('wq', [qDim, c.dim]))],
      [blk('attn_k.weight'), rotary(layer('wk', [kvDim, c.dim]))],
      [blk('attn_v.weight'), layer('wv', [kvDim, c.dim])],
    );
    if (c.attentionBias) {
      tensors.push(
        [blk('attn_q.bias'), rotary(layer('bq', [qDim]))],
        [blk('attn_k.bias'), rotary(layer('bk', [kvDim]))],
        [blk('attn_v.bias'), layer('bv', [kvDim])],
      );
    }
    tensors.push(
      [blk('attn_output.weight'), layer('wo', [c.dim, qDim])],
      [blk('ffn_norm.weight'), layer('ffn_norm', [c.dim])],
      [blk('ffn_gate.weight'), layer('w1', [c.hiddenDim, c.dim])],
      [blk('ffn_down.weight'), layer('w2', [c.dim, c.hiddenDim])],
      [blk('ffn_up.weight'), layer('w3', [c.hiddenDim, c.dim])],
    );
  }
  tensors.push(['output_norm.weight', get('norm', [c.dim])]);
  if (!c.tiedEmbeddings) tensors.push(['output.weight', get('output', [c.vocabSize, c.dim])]);
  return { metadata, tensors };
}

/** `gpt2.*` hyperparameters and tensors: LayerNorms with biases, learned positions, one fused q/k/v matrix. */
function gpt2Parts(ckpt: Checkpoint): { metadata: [string, GgufEntry][]; tensors: NamedTensors } {
  const c = ckpt.config;
  const metadata: [string, GgufEntry][] = [
    ['gpt2.context_length', u32(c.maxSeqLen)],
    ['gpt2.embedding_length', u32(c.dim)],
    ['gpt2.block_count', u32(c.numLayers)],
    ['gpt2.feed_forward_length', u32(c.hiddenDim)],
    ['gpt2.attention.head_count', u32(c.numHeads)],
    ['gpt2.attention.layer_norm_epsilon', { type: 'float32', value: c.normEps }],
  ];
  const get = (name: string, dims: number[]) => getTensor(ckpt, name, dims);
  const tensors: NamedTensors = [
    ['token_embd.weight', get('tok_embeddings', [c.vocabSize, c.dim])],
    ['position_embd.weight', get('pos_embeddings', [c.maxSeqLen, c.dim])],
  ];
  for (let i = 0; i < c.numLayers; i++) {
    const layer = (name: string, dims: number[]) => get(`layers.${i}.${name}`, dims);
    const blk = (name: string) => `blk.${i}.${name}`;
    tensors.push(
      [blk('attn_norm.weight'), layer('attention_norm', [c.dim])],
      [blk('attn_norm.bias'), layer('attention_norm_bias', [c.dim])],
      [blk('attn_qkv.weight'), concatRows(['wq', 'wk', 'wv'].map((w) => layer(w, [c.dim, c.dim])))],
      [blk('attn_qkv.bias'), concatRows(['bq', 'bk', 'bv'].map((b) => layer(b, [c.dim])))],
      [blk('attn_output.weight'), layer('wo', [c.dim, c.dim])],
      [blk('attn_output.bias'), layer('bo', [c.dim])],
      [blk('ffn_norm.weight'), layer('ffn_norm', [c.dim])],
      [blk('ffn_norm.bias'), layer('ffn_norm_bias', [c.dim])],
      [blk('ffn_up.weight'), layer('w1', [c.hiddenDim, c.dim])],
      [blk('ffn_up.bias'), layer('b1', [c.hiddenDim])],
      [blk('ffn_down.weight'), layer('w2', [c.dim, c.hiddenDim])],
      [blk('ffn_down.bias'), layer('b2', [c.dim])],
    );
  }
  tensors.push(['output_norm.weight', get('norm', [c.dim])], ['output_norm.bias', get('norm_bias', [c.dim])]);
  if (!c.tiedEmbeddings) tensors.push(['output.weight', get('output', [c.vocabSize, c.dim])]);
  return { metadata, tensors };
}

/** Writes `ckpt` to `file` as GGUF with its matrices in `type`; throws ModelFormatError for what GGUF export cannot say. */
export function exportGguf(ckpt: Checkpoint, file: string, type: GgufTensorType = 'f32'): void {
  const c = ckpt.config;
  const { type: matrixType, fileType } = FILE_TYPES[type];
  const parts = c.architecture === 'llama' ? llamaParts(ckpt) : gpt2Parts(ckpt);
  const metadata = new Map<string, GgufEntry>([
    ['general.architecture', { type: 'string', value: c.architecture }],
    ['general.name', { type: 'string', value: 'offramp export' }],
    ['general.file_type', u32(fileType)],
    ...parts.metadata,
    ...ggufTokenizerMetadata(ckpt.source, ckpt.tokenizer, c),
  ]);
  const tensors = parts.tensors.map(([name, t]): GgufTensorToWrite => {
    const ne = [...t.dims].reverse(); // checkpoints list the contiguous dimension last, GGUF first
    const tensorType = t.dims.length === 2 && ne[0]! % matrixType.blockSize === 0 ? matrixType : F32;
    return { name, ne, type: tensorType, data: quantize(tensorType, t.data) };
  });
  writeGguf(file, metadata, tensors);
}
