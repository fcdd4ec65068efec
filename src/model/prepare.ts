/**
 * Compiles an imported Checkpoint into a prepared model directory:
 *
 *   manifest.json          shapes, conventions, where each weight lies, graph files
 *   weights.bin            every weight once, 64-byte aligned (ONNX external data);
 *                          linear layers in float32, or int8 blocks with `quantization: 'int8'`
 *   block_{i}.onnx         decoder block i
 *   head.onnx              final norm + LM head (the output, and every plain ramp)
 *   ramps.bin, ramp_{i}.onnx  trained ramps, when trained (see train-ramps.ts)
 *   tokenizer.json         Hugging Face tokenizer (+ tokenizer_config.json when known)
 *
 * The directory appears whole or not at all: it is written (and its ramps
 * trained) beside its final place and renamed into it.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { getTensor, type Checkpoint, type Tensor } from './checkpoint.js';
import { buildBlockGraph, buildFusedGraph, buildHeadGraph, RAMP_VOCAB, StoredWeights } from './graphs.js';
import { MANIFEST_FILE, MANIFEST_FORMAT, WEIGHTS_FILE, type Manifest, type Quantization } from './manifest.js';
import type { WeightRef } from './onnx.js';
import { quantizeInt8 } from './quantize.js';
import { writeWeights, type StoredTensor } from './weights-file.js';
import { installShippedRamps } from './ramps-store.js';
import { concatRows, ropeTables, transpose } from './tensors.js';

/**
 * Whether compiling also trains the ramps: 'auto' (the default) installs the
 * ramps shipped for this very checkpoint (models/NAME.ramps/), or else lets
 * the trainer decide (src/ramps trains when that is quick, and otherwise
 * says how long it would take); 'on' always trains; 'off' leaves plain-head
 * ramps (`offramp train-ramps` later).
 */
export type TrainRampsMode = 'auto' | 'on' | 'off';

/**
 * Trains the ramps of a compiled model directory in place and returns its
 * new manifest, or leaves it as it is and says why. It lives above the model
 * layer (src/ramps: training generates text and scores exits), so compiling
 * takes it as an option; without one, ramps stay the plain head.
 */
export type RampTrainer = (dir: string, context: { mode: 'auto' | 'on'; finalDir: string; log: (line: string) => void }) => Promise<Manifest>;

export interface PrepareOptions {
  /** How the linear layers' weights are stored (default 'none': float32). */
  quantization?: Quantization;
  trainRamps?: TrainRampsMode;
  trainer?: RampTrainer;
  /** Progress lines (to stderr in the CLI). */
  log?: (line: string) => void;
}

/**
 * Adds a linear layer's weight to `out`, given [out, in] as checkpoints hold
 * it, in the form the graphs' `linear` reads: float32 transposed to
 * [in, out], or int8 codes and their scales. (A float32 LM head is stored
 * [out, in] as it is: see storedTensors.)
 */
export function storeLinear(out: Map<string, StoredTensor>, name: string, weight: Tensor, quantization: Quantization): void {
  if (quantization === 'none') return void out.set(name, transpose(weight));
  const { dims, codes, scales } = quantizeInt8(weight);
  out.set(name, { dims, data: codes });
  out.set(StoredWeights.scales(name), { dims: [scales.length], data: scales });
}

/**
 * The tensors as the graphs read them: linear layers fused and either
 * transposed to [in, out] or quantized, rotary tables added. A float32 head
 * tied to the embedding is not stored apart (see prepareModel).
 */
function storedTensors(ckpt: Checkpoint, quantization: Quantization): Map<string, StoredTensor> {
  const c = ckpt.config;
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const get = (name: string, dims: number[]) => getTensor(ckpt, name, dims);
  const out = new Map<string, StoredTensor>();
  const putLinear = (name: string, weight: Tensor) => storeLinear(out, name, weight, quantization);
  const embeddings = get('tok_embeddings', [c.vocabSize, c.dim]);
  out.set(StoredWeights.embeddings, embeddings); // float32 always: the runtime looks tokens up in it
  const head = c.tiedEmbeddings ? embeddings : get('output', [c.vocabSize, c.dim]);
  // The head stays [vocab, dim] in float32 (Gemm with transB), so a tied one is the embedding's bytes.
  if (quantization === 'int8') putLinear(StoredWeights.head, head);
  else if (!c.tiedEmbeddings) out.set(StoredWeights.head, head);
  out.set(StoredWeights.finalNorm, get('norm', [c.dim]));
  if (c.architecture === 'llama') {
    const { cos, sin } = ropeTables(c);
    out.set(StoredWeights.ropeCos, cos);
    out.set(StoredWeights.ropeSin, sin);
  } else {
    out.set(StoredWeights.positionEmbeddings, get('pos_embeddings', [c.maxSeqLen, c.dim]));
    out.set(StoredWeights.finalNormBias, get('norm_bias', [c.dim]));
  }
  for (let i = 0; i < c.numLayers; i++) {
    const layer = (name: string, dims: number[]) => get(`layers.${i}.${name}`, dims);
    const put = (name: string, t: Tensor) => out.set(StoredWeights.layer(i, name), t);
    const linear = (name: string, t: Tensor) => putLinear(StoredWeights.layer(i, name), t);
    put('attention_norm', layer('attention_norm', [c.dim]));
    put('ffn_norm', layer('ffn_norm', [c.dim]));
    linear('wqkv', concatRows([layer('wq', [qDim, c.dim]), layer('wk', [kvDim, c.dim]), layer('wv', [kvDim, c.dim])]));
    if (c.attentionBias) put('bqkv', concatRows([layer('bq', [qDim]), layer('bk', [kvDim]), layer('bv', [kvDim])]));
    linear('wo', layer('wo', [c.dim, qDim]));
    linear('w2', layer('w2', [c.dim, c.hiddenDim]));
    if (c.architecture === 'llama') {
      linear('w13', concatRows([layer('w1', [c.hiddenDim, c.dim]), layer('w3', [c.hiddenDim, c.dim])]));
    } else {
      put('attention_norm_bias', layer('attention_norm_bias', [c.dim]));
      put('ffn_norm_bias', layer('ffn_norm_bias', [c.dim]));
      put('bo', layer('bo', [c.dim]));
      linear('w1', layer('w1', [c.hiddenDim, c.dim]));
      put('b1', layer('b1', [c.hiddenDim]));
      put('b2', layer('b2', [c.dim]));
    }
  }
  return out;
}

/** Compiles `ckpt` into `outDir` and trains its ramps (see TrainRampsMode), replacing what was there only once the new directory is complete. */
export async function prepareModel(ckpt: Checkpoint, outDir: string, options: PrepareOptions = {}): Promise<Manifest> {
  const { quantization = 'none', trainRamps: mode = 'auto', trainer, log = () => {} } = options;
  const finalDir = path.resolve(outDir);
  fs.mkdirSync(path.dirname(finalDir), { recursive: true });
  const tmpDir = fs.mkdtempSync(`${finalDir}.partial-`);
  try {
    const config = ckpt.config;
    const weights = writeWeights(path.join(tmpDir, WEIGHTS_FILE), storedTensors(ckpt, quantization));
    // A tied float32 head is the embedding's bytes: recorded under the head's name too, which the graphs read.
    weights[StoredWeights.head] ??= weights[StoredWeights.embeddings]!;
    const lookup = (name: string): WeightRef => {
      const ref = weights[name];
      if (!ref) throw new Error(`internal error: graph needs weight ${name}, which was not stored`);
      return ref;
    };
    const blocks = Array.from({ length: config.numLayers }, (_, i) => {
      const file = `block_${i}.onnx`;
      fs.writeFileSync(path.join(tmpDir, file), buildBlockGraph(config, i, lookup, WEIGHTS_FILE));
      return file;
    });
    fs.writeFileSync(path.join(tmpDir, 'head.onnx'), buildHeadGraph(config, lookup, WEIGHTS_FILE));
    const rampVocab = Math.min(config.vocabSize, RAMP_VOCAB);
    const ramp = rampVocab === config.vocabSize ? { file: 'head.onnx', vocab: rampVocab } : { file: 'ramp_head.onnx', vocab: rampVocab };
    if (ramp.file !== 'head.onnx') fs.writeFileSync(path.join(tmpDir, ramp.file), buildHeadGraph(config, lookup, WEIGHTS_FILE, rampVocab));
    fs.writeFileSync(path.join(tmpDir, 'fused.onnx'), buildFusedGraph(config, lookup, WEIGHTS_FILE));
    fs.writeFileSync(path.join(tmpDir, 'tokenizer.json'), JSON.stringify(ckpt.tokenizer.tokenizer));
    if (ckpt.tokenizer.config) {
      fs.writeFileSync(path.join(tmpDir, 'tokenizer_config.json'), JSON.stringify(ckpt.tokenizer.config, null, 2));
    }
    let manifest: Manifest = {
      format: MANIFEST_FORMAT,
      source: ckpt.source,
      config,
      quantization,
      graphs: { blocks, head: 'head.onnx', ramp, fused: 'fused.onnx' },
      // A ramp can follow any block but the last (whose output is the model's own).
      rampCandidates: Array.from({ length: config.numLayers - 1 }, (_, i) => i),
      trainedRamps: null,
      weights,
    };
    fs.writeFileSync(path.join(tmpDir, MANIFEST_FILE), JSON.stringify(manifest, null, 2));
    const shipped = mode === 'auto' ? installShippedRamps(tmpDir, manifest, ckpt) : null;
    if (shipped) {
      manifest = shipped.manifest;
      log(`ramps: the ones trained for this checkpoint, from ${shipped.from}`);
    } else if (mode !== 'off' && trainer) {
      manifest = await trainer(tmpDir, { mode, finalDir, log });
    } else if (mode !== 'off') {
      log('ramps left untrained (plain head): `offramp train-ramps` trains them');
    }
    const oldDir = fs.existsSync(finalDir) ? `${tmpDir}.old` : null;
    if (oldDir) fs.renameSync(finalDir, oldDir);
    fs.renameSync(tmpDir, finalDir);
    if (oldDir) fs.rmSync(oldDir, { recursive: true, force: true });
    return manifest;
  } catch (error) {
    fs.rmSync(tmpDir, { recursive: true, force: true });
    throw error;
  }
}
