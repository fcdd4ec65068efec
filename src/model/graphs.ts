/**
 * The ONNX graphs of a prepared model: one per decoder block, and one head
 * (final norm + LM head) that serves both as the model's output and as the
 * early-exit ramp on any block's output.
 *
 * Every block graph takes any number of new positions per sequence on top of
 * that sequence's cached past: one (decode), many (prefill), or the run of
 * positions whose deep layers were deferred (the early-exit catch-up pass).
 * The KV cache is updated in place by onnxruntime's GroupQueryAttention
 * (past and present share one preallocated buffer), so no step copies it.
 *
 * @module
 */
import type { ModelConfig } from './checkpoint.js';
import { GraphBuilder, type WeightRef } from './onnx.js';

/** Names of the block graphs' inputs and outputs, shared with the runtime. */
export const BlockIO = {
  hidden: 'hidden', // [batch, seq, dim]
  positions: 'positions', // [batch, seq] int64, absolute positions (rotary models only)
  pastKey: 'past_key', // [batch, kvHeads, context, headDim], also written as present_key
  pastValue: 'past_value',
  seqlensK: 'seqlens_k', // [batch] int32: each row's total length minus one
  totalLength: 'total_sequence_length', // [1] int32: the KV buffer's length
  hiddenOut: 'hidden_out',
  presentKey: 'present_key',
  presentValue: 'present_value',
} as const;

export const HeadIO = { hidden: 'hidden', logits: 'logits' } as const; // [rows, dim] -> [rows, vocab]

const MS = 'com.microsoft';

/** Looks up a tensor's place in weights.bin. */
export type WeightLookup = (name: string) => WeightRef;

/** Weight names as stored in weights.bin (fused and transposed for MatMul). */
export const StoredWeights = {
  embeddings: 'tok_embeddings', // [vocab, dim]
  positionEmbeddings: 'pos_embeddings', // [maxSeqLen, dim], gpt2
  ropeCos: 'rope.cos', // [maxSeqLen, rotaryDim / 2]
  ropeSin: 'rope.sin',
  head: 'output', // [vocab, dim]: tok_embeddings when tied
  finalNorm: 'norm',
  finalNormBias: 'norm_bias',
  layer: (i: number, name: string) => `layers.${i}.${name}`,
} as const;

/** Builds decoder block `layer` of a Llama-architecture model. */
function llamaBlock(config: ModelConfig, layer: number, weight: WeightLookup, weightsFile: string): GraphBuilder {
  const { dim, numHeads, numKvHeads, headDim, hiddenDim, normEps } = config;
  const w = (name: string) => g.weight(StoredWeights.layer(layer, name), weight(StoredWeights.layer(layer, name)));
  const g = new GraphBuilder(`block_${layer}`, weightsFile);
  const x = g.input(BlockIO.hidden, 'float', ['batch', 'seq', dim]);
  const positions = g.input(BlockIO.positions, 'int64', ['batch', 'seq']);
  const kvDims = ['batch', numKvHeads, 'context', headDim];
  const pastKey = g.input(BlockIO.pastKey, 'float', kvDims);
  const pastValue = g.input(BlockIO.pastValue, 'float', kvDims);
  const seqlensK = g.input(BlockIO.seqlensK, 'int32', ['batch']);
  const totalLength = g.input(BlockIO.totalLength, 'int32', [1]);

  // Attention: x + Wo · attn(rope(Wq·n), rope(Wk·n), Wv·n), n = rmsnorm(x)
  const normed = g.op('SimplifiedLayerNormalization', [x, w('attention_norm')], { axis: -1, epsilon: normEps });
  let qkv = g.op('MatMul', [normed, w('wqkv')]);
  if (config.attentionBias) qkv = g.op('Add', [qkv, w('bqkv')]);
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  const [q0, k0, v] = g.node('Split', [qkv, g.constant([qDim, kvDim, kvDim])], { axis: -1 }, 3) as [string, string, string];
  const cos = g.weight(StoredWeights.ropeCos, weight(StoredWeights.ropeCos));
  const sin = g.weight(StoredWeights.ropeSin, weight(StoredWeights.ropeSin));
  const interleaved = config.rope?.layout === 'interleaved' ? 1 : 0;
  const q = g.op('RotaryEmbedding', [q0, positions, cos, sin], { interleaved, num_heads: numHeads }, MS);
  const k = g.op('RotaryEmbedding', [k0, positions, cos, sin], { interleaved, num_heads: numKvHeads }, MS);
  const [attn] = g.node(
    'GroupQueryAttention',
    [q, k, v, pastKey, pastValue, seqlensK, totalLength],
    { num_heads: numHeads, kv_num_heads: numKvHeads },
    ['attn', BlockIO.presentKey, BlockIO.presentValue],
    MS,
  ) as [string];
  const attnOut = g.op('MatMul', [attn, w('wo')]);

  // Feed-forward: h + W2 · (silu(W1·m) * W3·m), m = rmsnorm(h), h = x + attention
  const [ffnIn, , , h] = g.node(
    'SkipSimplifiedLayerNormalization',
    [attnOut, x, w('ffn_norm')],
    { epsilon: normEps },
    4,
    MS,
  ) as [string, string, string, string];
  const gateUp = g.op('MatMul', [ffnIn, w('w13')]);
  const [gate, up] = g.node('Split', [gateUp, g.constant([hiddenDim, hiddenDim])], { axis: -1 }, 2) as [string, string];
  const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
  const down = g.op('MatMul', [act, w('w2')]);
  g.node('Add', [h, down], {}, [BlockIO.hiddenOut]);

  g.output(BlockIO.hiddenOut, 'float', ['batch', 'seq', dim]);
  g.output(BlockIO.presentKey, 'float', kvDims);
  g.output(BlockIO.presentValue, 'float', kvDims);
  return g;
}

/** Builds decoder block `layer` of a GPT-2 model. */
function gpt2Block(config: ModelConfig, layer: number, weight: WeightLookup, weightsFile: string): GraphBuilder {
  const { dim, numHeads, headDim, normEps } = config;
  const w = (name: string) => g.weight(StoredWeights.layer(layer, name), weight(StoredWeights.layer(layer, name)));
  const g = new GraphBuilder(`block_${layer}`, weightsFile);
  const x = g.input(BlockIO.hidden, 'float', ['batch', 'seq', dim]);
  const kvDims = ['batch', numHeads, 'context', headDim];
  const pastKey = g.input(BlockIO.pastKey, 'float', kvDims);
  const pastValue = g.input(BlockIO.pastValue, 'float', kvDims);
  const seqlensK = g.input(BlockIO.seqlensK, 'int32', ['batch']);
  const totalLength = g.input(BlockIO.totalLength, 'int32', [1]);

  const normed = g.op('LayerNormalization', [x, w('attention_norm'), w('attention_norm_bias')], { axis: -1, epsilon: normEps });
  const qkv = g.op('Add', [g.op('MatMul', [normed, w('wqkv')]), w('bqkv')]);
  const [q, k, v] = g.node('Split', [qkv, g.constant([dim, dim, dim])], { axis: -1 }, 3) as [string, string, string];
  const [attn] = g.node(
    'GroupQueryAttention',
    [q, k, v, pastKey, pastValue, seqlensK, totalLength],
    { num_heads: numHeads, kv_num_heads: numHeads },
    ['attn', BlockIO.presentKey, BlockIO.presentValue],
    MS,
  ) as [string];
  const attnOut = g.op('MatMul', [attn, w('wo')]);
  // SkipLayerNormalization adds the output projection's bias, the residual, and normalizes in one kernel.
  const [ffnIn, , , h] = g.node(
    'SkipLayerNormalization',
    [attnOut, x, w('ffn_norm'), w('ffn_norm_bias'), w('bo')],
    { epsilon: normEps },
    4,
    MS,
  ) as [string, string, string, string];
  const up = g.op('FastGelu', [g.op('MatMul', [ffnIn, w('w1')]), w('b1')], {}, MS); // GPT-2's tanh GELU
  const down = g.op('Add', [g.op('MatMul', [up, w('w2')]), w('b2')]);
  g.node('Add', [h, down], {}, [BlockIO.hiddenOut]);

  g.output(BlockIO.hiddenOut, 'float', ['batch', 'seq', dim]);
  g.output(BlockIO.presentKey, 'float', kvDims);
  g.output(BlockIO.presentValue, 'float', kvDims);
  return g;
}

export function buildBlockGraph(config: ModelConfig, layer: number, weight: WeightLookup, weightsFile: string): Uint8Array {
  const build = config.architecture === 'llama' ? llamaBlock : gpt2Block;
  return build(config, layer, weight, weightsFile).toBytes();
}

/** Final norm + LM head over `rows` hidden states: the model's output and every ramp's. */
export function buildHeadGraph(config: ModelConfig, weight: WeightLookup, weightsFile: string): Uint8Array {
  const g = new GraphBuilder('head', weightsFile);
  const x = g.input(HeadIO.hidden, 'float', ['rows', config.dim]);
  const norm = g.weight(StoredWeights.finalNorm, weight(StoredWeights.finalNorm));
  const normed =
    config.architecture === 'llama'
      ? g.op('SimplifiedLayerNormalization', [x, norm], { axis: -1, epsilon: config.normEps })
      : g.op('LayerNormalization', [x, norm, g.weight(StoredWeights.finalNormBias, weight(StoredWeights.finalNormBias))], {
          axis: -1,
          epsilon: config.normEps,
        });
  // The head is stored [vocab, dim] (shared with the embedding when tied), hence transB.
  const head = config.tiedEmbeddings ? StoredWeights.embeddings : StoredWeights.head;
  g.node('Gemm', [normed, g.weight(head, weight(head))], { transB: 1 }, [HeadIO.logits]);
  g.output(HeadIO.logits, 'float', ['rows', config.vocabSize]);
  return g.toBytes();
}
