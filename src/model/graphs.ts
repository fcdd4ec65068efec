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
import { INT8_BLOCK_SIZE } from './quantize.js';

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

/**
 * Weight names as stored in weights.bin. Linear layers are fused, and either
 * float [in, out] (transposed for MatMul) or int8 codes [out, in/32, 32] with
 * float scales under `scales(name)` (see quantize.ts).
 */
export const StoredWeights = {
  embeddings: 'tok_embeddings', // [vocab, dim]
  positionEmbeddings: 'pos_embeddings', // [maxSeqLen, dim], gpt2
  ropeCos: 'rope.cos', // [maxSeqLen, rotaryDim / 2]
  ropeSin: 'rope.sin',
  head: 'output', // [vocab, dim] when float32 (the bytes of tok_embeddings when tied); int8 codes otherwise
  finalNorm: 'norm',
  finalNormBias: 'norm_bias',
  layer: (i: number, name: string) => `layers.${i}.${name}`,
  scales: (name: string) => `${name}.scales`, // [out * in/32], for int8 codes stored as `name`
} as const;

/**
 * MatMulNBits' compute type: 4 = int8 (the activations are quantized per
 * block too). On this project's 2-core CPU, twelve 768x2304 weights took
 * 1.9 ms a token this way against about 6 ms in float32 (2 threads); level
 * 0 (float compute) is some 40x slower with 8 bits.
 */
const INT8_ACCURACY_LEVEL = 4;

/** The first `rows` of a weight stored row-major with `storedRows` rows: a byte prefix, so nothing is stored twice. */
function firstRows(ref: WeightRef, storedRows: number, rows: number, dims: number[]): WeightRef {
  return { ...ref, dims, byteLength: (ref.byteLength / storedRows) * rows };
}

/**
 * x [.., inFeatures] times the linear layer `name`, in whichever form prepare
 * stored it: int8 codes (and their scales) run as MatMulNBits, float
 * [in, out] as MatMul.
 *
 * `headRows` marks the LM head, whose float weight stays [vocab, dim] (the
 * embedding's layout, which it may share) and so runs as Gemm with transB.
 * In either form only its first `headRows` rows are scored (the ramps' vocabulary).
 */
function linear(
  g: GraphBuilder,
  weight: WeightLookup,
  x: string,
  name: string,
  inFeatures: number,
  { headRows, output }: { headRows?: number; output?: string } = {},
): string {
  const ref = weight(name);
  const outputs = output ? [output] : 1;
  if (ref.type === 'uint8') {
    const [storedRows, blocks] = ref.dims as [number, number];
    const rows = headRows ?? storedRows;
    const codes = g.weight(name, firstRows(ref, storedRows, rows, [rows, blocks, INT8_BLOCK_SIZE]));
    const scales = g.weight(StoredWeights.scales(name), firstRows(weight(StoredWeights.scales(name)), storedRows, rows, [rows * blocks]));
    const attributes = { K: inFeatures, N: rows, bits: 8, block_size: INT8_BLOCK_SIZE, accuracy_level: INT8_ACCURACY_LEVEL };
    return g.node('MatMulNBits', [x, codes, scales], attributes, outputs, MS)[0]!;
  }
  if (headRows === undefined) return g.node('MatMul', [x, g.weight(name, ref)], {}, outputs)[0]!;
  return g.node('Gemm', [x, g.weight(name, firstRows(ref, ref.dims[0]!, headRows, [headRows, inFeatures]))], { transB: 1 }, outputs)[0]!;
}

/** Names of one block's inputs and outputs inside a graph. */
interface BlockWiring {
  hidden: string;
  positions: string;
  pastKey: string;
  pastValue: string;
  seqlensK: string;
  totalLength: string;
  hiddenOut: string;
  presentKey: string;
  presentValue: string;
}

/** Adds decoder block `layer` of a Llama-architecture model to `g`. */
function llamaBlock(g: GraphBuilder, config: ModelConfig, layer: number, weight: WeightLookup, io: BlockWiring): void {
  const { dim, numHeads, numKvHeads, headDim, hiddenDim, normEps } = config;
  const w = (name: string) => g.weight(StoredWeights.layer(layer, name), weight(StoredWeights.layer(layer, name)));
  const linearLayer = (x: string, name: string, inFeatures: number) => linear(g, weight, x, StoredWeights.layer(layer, name), inFeatures);
  const x = io.hidden;

  // Attention: x + Wo · attn(rope(Wq·n), rope(Wk·n), Wv·n), n = rmsnorm(x)
  const normed = g.op('SimplifiedLayerNormalization', [x, w('attention_norm')], { axis: -1, epsilon: normEps });
  let qkv = linearLayer(normed, 'wqkv', dim);
  if (config.attentionBias) qkv = g.op('Add', [qkv, w('bqkv')]);
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  const [q0, k0, v] = g.node('Split', [qkv, g.constant([qDim, kvDim, kvDim])], { axis: -1 }, 3) as [string, string, string];
  const cos = g.weight(StoredWeights.ropeCos, weight(StoredWeights.ropeCos));
  const sin = g.weight(StoredWeights.ropeSin, weight(StoredWeights.ropeSin));
  const interleaved = config.rope?.layout === 'interleaved' ? 1 : 0;
  const q = g.op('RotaryEmbedding', [q0, io.positions, cos, sin], { interleaved, num_heads: numHeads }, MS);
  const k = g.op('RotaryEmbedding', [k0, io.positions, cos, sin], { interleaved, num_heads: numKvHeads }, MS);
  const [attn] = g.node(
    'GroupQueryAttention',
    [q, k, v, io.pastKey, io.pastValue, io.seqlensK, io.totalLength],
    { num_heads: numHeads, kv_num_heads: numKvHeads },
    [`attn_${layer}`, io.presentKey, io.presentValue],
    MS,
  ) as [string];
  const attnOut = linearLayer(attn, 'wo', qDim);

  // Feed-forward: h + W2 · (silu(W1·m) * W3·m), m = rmsnorm(h), h = x + attention
  const [ffnIn, , , h] = g.node(
    'SkipSimplifiedLayerNormalization',
    [attnOut, x, w('ffn_norm')],
    { epsilon: normEps },
    4,
    MS,
  ) as [string, string, string, string];
  const gateUp = linearLayer(ffnIn, 'w13', dim);
  const [gate, up] = g.node('Split', [gateUp, g.constant([hiddenDim, hiddenDim])], { axis: -1 }, 2) as [string, string];
  const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
  const down = linearLayer(act, 'w2', hiddenDim);
  g.node('Add', [h, down], {}, [io.hiddenOut]);
}

/** Adds decoder block `layer` of a GPT-2 model to `g`. */
function gpt2Block(g: GraphBuilder, config: ModelConfig, layer: number, weight: WeightLookup, io: BlockWiring): void {
  const { dim, hiddenDim, numHeads, normEps } = config;
  const w = (name: string) => g.weight(StoredWeights.layer(layer, name), weight(StoredWeights.layer(layer, name)));
  const linearLayer = (x: string, name: string, inFeatures: number) => linear(g, weight, x, StoredWeights.layer(layer, name), inFeatures);
  const x = io.hidden;
  const normed = g.op('LayerNormalization', [x, w('attention_norm'), w('attention_norm_bias')], { axis: -1, epsilon: normEps });
  const qkv = g.op('Add', [linearLayer(normed, 'wqkv', dim), w('bqkv')]);
  const [q, k, v] = g.node('Split', [qkv, g.constant([dim, dim, dim])], { axis: -1 }, 3) as [string, string, string];
  const [attn] = g.node(
    'GroupQueryAttention',
    [q, k, v, io.pastKey, io.pastValue, io.seqlensK, io.totalLength],
    { num_heads: numHeads, kv_num_heads: numHeads },
    [`attn_${layer}`, io.presentKey, io.presentValue],
    MS,
  ) as [string];
  const attnOut = linearLayer(attn, 'wo', dim);
  // SkipLayerNormalization adds the output projection's bias, the residual, and normalizes in one kernel.
  const [ffnIn, , , h] = g.node(
    'SkipLayerNormalization',
    [attnOut, x, w('ffn_norm'), w('ffn_norm_bias'), w('bo')],
    { epsilon: normEps },
    4,
    MS,
  ) as [string, string, string, string];
  const up = g.op('FastGelu', [linearLayer(ffnIn, 'w1', dim), w('b1')], {}, MS); // GPT-2's tanh GELU
  const down = g.op('Add', [linearLayer(up, 'w2', hiddenDim), w('b2')]);
  g.node('Add', [h, down], {}, [io.hiddenOut]);
}

/** Declares the inputs every block takes, with per-layer KV names when several blocks share a graph. */
function blockInputs(g: GraphBuilder, config: ModelConfig, kvSuffix: string): Omit<BlockWiring, 'hidden' | 'hiddenOut'> {
  const kvDims = ['batch', config.numKvHeads, 'context', config.headDim];
  return {
    positions: config.rope ? g.input(BlockIO.positions, 'int64', ['batch', 'seq']) : '',
    pastKey: g.input(BlockIO.pastKey + kvSuffix, 'float', kvDims),
    pastValue: g.input(BlockIO.pastValue + kvSuffix, 'float', kvDims),
    seqlensK: g.input(BlockIO.seqlensK, 'int32', ['batch']),
    totalLength: g.input(BlockIO.totalLength, 'int32', [1]),
    presentKey: BlockIO.presentKey + kvSuffix,
    presentValue: BlockIO.presentValue + kvSuffix,
  };
}

const addBlock = (config: ModelConfig) => (config.architecture === 'llama' ? llamaBlock : gpt2Block);

/** Adds the final norm + LM head over `hidden` [rows, dim], writing `logits` for token ids below `vocab`. */
function head(g: GraphBuilder, config: ModelConfig, weight: WeightLookup, hidden: string, logits: string, vocab = config.vocabSize): void {
  const norm = g.weight(StoredWeights.finalNorm, weight(StoredWeights.finalNorm));
  const normed =
    config.architecture === 'llama'
      ? g.op('SimplifiedLayerNormalization', [hidden, norm], { axis: -1, epsilon: config.normEps })
      : g.op('LayerNormalization', [hidden, norm, g.weight(StoredWeights.finalNormBias, weight(StoredWeights.finalNormBias))], {
          axis: -1,
          epsilon: config.normEps,
        });
  linear(g, weight, normed, StoredWeights.head, config.dim, { headRows: vocab, output: logits });
}

export function buildBlockGraph(config: ModelConfig, layer: number, weight: WeightLookup, weightsFile: string): Uint8Array {
  const g = new GraphBuilder(`block_${layer}`, weightsFile);
  const hidden = g.input(BlockIO.hidden, 'float', ['batch', 'seq', config.dim]);
  const io = { ...blockInputs(g, config, ''), hidden, hiddenOut: BlockIO.hiddenOut };
  addBlock(config)(g, config, layer, weight, io);
  declareBlockOutputs(g, config, '');
  g.output(BlockIO.hiddenOut, 'float', ['batch', 'seq', config.dim]);
  return g.toBytes();
}

function declareBlockOutputs(g: GraphBuilder, config: ModelConfig, kvSuffix: string): void {
  const kvDims = ['batch', config.numKvHeads, 'context', config.headDim];
  g.output(BlockIO.presentKey + kvSuffix, 'float', kvDims);
  g.output(BlockIO.presentValue + kvSuffix, 'float', kvDims);
}

/**
 * Final norm + LM head over `rows` hidden states. With `vocab` below the
 * model's, the head scores only token ids 0..vocab-1: the ramps' cheaper head.
 * BPE vocabularies put frequent pieces at low ids, and a token outside the
 * set simply cannot exit early (the controller's feedback sees to the rest).
 */
export function buildHeadGraph(config: ModelConfig, weight: WeightLookup, weightsFile: string, vocab = config.vocabSize): Uint8Array {
  const g = new GraphBuilder(vocab === config.vocabSize ? 'head' : 'ramp_head', weightsFile);
  const hidden = g.input(HeadIO.hidden, 'float', ['rows', config.dim]);
  head(g, config, weight, hidden, HeadIO.logits, vocab);
  g.output(HeadIO.logits, 'float', ['rows', vocab]);
  return g.toBytes();
}

/**
 * The whole model as one graph (every block, then the head over the last
 * position of each row), with KV inputs `past_key_{layer}`. Small models,
 * whose time goes to per-call overhead, decode through it whenever no row
 * needs the blocks one at a time (no ramp looked at, nothing deferred); the
 * benchmark also runs it as the floor per-block execution is measured against.
 */
export function buildFusedGraph(config: ModelConfig, weight: WeightLookup, weightsFile: string): Uint8Array {
  const g = new GraphBuilder('fused', weightsFile);
  let hidden = g.input(BlockIO.hidden, 'float', ['batch', 'seq', config.dim]);
  for (let layer = 0; layer < config.numLayers; layer++) {
    const io = { ...blockInputs(g, config, `_${layer}`), hidden, hiddenOut: `hidden_${layer}` };
    addBlock(config)(g, config, layer, weight, io);
    declareBlockOutputs(g, config, `_${layer}`);
    hidden = io.hiddenOut;
  }
  const last = g.op('Gather', [hidden, g.constant([-1], 'int64', [])], { axis: 1 }); // [batch, dim]
  head(g, config, weight, last, HeadIO.logits);
  g.output(HeadIO.logits, 'float', ['batch', config.vocabSize]);
  return g.toBytes();
}
