/**
 * `offramp export --format hf-onnx`: a Checkpoint as the model folder
 * transformers.js loads, so a peer runs on exactly the same weights:
 *
 *   config.json              model_type 'llama' (or 'qwen2' when q/k/v carry a bias) or 'gpt2'
 *   generation_config.json   bos / eos ids
 *   tokenizer.json           as imported (+ tokenizer_config.json when known)
 *   onnx/model.onnx          the whole decoder, standard ONNX operators only (opset 17)
 *   onnx/model.onnx_data     its weights, as ONNX external data
 *
 * The graph is the "optimum-style" decoder with a KV cache: inputs
 * `input_ids`, `attention_mask`, `position_ids`, `past_key_values.{i}.key|value`
 * and `num_logits_to_keep`; outputs `logits` and `present.{i}.key|value`.
 * Attention is spelled out in MatMul/Softmax with one causal + padding mask,
 * so it runs wherever onnxruntime does (no com.microsoft kernels).
 *
 * llama2.c checkpoints rotate interleaved pairs (2i, 2i+1) of each head;
 * Hugging Face Llama rotates halves (i, i + headDim/2). Like Hugging Face's
 * own conversion script, the export permutes wq/wk rows so that each pair
 * becomes a half pair: q·k is unchanged (both sides move alike) and the
 * graph is the standard rotate-half one.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { getTensor, type Checkpoint, type ModelConfig, type Tensor } from './checkpoint.js';
import { GraphBuilder, type Dim, type WeightRef } from './onnx.js';
import { interleavedToHalf, ropeTables, transpose } from './tensors.js';

/** The decoder graph inside an exported folder; transformers.js looks for exactly this name (fp32). */
export const HF_ONNX_MODEL = path.join('onnx', 'model.onnx');
/** transformers.js names the first external data chunk `<model file>_data`. */
const DATA_FILE = 'model.onnx_data';
const ALIGN = 64;
const OPSET = 17;
/** Added to the scores of masked positions: float32's lowest, as Hugging Face does. */
const MASKED = -3.4028234663852886e38;

// ---------------------------------------------------------------------------
// config.json and generation_config.json

/** One id as a number, several as a list (Hugging Face accepts both). */
const idOrList = (ids: number[]): number | number[] | null => (ids.length === 0 ? null : ids.length === 1 ? ids[0]! : ids);

/** What transformers.js itself reads: full precision, weights in `model.onnx_data`. */
const TRANSFORMERS_JS_CONFIG = { dtype: 'fp32', use_external_data_format: true };

function hfConfig(c: ModelConfig): Record<string, unknown> {
  const common = {
    vocab_size: c.vocabSize,
    bos_token_id: c.bosTokenId,
    eos_token_id: idOrList(c.eosTokenIds),
    tie_word_embeddings: c.tiedEmbeddings,
    torch_dtype: 'float32',
    use_cache: true,
    'transformers.js_config': TRANSFORMERS_JS_CONFIG,
  };
  if (c.architecture === 'gpt2') {
    return {
      architectures: ['GPT2LMHeadModel'],
      model_type: 'gpt2',
      n_embd: c.dim,
      n_head: c.numHeads,
      n_layer: c.numLayers,
      n_inner: c.hiddenDim,
      n_positions: c.maxSeqLen,
      n_ctx: c.maxSeqLen,
      layer_norm_epsilon: c.normEps,
      activation_function: 'gelu_new',
      ...common,
    };
  }
  const rope = c.rope!;
  const scaling = rope.scaling && {
    rope_type: 'llama3',
    factor: rope.scaling.factor,
    low_freq_factor: rope.scaling.lowFreqFactor,
    high_freq_factor: rope.scaling.highFreqFactor,
    original_max_position_embeddings: rope.scaling.originalMaxPositions,
  };
  // Llama's `attention_bias` would also put a bias on o_proj; q/k/v-only bias is Qwen2's layout.
  const [architecture, modelType] = c.attentionBias ? ['Qwen2ForCausalLM', 'qwen2'] : ['LlamaForCausalLM', 'llama'];
  return {
    architectures: [architecture],
    model_type: modelType,
    hidden_size: c.dim,
    intermediate_size: c.hiddenDim,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    hidden_act: 'silu',
    max_position_embeddings: c.maxSeqLen,
    rms_norm_eps: c.normEps,
    rope_theta: rope.theta,
    rope_scaling: scaling ?? null,
    attention_bias: false,
    mlp_bias: false,
    ...common,
  };
}

// ---------------------------------------------------------------------------
// Weights: transposed for MatMul, appended to model.onnx_data

/** Appends tensors to the external data file as the graph asks for them, each once. */
class ExternalData {
  private offset = 0;
  constructor(private readonly fd: number) {}

  append(t: Tensor): WeightRef {
    const padding = (ALIGN - (this.offset % ALIGN)) % ALIGN;
    if (padding) fs.writeSync(this.fd, new Uint8Array(padding));
    this.offset += padding;
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    fs.writeSync(this.fd, bytes);
    const ref: WeightRef = { offset: this.offset, byteLength: bytes.length, dims: t.dims, type: 'float' };
    this.offset += bytes.length;
    return ref;
  }
}

// ---------------------------------------------------------------------------
// The decoder graph

/** Everything a block needs from the graph's prelude. */
interface Shared {
  bias: string; // [batch, 1, seq, total]: 0 where a query may attend a key, MASKED elsewhere
  cos: string; // [batch, 1, seq, headDim], rotary models only
  sin: string;
  scale: string; // scalar 1/sqrt(headDim)
}

class DecoderGraph {
  readonly g = new GraphBuilder('decoder', DATA_FILE);
  private readonly stored = new Set<string>();

  constructor(
    private readonly ckpt: Checkpoint,
    private readonly data: ExternalData,
  ) {}

  private get config(): ModelConfig {
    return this.ckpt.config;
  }

  /** A checkpoint tensor, optionally reshaped (transposed, permuted), stored and declared once. */
  weight(name: string, dims: number[], transform: (t: Tensor) => Tensor = (t) => t): string {
    return this.table(name, () => transform(getTensor(this.ckpt, name, dims)));
  }

  /** A tensor computed on first use, stored and declared once. */
  table(name: string, compute: () => Tensor): string {
    if (!this.stored.has(name)) {
      this.stored.add(name);
      this.g.weight(name, this.data.append(compute()));
    }
    return name;
  }

  scalar(value: number, type: 'int64' | 'float' = 'int64'): string {
    return this.g.constant([value], type, []);
  }

  /** Llama's RMSNorm: x / sqrt(mean(x²) + eps) * weight, over the last axis. */
  rmsNorm(x: string, weight: string): string {
    const { g } = this;
    const meanSquare = g.op('ReduceMean', [g.op('Mul', [x, x])], { axes: [-1], keepdims: 1 });
    const inv = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [meanSquare, this.scalar(this.config.normEps, 'float')])])]);
    return g.op('Mul', [g.op('Mul', [x, inv]), weight]);
  }

  layerNorm(x: string, weight: string, bias: string): string {
    return this.g.op('LayerNormalization', [x, weight, bias], { axis: -1, epsilon: this.config.normEps });
  }

  /** GPT-2's tanh GELU: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
  geluTanh(x: string): string {
    const { g } = this;
    const cube = g.op('Mul', [g.op('Mul', [x, x]), x]);
    const inner = g.op('Mul', [g.op('Add', [x, g.op('Mul', [cube, this.scalar(0.044715, 'float')])]), this.scalar(Math.sqrt(2 / Math.PI), 'float')]);
    return g.op('Mul', [g.op('Mul', [x, this.scalar(0.5, 'float')]), g.op('Add', [g.op('Tanh', [inner]), this.scalar(1, 'float')])]);
  }

  /** x·W (+ b) with W stored [in, out]. */
  linear(x: string, layer: number, w: string, dims: number[], b?: string, transform?: (t: Tensor) => Tensor): string {
    const name = `layers.${layer}.${w}`;
    const out = this.g.op('MatMul', [x, this.weight(name, dims, (t) => transpose(transform ? transform(t) : t))]);
    return b === undefined ? out : this.g.op('Add', [out, this.weight(`layers.${layer}.${b}`, [dims[0]!], transform)]);
  }

  /** [batch, seq, heads * headDim] -> [batch, heads, seq, headDim] */
  splitHeads(x: string, heads: number): string {
    const { g } = this;
    const split = g.op('Reshape', [x, g.constant([0, 0, heads, this.config.headDim])]);
    return g.op('Transpose', [split], { perm: [0, 2, 1, 3] });
  }

  /** Rotate-half rotary on [batch, heads, seq, headDim]. */
  rope(x: string, s: Shared): string {
    const { g } = this;
    const half = this.config.headDim / 2;
    const [x1, x2] = g.node('Split', [x, g.constant([half, half])], { axis: -1 }, 2) as [string, string];
    const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: -1 });
    return g.op('Add', [g.op('Mul', [x, s.cos]), g.op('Mul', [rotated, s.sin])]);
  }

  /** [batch, kvHeads, a, b] -> [batch, heads, a, b], each kv head repeated for its group of query heads. */
  repeatKv(x: string, keysLast: boolean): string {
    const { numHeads, numKvHeads, headDim } = this.config;
    if (numHeads === numKvHeads) return x;
    const { g } = this;
    const expanded = g.op('Expand', [g.op('Unsqueeze', [x, g.constant([2])]), g.constant([1, 1, numHeads / numKvHeads, 1, 1])]);
    return g.op('Reshape', [expanded, g.constant(keysLast ? [0, numHeads, headDim, -1] : [0, numHeads, -1, headDim])]);
  }

  /** Causal self-attention over the cache; returns [batch, seq, heads * headDim] and writes present.{layer}. */
  attention(x: string, layer: number, s: Shared): string {
    const { g } = this;
    const { numHeads, numKvHeads, headDim, dim, architecture } = this.config;
    const bias = this.config.attentionBias;
    const qDim = numHeads * headDim;
    const kvDim = numKvHeads * headDim;
    // Interleaved rotary pairs become halves (see the module comment).
    const toHalf = this.config.rope?.layout === 'interleaved' ? (t: Tensor) => interleavedToHalf(t, headDim) : undefined;
    let q = this.splitHeads(this.linear(x, layer, 'wq', [qDim, dim], bias ? 'bq' : undefined, toHalf), numHeads);
    let k = this.splitHeads(this.linear(x, layer, 'wk', [kvDim, dim], bias ? 'bk' : undefined, toHalf), numKvHeads);
    const v = this.splitHeads(this.linear(x, layer, 'wv', [kvDim, dim], bias ? 'bv' : undefined), numKvHeads);
    if (architecture === 'llama') {
      q = this.rope(q, s);
      k = this.rope(k, s);
    }
    // present = past ++ new, along the sequence: [batch, kvHeads, total, headDim]
    const [presentKey] = g.node('Concat', [`past_key_values.${layer}.key`, k], { axis: 2 }, [`present.${layer}.key`]) as [string];
    const [presentValue] = g.node('Concat', [`past_key_values.${layer}.value`, v], { axis: 2 }, [`present.${layer}.value`]) as [string];
    const keysT = this.repeatKv(g.op('Transpose', [presentKey], { perm: [0, 1, 3, 2] }), true); // [batch, heads, headDim, total]
    const values = this.repeatKv(presentValue, false); // [batch, heads, total, headDim]
    const scores = g.op('Add', [g.op('MatMul', [g.op('Mul', [q, s.scale]), keysT]), s.bias]); // [batch, heads, seq, total]
    const context = g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }), values]); // [batch, heads, seq, headDim]
    return g.op('Reshape', [g.op('Transpose', [context], { perm: [0, 2, 1, 3] }), g.constant([0, 0, qDim])]);
  }

  llamaBlock(x: string, layer: number, s: Shared): string {
    const { g } = this;
    const { dim, hiddenDim, numHeads, headDim } = this.config;
    const norm = (name: string) => this.weight(`layers.${layer}.${name}`, [dim]);
    const attn = this.attention(this.rmsNorm(x, norm('attention_norm')), layer, s);
    const h = g.op('Add', [x, this.linear(attn, layer, 'wo', [dim, numHeads * headDim])]);
    const m = this.rmsNorm(h, norm('ffn_norm'));
    const gate = this.linear(m, layer, 'w1', [hiddenDim, dim]);
    const up = this.linear(m, layer, 'w3', [hiddenDim, dim]);
    const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]); // SwiGLU
    return g.op('Add', [h, this.linear(act, layer, 'w2', [dim, hiddenDim])]);
  }

  gpt2Block(x: string, layer: number, s: Shared): string {
    const { g } = this;
    const { dim, hiddenDim } = this.config;
    const norm = (name: string) => this.layerNorm(x, this.weight(`layers.${layer}.${name}`, [dim]), this.weight(`layers.${layer}.${name}_bias`, [dim]));
    const attn = this.attention(norm('attention_norm'), layer, s);
    const h = g.op('Add', [x, this.linear(attn, layer, 'wo', [dim, dim], 'bo')]);
    const m = this.layerNorm(h, this.weight(`layers.${layer}.ffn_norm`, [dim]), this.weight(`layers.${layer}.ffn_norm_bias`, [dim]));
    const up = this.geluTanh(this.linear(m, layer, 'w1', [hiddenDim, dim], 'b1'));
    return g.op('Add', [h, this.linear(up, layer, 'w2', [dim, hiddenDim], 'b2')]);
  }

  build(): Uint8Array {
    const { g } = this;
    const c = this.config;
    const inputIds = g.input('input_ids', 'int64', ['batch_size', 'sequence_length']);
    const attentionMask = g.input('attention_mask', 'int64', ['batch_size', 'total_sequence_length']);
    const positionIds = g.input('position_ids', 'int64', ['batch_size', 'sequence_length']);
    const kvDims: Dim[] = ['batch_size', c.numKvHeads, 'past_sequence_length', c.headDim];
    for (let i = 0; i < c.numLayers; i++) {
      g.input(`past_key_values.${i}.key`, 'float', kvDims);
      g.input(`past_key_values.${i}.value`, 'float', kvDims);
    }
    // How many trailing positions get logits (0: all); transformers.js passes 1 while generating.
    const logitsToKeep = g.input('num_logits_to_keep', 'int64', []);

    // The mask, once for all layers: query at absolute index past + s sees key j when
    // j <= past + s and attention_mask[b, j] is 1 (left padding).
    const seq = g.op('Shape', [inputIds], { start: 1, end: 2 }); // [1]
    const total = g.op('Shape', [attentionMask], { start: 1, end: 2 }); // [1]
    const past = g.op('Sub', [total, seq]);
    const keyIndex = g.op('Range', [this.scalar(0), g.op('Squeeze', [total]), this.scalar(1)]); // [total]
    const queryIndex = g.op('Range', [g.op('Squeeze', [past]), g.op('Squeeze', [total]), this.scalar(1)]); // [seq]
    const causal = g.op('LessOrEqual', [g.op('Unsqueeze', [keyIndex, g.constant([0])]), g.op('Unsqueeze', [queryIndex, g.constant([1])])]); // [seq, total]
    const padding = g.op('Unsqueeze', [g.op('Cast', [attentionMask], { to: 9 }), g.constant([1, 2])]); // bool [batch, 1, 1, total]
    const allowed = g.op('And', [causal, padding]); // [batch, 1, seq, total]
    const shared: Shared = {
      bias: g.op('Where', [allowed, this.scalar(0, 'float'), this.scalar(MASKED, 'float')]),
      cos: '',
      sin: '',
      scale: this.scalar(1 / Math.sqrt(c.headDim), 'float'),
    };

    let x = g.op('Gather', [this.weight('tok_embeddings', [c.vocabSize, c.dim]), inputIds]); // [batch, seq, dim]
    if (c.architecture === 'gpt2') {
      x = g.op('Add', [x, g.op('Gather', [this.weight('pos_embeddings', [c.maxSeqLen, c.dim]), positionIds])]);
    } else {
      // [maxSeqLen, headDim/2] tables gathered by position, then doubled for rotate-half: [batch, 1, seq, headDim]
      const { cos, sin } = ropeTables(c);
      const perPosition = (table: string) => {
        const halfAngles = g.op('Gather', [table, positionIds]);
        return g.op('Unsqueeze', [g.op('Concat', [halfAngles, halfAngles], { axis: -1 }), g.constant([1])]);
      };
      shared.cos = perPosition(this.table('rope.cos', () => cos));
      shared.sin = perPosition(this.table('rope.sin', () => sin));
    }
    for (let layer = 0; layer < c.numLayers; layer++) {
      x = c.architecture === 'llama' ? this.llamaBlock(x, layer, shared) : this.gpt2Block(x, layer, shared);
    }

    // Keep the last num_logits_to_keep positions (a negative start counts from the end).
    const keep = g.op('Reshape', [logitsToKeep, g.constant([1])]);
    const start = g.op('Where', [g.op('Equal', [keep, g.constant([0])]), g.constant([0]), g.op('Neg', [keep])]);
    x = g.op('Slice', [x, start, g.constant([Number.MAX_SAFE_INTEGER]), g.constant([1])]); // [batch, kept, dim]
    const normed =
      c.architecture === 'llama'
        ? this.rmsNorm(x, this.weight('norm', [c.dim]))
        : this.layerNorm(x, this.weight('norm', [c.dim]), this.weight('norm_bias', [c.dim]));
    // The head is [vocab, dim] (the embedding itself when tied): Gemm with transB over [batch * kept, dim].
    const head = this.weight(c.tiedEmbeddings ? 'tok_embeddings' : 'output', [c.vocabSize, c.dim]);
    const rows = g.op('Gemm', [g.op('Reshape', [normed, g.constant([-1, c.dim])]), head], { transB: 1 });
    const outShape = g.op('Concat', [g.op('Shape', [normed], { start: 0, end: 2 }), g.constant([c.vocabSize])], { axis: 0 });
    g.node('Reshape', [rows, outShape], {}, ['logits']);

    g.output('logits', 'float', ['batch_size', 'kept_sequence_length', c.vocabSize]);
    const presentDims: Dim[] = ['batch_size', c.numKvHeads, 'total_sequence_length', c.headDim];
    for (let i = 0; i < c.numLayers; i++) {
      g.output(`present.${i}.key`, 'float', presentDims);
      g.output(`present.${i}.value`, 'float', presentDims);
    }
    return g.toBytes(OPSET);
  }
}

// ---------------------------------------------------------------------------

/**
 * Writes `ckpt` to `outDir` as a transformers.js model folder (see the
 * module comment), replacing what was there only once the new folder is
 * complete.
 *
 * @example
 * exportHfOnnx(importCheckpoint('stories260K.bin', 'tok512.bin'), 'out/stories260K-hf');
 * // transformers.js: env.allowRemoteModels = false;
 * // await AutoModelForCausalLM.from_pretrained(path.resolve('out/stories260K-hf'), { dtype: 'fp32' })
 */
export function exportHfOnnx(ckpt: Checkpoint, outDir: string): void {
  const c = ckpt.config;
  if (c.architecture === 'llama' && (!c.rope || c.headDim % 2 !== 0)) {
    throw new Error(`internal error: llama checkpoint ${ckpt.source} without rotary positions or with an odd head size`);
  }
  const finalDir = path.resolve(outDir);
  fs.mkdirSync(path.dirname(finalDir), { recursive: true });
  const tmpDir = fs.mkdtempSync(`${finalDir}.partial-`);
  try {
    const onnxDir = path.join(tmpDir, path.dirname(HF_ONNX_MODEL));
    fs.mkdirSync(onnxDir);
    const fd = fs.openSync(path.join(onnxDir, DATA_FILE), 'w');
    let graph: Uint8Array;
    try {
      graph = new DecoderGraph(ckpt, new ExternalData(fd)).build();
    } finally {
      fs.closeSync(fd);
    }
    fs.writeFileSync(path.join(tmpDir, HF_ONNX_MODEL), graph);
    const json = (file: string, value: unknown) => fs.writeFileSync(path.join(tmpDir, file), JSON.stringify(value, null, 2) + '\n');
    json('config.json', hfConfig(c));
    json('generation_config.json', { bos_token_id: c.bosTokenId, eos_token_id: idOrList(c.eosTokenIds) });
    fs.writeFileSync(path.join(tmpDir, 'tokenizer.json'), JSON.stringify(ckpt.tokenizer.tokenizer));
    if (ckpt.tokenizer.config) json('tokenizer_config.json', ckpt.tokenizer.config);
    const oldDir = fs.existsSync(finalDir) ? `${tmpDir}.old` : null;
    if (oldDir) fs.renameSync(finalDir, oldDir);
    fs.renameSync(tmpDir, finalDir);
    if (oldDir) fs.rmSync(oldDir, { recursive: true, force: true });
  } catch (error) {
    fs.rmSync(tmpDir, { recursive: true, force: true });
    throw error;
  }
}
