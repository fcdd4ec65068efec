/**
 * The ONNX graphs of a prepared model: one per decoder block; the head
 * (final norm + LM head, the model's output); the ramp head, the same head
 * over a smaller vocabulary that scores any block's output for an early
 * exit (see buildHeadGraph); the fused graph of the whole model; and, built
 * at run time, span graphs (blocks from one ramp to the next, and the ramp's
 * exit decision or the head; see buildSpanGraph).
 *
 * Every block graph takes any number of new positions per sequence on top of
 * that sequence's cached past: one (decode), many (prefill), or the run of
 * positions whose deep layers were deferred (the early-exit catch-up pass).
 * The KV cache is an input only. Attention is written in plain ops: the new
 * positions' keys and values are appended to the cached ones inside the
 * graph, and one masked softmax covers both (`attention_mask` hides what a
 * row has not cached and the new positions after each query). Each call
 * returns just the new positions' keys and values (`new_kv`, one output for
 * all the graph's blocks), which the runtime appends to its cache. Two measured reasons, against
 * onnxruntime's GroupQueryAttention updating the cache in place:
 * onnxruntime-node copies every output, the in-place cache included, into a
 * fresh JavaScript buffer after each call (megabytes a step, and the
 * garbage collection after them); and that kernel's per-row, per-head
 * overhead dominated a batched step at small head sizes.
 *
 * @module
 */
import type { ModelConfig } from './checkpoint.js';
import { DataType, GraphBuilder, type WeightRef } from './onnx.js';
import { INT8_BLOCK_SIZE } from './quantize.js';

/** Names of the block graphs' inputs and outputs, shared with the runtime. */
export const BlockIO = {
  hidden: 'hidden', // [batch, seq, dim]
  positions: 'positions', // [batch, seq] int64, absolute positions (rotary models only)
  pastKey: 'past_key', // [batch, kvHeads, context, headDim]: the cache, read only
  pastValue: 'past_value',
  // [batch, 1, heads / kvHeads * seq, context + seq]: 0 where a query may look (its row's cached
  // positions, and the new ones up to its own), -inf elsewhere
  attentionMask: 'attention_mask',
  hiddenOut: 'hidden_out',
  // [2 * blocks * batch, seq, kvHeads * headDim]: per block in the graph, the new positions' keys (rotated), then their
  // values, to append. One output for every block: the binding spends 3-5 µs a call on each output, and ten of them
  // were a sixth of a stories260K fused step.
  newKv: 'new_kv',
} as const;

export const HeadIO = { hidden: 'hidden', logits: 'logits' } as const; // [rows, dim] -> [rows, vocab]

/** The fused graph's own input, which of each row's new positions the head scores ([k] int64; -1 is the last), and the lookahead head's logits (see lookaheadGuess). */
export const FusedIO = { logitPositions: 'logit_positions', lookahead: 'lookahead' } as const;

const MS = 'com.microsoft';

/**
 * Tokens a ramp scores at most: the plain ramps' lowest ids, or the trained
 * ramps' most frequent calibration tokens. A full 32k-50k head costs about as much as three
 * to five decoder blocks of a 110M model, more than an exit saves; the 8,192
 * pieces cost about one block and hold most of what is said.
 */
export const RAMP_VOCAB = 8192;

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
export function linear(
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
  attentionMask: string;
  hiddenOut: string;
  newKey: string; // the block's new keys and values [batch, kvHeads, seq, headDim], packed into BlockIO.newKv
  newValue: string;
}

/**
 * Attention of the new positions over the cached ones and themselves, from
 * the block's fused projection `qkv` [batch, seq, (heads + 2 kvHeads) *
 * headDim], masked by `io.attentionMask`; `rotate` (RoPE) applies to the
 * queries and keys, which are [batch, heads, seq, headDim] by then. One
 * Reshape and one Transpose put every head first, so a Split gives the
 * queries, keys and values in the layout attention reads, and the keys and
 * values as the cache holds them: four kernels fewer per block than
 * rearranging each apart, which counts where a step is dispatch-bound
 * (stories260K). Grouped-query heads share their KV head: the queries of a
 * group are stacked as rows, [batch, kvHeads, group * seq, headDim], so
 * each product is one batched MatMul. (Scoring the cache and the new
 * positions as two products instead, to spare the concatenation's copy,
 * measured 1.6x slower per step: twice the small GEMMs, a Split and a
 * Concat.) Returns [batch, seq, heads * headDim].
 */
function attention(g: GraphBuilder, config: ModelConfig, layer: number, qkv: string, io: BlockWiring, rotate?: (x: string, output: string) => string): string {
  const { numHeads, numKvHeads, headDim } = config;
  const byHead = g.op('Transpose', [g.op('Reshape', [qkv, g.constant([0, 0, numHeads + 2 * numKvHeads, headDim])])], { perm: [0, 2, 1, 3] });
  const split = g.constant([numHeads, numKvHeads, numKvHeads]);
  const [q0, k0, newValues] = rotate
    ? (g.node('Split', [byHead, split], { axis: 1 }, [`q_${layer}`, `k_${layer}`, io.newValue]) as [string, string, string])
    : (g.node('Split', [byHead, split], { axis: 1 }, [`q_${layer}`, io.newKey, io.newValue]) as [string, string, string]);
  const q = rotate ? rotate(q0, `q_rotated_${layer}`) : q0;
  const newKeys = rotate ? rotate(k0, io.newKey) : k0; // [batch, kvHeads, seq, headDim]
  const queries = g.op('Reshape', [q, g.constant([0, numKvHeads, -1, headDim])]);
  const keys = g.op('Concat', [io.pastKey, newKeys], { axis: 2 }); // [batch, kvHeads, context + seq, headDim]
  const values = g.op('Concat', [io.pastValue, newValues], { axis: 2 });
  const scale = { float: 1 / Math.sqrt(headDim) };
  const scores = g.op('Add', [g.op('FusedMatMul', [queries, keys], { transB: 1, alpha: scale }, MS), io.attentionMask]);
  const out = g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }), values]); // [batch, kvHeads, group * seq, headDim]
  const bySeq = g.op('Transpose', [g.op('Reshape', [out, g.constant([0, numHeads, -1, headDim])])], { perm: [0, 2, 1, 3] });
  return g.op('Reshape', [bySeq, g.constant([0, 0, -1])]);
}

/** Block `layer`'s weights by their short names: `w` as a graph input, `linearLayer` applied to x. */
function layerWeights(g: GraphBuilder, weight: WeightLookup, layer: number) {
  return {
    w: (name: string) => g.weight(StoredWeights.layer(layer, name), weight(StoredWeights.layer(layer, name))),
    linearLayer: (x: string, name: string, inFeatures: number) => linear(g, weight, x, StoredWeights.layer(layer, name), inFeatures),
  };
}

/** Adds decoder block `layer` of a Llama-architecture model to `g`. */
function llamaBlock(g: GraphBuilder, config: ModelConfig, layer: number, weight: WeightLookup, io: BlockWiring): void {
  const { dim, numHeads, headDim, hiddenDim, normEps } = config;
  const { w, linearLayer } = layerWeights(g, weight, layer);
  const x = io.hidden;

  // Attention: x + Wo · attn(rope(Wq·n), rope(Wk·n), Wv·n), n = rmsnorm(x)
  const normed = g.op('SimplifiedLayerNormalization', [x, w('attention_norm')], { axis: -1, epsilon: normEps });
  let qkv = linearLayer(normed, 'wqkv', dim);
  if (config.attentionBias) qkv = g.op('Add', [qkv, w('bqkv')]);
  const cos = g.weight(StoredWeights.ropeCos, weight(StoredWeights.ropeCos));
  const sin = g.weight(StoredWeights.ropeSin, weight(StoredWeights.ropeSin));
  const interleaved = config.rope?.layout === 'interleaved' ? 1 : 0;
  const rotate = (x: string, output: string) => g.node('RotaryEmbedding', [x, io.positions, cos, sin], { interleaved }, [output], MS)[0]!;
  const attnOut = linearLayer(attention(g, config, layer, qkv, io, rotate), 'wo', numHeads * headDim);

  // Feed-forward: h + W2 · (silu(W1·m) * W3·m), m = rmsnorm(h), h = x + attention
  const [ffnIn, , , h] = g.node('SkipSimplifiedLayerNormalization', [attnOut, x, w('ffn_norm')], { epsilon: normEps }, 4, MS) as [
    string,
    string,
    string,
    string,
  ];
  const gateUp = linearLayer(ffnIn, 'w13', dim);
  const [gate, up] = g.node('Split', [gateUp, g.constant([hiddenDim, hiddenDim])], { axis: -1 }, 2) as [string, string];
  const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
  const down = linearLayer(act, 'w2', hiddenDim);
  g.node('Add', [h, down], {}, [io.hiddenOut]);
}

/** Adds decoder block `layer` of a GPT-2 model to `g`. */
function gpt2Block(g: GraphBuilder, config: ModelConfig, layer: number, weight: WeightLookup, io: BlockWiring): void {
  const { dim, hiddenDim, normEps } = config;
  const { w, linearLayer } = layerWeights(g, weight, layer);
  const x = io.hidden;
  const normed = g.op('LayerNormalization', [x, w('attention_norm'), w('attention_norm_bias')], { axis: -1, epsilon: normEps });
  const qkv = g.op('Add', [linearLayer(normed, 'wqkv', dim), w('bqkv')]);
  const attnOut = linearLayer(attention(g, config, layer, qkv, io), 'wo', dim);
  // SkipLayerNormalization adds the output projection's bias, the residual, and normalizes in one kernel.
  const [ffnIn, , , h] = g.node('SkipLayerNormalization', [attnOut, x, w('ffn_norm'), w('ffn_norm_bias'), w('bo')], { epsilon: normEps }, 4, MS) as [
    string,
    string,
    string,
    string,
  ];
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
    attentionMask: g.input(BlockIO.attentionMask, 'float', ['batch', 1, 'group_seq', 'context_seq']),
    newKey: `new_key${kvSuffix}`,
    newValue: `new_value${kvSuffix}`,
  };
}

const addBlock = (config: ModelConfig) => (config.architecture === 'llama' ? llamaBlock : gpt2Block);

/** The model's final norm over `hidden` [rows, dim]. */
function finalNorm(g: GraphBuilder, config: ModelConfig, weight: WeightLookup, hidden: string): string {
  const norm = g.weight(StoredWeights.finalNorm, weight(StoredWeights.finalNorm));
  return config.architecture === 'llama'
    ? g.op('SimplifiedLayerNormalization', [hidden, norm], { axis: -1, epsilon: config.normEps })
    : g.op('LayerNormalization', [hidden, norm, g.weight(StoredWeights.finalNormBias, weight(StoredWeights.finalNormBias))], {
        axis: -1,
        epsilon: config.normEps,
      });
}

/** Adds the final norm + LM head over `hidden` [rows, dim], writing `logits` for token ids below `vocab`. */
function head(g: GraphBuilder, config: ModelConfig, weight: WeightLookup, hidden: string, logits: string, vocab = config.vocabSize): void {
  linear(g, weight, finalNorm(g, config, weight, hidden), StoredWeights.head, config.dim, { headRows: vocab, output: logits });
}

export function buildBlockGraph(config: ModelConfig, layer: number, weight: WeightLookup, weightsFile: string): Uint8Array {
  const g = new GraphBuilder(`block_${layer}`, weightsFile);
  const hidden = g.input(BlockIO.hidden, 'float', ['batch', 'seq', config.dim]);
  const io = { ...blockInputs(g, config, ''), hidden, hiddenOut: BlockIO.hiddenOut };
  addBlock(config)(g, config, layer, weight, io);
  packNewKv(g, config, [io]);
  g.output(BlockIO.hiddenOut, 'float', ['batch', 'seq', config.dim]);
  return g.toBytes();
}

/** The blocks' new keys and values as the one BlockIO.newKv output; [batch, kvHeads, seq, headDim] tensors stacked on axis 0 lie as [2 * blocks, batch, ...]. */
function packNewKv(g: GraphBuilder, config: ModelConfig, blocks: BlockWiring[]): void {
  g.node(
    'Concat',
    blocks.flatMap((io) => [io.newKey, io.newValue]),
    { axis: 0 },
    [BlockIO.newKv],
  );
  g.output(BlockIO.newKv, 'float', ['kv_rows', config.numKvHeads, 'seq', config.headDim]);
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
 * Blocks `from`..`to` over `hidden` [batch, seq, dim] with per-layer KV names
 * (`past_key_{layer}`, as in the fused graph); returns the last block's output.
 */
function addBlocks(g: GraphBuilder, config: ModelConfig, weight: WeightLookup, from: number, to: number, hidden: string): string {
  const blocks: BlockWiring[] = [];
  for (let layer = from; layer <= to; layer++) {
    const io = { ...blockInputs(g, config, `_${layer}`), hidden, hiddenOut: `hidden_${layer}` };
    addBlock(config)(g, config, layer, weight, io);
    blocks.push(io);
    hidden = io.hiddenOut;
  }
  packNewKv(g, config, blocks);
  return hidden;
}

/**
 * The whole model as one graph (every block, then the head over the new
 * positions `logit_positions` names: a prompt chunk's last, or every
 * position a lossless pass verifies), with KV inputs `past_key_{layer}`.
 * Small models, whose time goes to per-call overhead, decode through it
 * whenever no row needs the blocks one at a time (no ramp looked at,
 * nothing deferred); the benchmark also runs it as the floor per-block
 * execution is measured against.
 */
export function buildFusedGraph(config: ModelConfig, weight: WeightLookup, weightsFile: string, lookahead?: LookaheadHead): Uint8Array {
  const g = new GraphBuilder(lookahead ? 'fused_lookahead' : 'fused', weightsFile);
  const input = g.input(BlockIO.hidden, 'float', ['batch', 'seq', config.dim]);
  const positions = g.input(FusedIO.logitPositions, 'int64', ['scored']);
  const hidden = addBlocks(g, config, weight, 0, config.numLayers - 1, input);
  const scored = g.op('Gather', [hidden, positions], { axis: 1 }); // [batch, scored, dim]
  const rows = g.op('Reshape', [scored, g.constant([-1, config.dim])]);
  head(g, config, weight, rows, HeadIO.logits);
  g.output(HeadIO.logits, 'float', ['rows', config.vocabSize]);
  if (lookahead) lookaheadGuess(g, config, weight, lookahead, rows);
  return g.toBytes();
}

/** The lookahead head's tensors in ramps.bin (a trained ramp's map, no probe) and the weight of the next token's embedding in its input. */
export interface LookaheadHead {
  weights: Omit<TrainedRampWeights, 'probe'>;
  embeddingScale: number;
  rampsFile: string;
}

/**
 * The lookahead head over the last block's output `hidden` [rows, dim]: the
 * full model's most likely next token (the argmax of HeadIO.logits) is
 * embedded, scaled and added, then a trained ramp's map, norm and candidate
 * rows score the token after it: FusedIO.lookahead [rows, candidates + 1],
 * logits as a ramp's. The caller draws its guess from them as it draws a
 * ramp's token, greedy or sampled.
 */
function lookaheadGuess(g: GraphBuilder, config: ModelConfig, weight: WeightLookup, lookahead: LookaheadHead, hidden: string): void {
  const next = g.op('ArgMax', [HeadIO.logits], { axis: -1, keepdims: 0 });
  const embedded = g.op('Gather', [g.weight(StoredWeights.embeddings, weight(StoredWeights.embeddings)), next], { axis: 0 });
  const scaled = g.op('Mul', [embedded, g.constant([lookahead.embeddingScale], 'float', [])]);
  trainedRamp(g, config, weight, lookahead.weights, lookahead.rampsFile, g.op('Add', [hidden, scaled]), FusedIO.lookahead);
  g.output(FusedIO.lookahead, 'float', ['rows', lookahead.weights.candidateRows.dims[0]! + 1]);
}

/** Where one trained ramp's tensors lie in ramps.bin (see ramp-math.ts and probe-math.ts for the math). */
export interface TrainedRampWeights {
  bias: WeightRef; // [dim]
  up: WeightRef; // [hidden, dim] (out, in)
  upBias: WeightRef; // [hidden]
  linear: WeightRef; // [hidden, dim] (out, in)
  down: WeightRef; // [dim, hidden] (out, in)
  restRow: WeightRef; // [1, dim]
  restBias: WeightRef; // [1]
  candidateRows: WeightRef; // [candidates, dim]: the head's rows of the candidate tokens, shared by every ramp
  probe: { weight: WeightRef; bias: WeightRef; out: WeightRef; outBias: WeightRef }; // [probeHidden, features], [probeHidden], [probeHidden, 1], [1]
}

/** A trained ramp graph's inputs and outputs: the head's, and the probe's confidence [rows]. */
export const RampIO = { ...HeadIO, probe: 'probe' } as const;

/** Epsilon of a trained ramp's own input norm (ramp-math.ts's RAMP_INPUT_EPS). */
const RAMP_INPUT_EPS = 1e-5;

/**
 * A trained ramp: a residual gated MLP over the block's hidden state, the model's
 * own final norm (read from weights.bin), then the head's candidate rows and
 * one "rest" logit for every token outside them: logits [rows, candidates +
 * 1]; and its probe's confidence [rows]. Its own tensors live in `rampsFile`.
 */
export function buildTrainedRampGraph(
  config: ModelConfig,
  layer: number,
  weight: WeightLookup,
  ramp: TrainedRampWeights,
  weightsFile: string,
  rampsFile: string,
): Uint8Array {
  const g = new GraphBuilder(`ramp_${layer}`, weightsFile);
  const hidden = g.input(RampIO.hidden, 'float', ['rows', config.dim]);
  const width = ramp.candidateRows.dims[0]! + 1;
  const states = trainedRamp(g, config, weight, ramp, rampsFile, hidden, RampIO.logits);
  rampProbe(g, ramp, rampsFile, RampIO.logits, states, RampIO.probe);
  g.output(RampIO.logits, 'float', ['rows', width]);
  g.output(RampIO.probe, 'float', ['rows']);
  return g.toBytes();
}

/** What a trained ramp computes on the way to its logits that its probe reads: names of [rows, dim] tensors. */
interface RampStates {
  input: string; // h / rms(h)
  normed: string; // the final norm's output, what the head reads
}

/** Adds a trained ramp over `hidden` [rows, dim], writing `logits` [rows, candidates + 1]. */
function trainedRamp(
  g: GraphBuilder,
  config: ModelConfig,
  weight: WeightLookup,
  ramp: Omit<TrainedRampWeights, 'probe'>,
  rampsFile: string,
  hidden: string,
  logits: string,
): RampStates {
  const own = (name: string, ref: WeightRef) => g.weight(`ramp.${name}`, ref, rampsFile);
  const ones = g.constant(new Array<number>(config.dim).fill(1), 'float', [config.dim]);
  const input = g.op('SimplifiedLayerNormalization', [hidden, ones], { axis: -1, epsilon: RAMP_INPUT_EPS });
  const pre = g.op('Gemm', [input, own('up', ramp.up), own('up_bias', ramp.upBias)], { transB: 1 });
  const lin = g.op('Gemm', [input, own('linear', ramp.linear)], { transB: 1 });
  const gated = g.op('Mul', [g.op('Mul', [pre, g.op('Sigmoid', [pre])]), lin]);
  const translated = g.op('Add', [hidden, g.op('Gemm', [gated, own('down', ramp.down), own('bias', ramp.bias)], { transB: 1 })]);
  const normed = finalNorm(g, config, weight, translated);
  // One product for the candidates and the rest: onnxruntime folds the two Concats of stored tensors when it loads the graph.
  const numCandidates = ramp.candidateRows.dims[0]!;
  const rows = g.op('Concat', [own('candidate_rows', ramp.candidateRows), own('rest_row', ramp.restRow)], { axis: 0 });
  const bias = g.op('Concat', [g.constant(new Array<number>(numCandidates).fill(0), 'float', [numCandidates]), own('rest_bias', ramp.restBias)], { axis: 0 });
  g.node('Gemm', [normed, rows, bias], { transB: 1 }, [logits]);
  return { input, normed };
}

/**
 * Adds a trained ramp's probe (probe-math.ts) over its `logits` and states,
 * writing its confidence [rows] as `output`: features [p1, p2, entropy,
 * normed, input], a SiLU layer, a sigmoid.
 */
function rampProbe(g: GraphBuilder, ramp: TrainedRampWeights, rampsFile: string, logits: string, states: RampStates, output: string): void {
  const own = (name: string, ref: WeightRef) => g.weight(`ramp.probe_${name}`, ref, rampsFile);
  const [values] = g.node('TopK', [logits, g.constant([2])], { axis: -1, largest: 1, sorted: 1 }, 2) as [string, string];
  const [l1, l2] = g.node('Split', [values, g.constant([1, 1])], { axis: -1 }, 2) as [string, string];
  const probs = g.op('Softmax', [logits], { axis: -1 });
  const p1 = g.op('ReduceMax', [probs], { axes: [-1], keepdims: 1 }); // [rows, 1]
  const p2 = g.op('Mul', [p1, g.op('Exp', [g.op('Sub', [l2, l1])])]);
  const negEntropy = g.op('ReduceSum', [g.op('Mul', [probs, g.op('LogSoftmax', [logits], { axis: -1 })]), g.constant([-1])], { keepdims: 1 });
  const entropy = g.op('Neg', [negEntropy]);
  const features = g.op('Concat', [p1, p2, entropy, states.normed, states.input], { axis: -1 });
  const pre = g.op('Gemm', [features, own('weight', ramp.probe.weight), own('bias', ramp.probe.bias)], { transB: 1 });
  const act = g.op('Mul', [pre, g.op('Sigmoid', [pre])]);
  const logit = g.op('Gemm', [act, own('out', ramp.probe.out), own('out_bias', ramp.probe.outBias)]); // [rows, 1]
  g.node('Squeeze', [g.op('Sigmoid', [logit]), g.constant([-1])], {}, [output]);
}

/** Names of a span graph's outputs beyond the blocks' new keys and values (see buildSpanGraph). */
export const SpanIO = {
  hiddenOut: 'hidden_out', // [batch, seq, dim]: the last block's output (spans that end at a ramp)
  rampTop: 'ramp_top', // [rows, 2] int32: the ramp's two best columns, best first (rows = batch * seq)
  rampConfidence: 'ramp_confidence', // [rows]: the ramp's confidence over its whole row
  rampLogits: 'ramp_logits', // [rows, ramp width], only when asked for
  logits: 'logits', // [rows, vocab]: the head, for spans that end the model
} as const;

/**
 * How a ramp's confidence is scored: the same kinds, and the same formulas, as src/exits' scoreLogits;
 * 'probe' is a trained ramp's own probe (the margin for ramps without one).
 */
export type RampConfidence = 'margin' | 'max-prob' | 'entropy' | 'probe';

/** What a span computes after its last block. */
export type SpanEnd =
  | { kind: 'head' } // the model's head over every position: the span ends the model
  | { kind: 'ramp'; confidence: RampConfidence; logits: boolean } // the ramp's decision, and its logits when `logits`
  | { kind: 'hidden' }; // nothing: the next span takes the output

/** The ramp a span ends at (null for other ends): the trained ramp after its last block, or the plain ramp head over the first `vocab` ids. */
export type SpanRamp = { trained: TrainedRampWeights; rampsFile: string } | { vocab: number };

/**
 * Confidence of each row of `logits` [rows, width] as scoreLogits computes
 * it (src/exits/confidence.ts), in float32, and the two best columns: margin
 * p1 − p2 = p1 · (1 − exp(l2 − l1)), max-prob p1, entropy 1 − H / ln(width);
 * 'probe' takes `probe` [rows] (a trained ramp's) as it is, or the margin
 * where there is none. TopK is taken on the logits, not the probabilities,
 * so that ties that only appear after rounding to probabilities cannot
 * change the best column; on equal logits onnxruntime's TopK puts the lower
 * index first, as argmax does.
 */
function rampDecision(g: GraphBuilder, logits: string, width: number, kind: RampConfidence, probe: string | null): void {
  const [values, top] = g.node('TopK', [logits, g.constant([2])], { axis: -1, largest: 1, sorted: 1 }, 2) as [string, string];
  g.node('Cast', [top], { to: DataType.int32 }, [SpanIO.rampTop]);
  let confidence: string;
  if (kind === 'probe' && probe) {
    confidence = probe;
  } else {
    const probs = g.op('Softmax', [logits], { axis: -1 });
    const p1 = g.op('ReduceMax', [probs], { axes: [-1], keepdims: 0 });
    if (kind === 'margin' || kind === 'probe') {
      const [l1, l2] = g.node('Split', [values, g.constant([1, 1])], { axis: -1 }, 2) as [string, string];
      const ratio = g.op('Exp', [g.op('Sub', [l2, l1])]);
      confidence = g.op('Mul', [p1, g.op('Squeeze', [g.op('Sub', [g.constant([1], 'float', []), ratio]), g.constant([-1])])]);
    } else if (kind === 'max-prob') {
      confidence = p1;
    } else {
      const negEntropy = g.op('ReduceSum', [g.op('Mul', [probs, g.op('LogSoftmax', [logits], { axis: -1 })]), g.constant([-1])], { keepdims: 0 });
      confidence = g.op('Add', [g.constant([1], 'float', []), g.op('Div', [negEntropy, g.constant([Math.log(width)], 'float', [])])]);
    }
  }
  g.node('Clip', [confidence, g.constant([0], 'float', []), g.constant([1], 'float', [])], {}, [SpanIO.rampConfidence]);
  g.output(SpanIO.rampTop, 'int32', ['rows', 2]);
  g.output(SpanIO.rampConfidence, 'float', ['rows']);
}

/**
 * The exit decision alone, over ramp logits [rows, width] computed by the
 * ramp's own graph: what a span's end does (rampDecision), for models whose
 * spans are not fused (see Model.runSpan). It has no weights. With `probe`,
 * it also takes the trained ramp's probe [rows] (RampIO.probe), which
 * 'probe' confidence passes through.
 */
export function buildDecisionGraph(width: number, kind: RampConfidence, probe = false): Uint8Array {
  const g = new GraphBuilder(`decision_${kind}`, '');
  const probeInput = probe ? g.input(RampIO.probe, 'float', ['rows']) : null;
  rampDecision(g, g.input(HeadIO.logits, 'float', ['rows', width]), width, kind, probeInput);
  return g.toBytes();
}

/**
 * Blocks `from`..`to` in one graph, and what the step needs after them
 * (`end`): a decode step with ramps after blocks r1 < … < rk makes k + 1
 * calls instead of one per block and ramp. Inputs as the fused graph's
 * (`past_key_{layer}` per block), outputs every block's new keys and values.
 * A span that ends at a ramp returns its output hidden state (the next span
 * or the deferred catch-up starts from it) and, per position, only what the
 * exit decision reads: the ramp's two best columns and its confidence
 * (rampDecision); its logits only when asked, for rows that sample at a
 * temperature or want logprobs. A span that ends the model returns the
 * head's logits at every position: the catch-up's verdicts need them all.
 * Returns the graph and the bytes of the weights it reads.
 */
export function buildSpanGraph(
  config: ModelConfig,
  from: number,
  to: number,
  end: SpanEnd,
  weight: WeightLookup,
  weightsFile: string,
  ramp: SpanRamp | null,
): { graph: Uint8Array; weightBytes: number } {
  const g = new GraphBuilder(`span_${from}_${to}_${end.kind}`, weightsFile);
  const input = g.input(BlockIO.hidden, 'float', ['batch', 'seq', config.dim]);
  const hidden = addBlocks(g, config, weight, from, to, input);
  if (end.kind !== 'head') {
    g.node('Identity', [hidden], {}, [SpanIO.hiddenOut]);
    g.output(SpanIO.hiddenOut, 'float', ['batch', 'seq', config.dim]);
  }
  if (end.kind === 'hidden') return { graph: g.toBytes(), weightBytes: g.weightBytes };
  const rows = g.op('Reshape', [hidden, g.constant([-1, config.dim])]); // [batch * seq, dim]
  if (end.kind === 'head') {
    head(g, config, weight, rows, SpanIO.logits);
    g.output(SpanIO.logits, 'float', ['rows', config.vocabSize]);
    return { graph: g.toBytes(), weightBytes: g.weightBytes };
  }
  if (!ramp) throw new Error(`internal error: span ${from}-${to} ends at a ramp but has none`);
  const width = 'trained' in ramp ? ramp.trained.candidateRows.dims[0]! + 1 : ramp.vocab;
  const logits = end.logits ? SpanIO.rampLogits : 'ramp_logits_internal';
  let probe: string | null = null;
  if ('trained' in ramp) {
    const states = trainedRamp(g, config, weight, ramp.trained, ramp.rampsFile, rows, logits);
    // The probe only where the decision reads it: other kinds leave it out of the graph.
    if (end.confidence === 'probe') {
      probe = 'ramp_probe';
      rampProbe(g, ramp.trained, ramp.rampsFile, logits, states, probe);
    }
  } else {
    head(g, config, weight, rows, logits, ramp.vocab);
  }
  if (end.logits) g.output(SpanIO.rampLogits, 'float', ['rows', width]);
  rampDecision(g, logits, width, end.confidence, probe);
  return { graph: g.toBytes(), weightBytes: g.weightBytes };
}
