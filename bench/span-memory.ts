/**
 * What fused span sessions hold in memory: the process's resident and
 * anonymous memory (Linux smaps_rollup) after loading a model with its fused
 * graph (which makes its spans fused, whatever its size; `--composed`: without,
 * as models over 64 MiB load, so spans are composed of the block sessions), then after each pair of spans a ramp splits the model into (blocks up to
 * the ramp and the ramp, the rest and the head), compiled and run once.
 * Anonymous memory is what onnxruntime copied; weights.bin's mapped pages
 * are file-backed and shared.
 *
 *   npm run build && node dist/bench/span-memory.js [--model M] [--ramps N] [--composed]
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { KvCache, Model, resolveModel, WEIGHTS_FILE } from '../src/model/index.js';

const { values } = parseArgs({ options: { model: { type: 'string', default: 'stories260K' }, ramps: { type: 'string', default: '3' }, composed: { type: 'boolean', default: false } } });
const dir = await resolveModel(values.model);
const model = await Model.load(dir, { device: 'cpu', threads: 1, fused: !values.composed });
const { dim, numLayers } = model.config;

/** Resident and anonymous MiB of this process. */
function memory(): string {
  const rollup = fs.readFileSync('/proc/self/smaps_rollup', 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(rollup)![1]) / 1024;
  return `rss ${field('Rss').toFixed(0)} MiB, anonymous ${field('Anonymous').toFixed(0)} MiB`;
}

const weightsMiB = fs.statSync(`${dir}/${WEIGHTS_FILE}`).size / 2 ** 20;
console.log(`${model.name}: weights.bin ${weightsMiB.toFixed(1)} MiB; loaded (blocks, head, ramps${values.composed ? '' : ', fused'}): ${memory()}`);
const kv = new KvCache(model.config, 1, 64);
const rows = { firstSlot: 0, numRows: 1, seqLen: 1, pastLengths: [8] };
const input = Float32Array.from({ length: dim }, (_, i) => Math.sin(i));
const layers = model.manifest.rampCandidates.filter((_, i, all) => i % Math.max(1, Math.floor(all.length / Number(values.ramps))) === 0);
for (const layer of layers.slice(0, Number(values.ramps))) {
  const hidden = new Float32Array(dim);
  model.runSpan(0, layer, { kind: 'ramp', confidence: 'margin', logits: false }, input, rows, kv, { hidden });
  model.runSpan(layer + 1, numLayers - 1, { kind: 'head' }, hidden, rows, kv, { logits: new Float32Array(model.config.vocabSize) });
  console.log(`+ spans 0-${layer} (ramp) and ${layer + 1}-${numLayers - 1} (head): ${memory()}`);
}
model.release();
