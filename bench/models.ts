/**
 * The bench's models: a prepared directory for offramp, and the same weights
 * exported in the layout transformers.js loads (for the peer) and as GGUF
 * (for llama.cpp), all cached under models/prepared/ (git-ignored).
 *
 * - stories260K: the published llama2.c checkpoint in ../shared/models (real
 *   weights, so exits and agreement mean something).
 * - a synth shape (stories15M, stories110M, ...): random weights of a real
 *   shape, seed 0 (speed at realistic size only; exits say nothing there).
 *
 * Either compiled with float32 or int8 linear layers (`--quantize`).
 *
 * @module
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  exportGguf,
  exportHfOnnx,
  importLlama2c,
  isPreparedModel,
  prepareModel,
  quantizationSuffix,
  readManifest,
  resolveModel,
  SYNTH_SHAPES,
  synthCheckpoint,
  synthTokenizer,
  weightsLabel,
  type Checkpoint,
  type GgufTensorType,
  type Quantization,
  type SynthShape,
} from '../src/model/index.js';
import { PROJECT_ROOT } from '../src/util/index.js';

export const SHARED_MODELS = path.join(PROJECT_ROOT, '..', 'shared', 'models');
const PREPARED = path.join(PROJECT_ROOT, 'models', 'prepared');
const STORIES260K = {
  checkpoint: path.join(SHARED_MODELS, 'stories260K', 'stories260K.bin'),
  tokenizer: path.join(SHARED_MODELS, 'stories260K', 'tok512.bin'),
};

export interface BenchModel {
  name: string;
  /** True for stories260K: a trained model, whose exits and agreement are meaningful. */
  realWeights: boolean;
  /** offramp's prepared directory. */
  dir: string;
  maxSeqLen: number;
}

function checkName(name: string): void {
  if (name !== 'stories260K' && !(name in SYNTH_SHAPES))
    throw new Error(`unknown bench model ${JSON.stringify(name)}: stories260K or one of ${Object.keys(SYNTH_SHAPES).join(', ')}`);
}

/** offramp's prepared directory for `name`, compiled once per quantization. */
export async function prepareBenchModel(name: string, log: (line: string) => void, quantization: Quantization = 'none'): Promise<BenchModel> {
  checkName(name);
  let dir: string;
  if (name === 'stories260K') {
    dir = await resolveModel(STORIES260K.checkpoint, { tokenizer: STORIES260K.tokenizer, quantization, log });
  } else {
    dir = path.join(PREPARED, `synth-${name}-seed0${quantizationSuffix(quantization)}`);
    if (!isPreparedModel(dir)) {
      log(`writing random-weight ${name} (${weightsLabel(quantization)} weights) to ${dir}`);
      // Random weights: trained ramps would say nothing, and the benchmark measures cost only.
      const ckpt = synthCheckpoint(name as SynthShape, 0, synthTokenizer(name as SynthShape, path.join(SHARED_MODELS, 'tokenizers')));
      await prepareModel(ckpt, dir, { quantization, trainRamps: 'off' });
    }
  }
  return { name, realWeights: name === 'stories260K', dir, maxSeqLen: readManifest(dir).config.maxSeqLen };
}

function checkpointOf(name: string): Checkpoint {
  if (name === 'stories260K') return importLlama2c(STORIES260K.checkpoint, STORIES260K.tokenizer);
  return synthCheckpoint(name as SynthShape, 0, synthTokenizer(name as SynthShape, path.join(SHARED_MODELS, 'tokenizers')));
}

/**
 * The exporter's own code (`exporter`, a module of src/model) is part of the
 * cache key: the exporters are still changing, and a stale export would bench
 * yesterday's graph.
 */
function exportKey(name: string, exporter: string): string {
  const hash = createHash('sha256');
  hash.update(fs.readFileSync(fileURLToPath(new URL(`../src/model/${exporter}`, import.meta.url))));
  if (name === 'stories260K') {
    for (const file of [STORIES260K.checkpoint, STORIES260K.tokenizer]) {
      const stat = fs.statSync(file);
      hash.update(`${file}:${stat.size}:${stat.mtimeMs}\n`);
    }
  } else {
    hash.update(`synth:${name}:seed0\n`);
  }
  return hash.digest('hex').slice(0, 12);
}

/** The peer's folder (exportHfOnnx's layout), exported once per model and exporter version. */
export function exportPeerModel(name: string, log: (line: string) => void): string {
  checkName(name);
  const dir = path.join(PREPARED, 'hf-onnx', `${name}-${exportKey(name, 'export-hf.js')}`);
  if (fs.existsSync(path.join(dir, 'config.json'))) return dir;
  log(`exporting ${name} for transformers.js into ${dir}`);
  const partial = `${dir}.partial-${process.pid}`;
  fs.rmSync(partial, { recursive: true, force: true });
  exportHfOnnx(checkpointOf(name), partial);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(partial, dir);
  // Exports by older exporter versions are dead weight (stories110M's is 440 MB).
  for (const old of fs.readdirSync(path.dirname(dir))) {
    if (old.startsWith(`${name}-`) && !old.includes('.partial-') && path.join(path.dirname(dir), old) !== dir) {
      fs.rmSync(path.join(path.dirname(dir), old), { recursive: true, force: true });
    }
  }
  return dir;
}

/** The llama.cpp peer's GGUF file (`type`: F32 by default, exportGguf), written once per model, type and exporter version. */
export function exportGgufPeerModel(name: string, log: (line: string) => void, type: GgufTensorType = 'f32'): string {
  checkName(name);
  const dir = path.join(PREPARED, 'gguf');
  const stem = `${name}-${type}-`;
  const file = path.join(dir, `${stem}${exportKey(name, 'gguf-export.js')}.gguf`);
  if (fs.existsSync(file)) return file;
  log(`exporting ${name} as ${type.toUpperCase()} GGUF for llama.cpp into ${file}`);
  fs.mkdirSync(dir, { recursive: true });
  exportGguf(checkpointOf(name), file, type); // written beside and renamed: never half a file
  for (const old of fs.readdirSync(dir)) {
    if (old.startsWith(stem) && old.endsWith('.gguf') && path.join(dir, old) !== file) fs.rmSync(path.join(dir, old), { force: true });
  }
  return file;
}
