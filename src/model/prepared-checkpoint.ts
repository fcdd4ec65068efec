/**
 * A float32 prepared model directory read back into the Checkpoint it was
 * compiled from, for exporters: prepare.ts's fused, transposed linear
 * layers are split and transposed back to [out, in]. int8 directories are
 * refused, since their float weights are gone.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { ModelFormatError, type Checkpoint, type Tensor } from './checkpoint.js';
import { StoredWeights } from './graphs.js';
import { readTokenizerFiles } from './hf-llama.js';
import { readManifest, WEIGHTS_FILE } from './manifest.js';
import { rowRange, transpose } from './tensors.js';

/** Reads the float32 prepared model in `dir` as a Checkpoint. */
export function readPreparedCheckpoint(dir: string): Checkpoint {
  const manifest = readManifest(dir);
  if (manifest.quantization !== 'none') {
    throw new ModelFormatError(
      dir,
      `prepared with ${manifest.quantization} weights, whose float values are gone: export the checkpoint it came from (${manifest.source})`,
    );
  }
  const c = manifest.config;
  const weightsFile = path.join(dir, WEIGHTS_FILE);
  const bytes = fs.readFileSync(weightsFile);
  const stored = (name: string): Tensor => {
    const ref = manifest.weights[name];
    if (!ref || ref.type !== 'float' || ref.offset + ref.byteLength > bytes.length)
      throw new ModelFormatError(weightsFile, `no float32 weight ${name} where the manifest says`);
    // A copy: weights.bin's buffer need not be 4-byte aligned at the offset.
    const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset + ref.offset, bytes.byteOffset + ref.offset + ref.byteLength));
    return { dims: ref.dims, data };
  };
  const tensors = new Map<string, Tensor>();
  const keep = (name: string, storedName = name) => tensors.set(name, stored(storedName));
  keep('tok_embeddings', StoredWeights.embeddings);
  keep('norm', StoredWeights.finalNorm);
  if (!c.tiedEmbeddings) keep('output', StoredWeights.head);
  if (c.architecture === 'gpt2') {
    keep('pos_embeddings', StoredWeights.positionEmbeddings);
    keep('norm_bias', StoredWeights.finalNormBias);
  }
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  for (let i = 0; i < c.numLayers; i++) {
    const layer = (name: string) => StoredWeights.layer(i, name);
    const put = (name: string, t: Tensor) => tensors.set(layer(name), t);
    // Linear layers are stored [in, out]: transposing gives [out, in] with the fused parts as row ranges.
    const wqkv = transpose(stored(layer('wqkv')));
    put('wq', rowRange(wqkv, 0, qDim));
    put('wk', rowRange(wqkv, qDim, kvDim));
    put('wv', rowRange(wqkv, qDim + kvDim, kvDim));
    if (c.attentionBias) {
      const bqkv = stored(layer('bqkv'));
      put('bq', rowRange(bqkv, 0, qDim));
      put('bk', rowRange(bqkv, qDim, kvDim));
      put('bv', rowRange(bqkv, qDim + kvDim, kvDim));
    }
    put('wo', transpose(stored(layer('wo'))));
    put('w2', transpose(stored(layer('w2'))));
    for (const name of ['attention_norm', 'ffn_norm']) keep(layer(name));
    if (c.architecture === 'llama') {
      const w13 = transpose(stored(layer('w13')));
      put('w1', rowRange(w13, 0, c.hiddenDim));
      put('w3', rowRange(w13, c.hiddenDim, c.hiddenDim));
    } else {
      put('w1', transpose(stored(layer('w1'))));
      for (const name of ['attention_norm_bias', 'ffn_norm_bias', 'bo', 'b1', 'b2']) keep(layer(name));
    }
  }
  return { config: c, tensors, tokenizer: readTokenizerFiles(dir), source: manifest.source };
}
