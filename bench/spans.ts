/**
 * What fused spans hold and save. Memory: the process's resident and
 * anonymous memory (Linux smaps_rollup) after loading a model with its
 * fused graph (which makes its spans fused, whatever its size;
 * `--composed`: without, as models over 64 MiB load, so spans are composed
 * of the block sessions), then after each pair of spans a ramp splits the
 * model into (blocks up to the ramp and the ramp, the rest and the head),
 * compiled and run once.
 * Anonymous memory is what onnxruntime copied; weights.bin's mapped pages
 * are file-backed and shared. Time: one decode step (1 and 16 rows) with
 * ramps after blocks 1 and 3, block by block (a call per block and per
 * ramp, then the head) against spans (three calls), and the fused graph
 * with no ramp; medians of 9 rounds of 100.
 *
 *   npm run build && node dist/bench/spans.js [--model M] [--ramps N] [--composed]
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { KvCache, Model, resolveModel, WEIGHTS_FILE } from '../src/model/index.js';

const { values } = parseArgs({
  options: { model: { type: 'string', default: 'stories260K' }, ramps: { type: 'string', default: '3' }, composed: { type: 'boolean', default: false } },
});
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
/** Median microseconds of `fn` over 9 rounds of 100 calls, after a warm-up. */
function timeUs(fn: () => void): number {
  for (let i = 0; i < 50; i++) fn();
  const rounds = Array.from({ length: 9 }, () => {
    const started = performance.now();
    for (let i = 0; i < 100; i++) fn();
    return ((performance.now() - started) / 100) * 1000;
  });
  return rounds.sort((a, b) => a - b)[4]!;
}

const RAMPS = [1, 3];
for (const numRows of [1, 16]) {
  const kv = new KvCache(model.config, numRows, 64);
  const rows = { firstSlot: 0, numRows, seqLen: 1, pastLengths: new Int32Array(numRows).fill(32) };
  const input = Float32Array.from({ length: numRows * dim }, (_, i) => Math.sin(i));
  const [a, b] = [new Float32Array(numRows * dim), new Float32Array(numRows * dim)];
  const rampLogits = new Float32Array(numRows * model.rampWidth);
  const logits = new Float32Array(numRows * model.config.vocabSize);
  const byBlock = timeUs(() => {
    let hidden = input;
    for (let layer = 0; layer < numLayers; layer++) {
      const out = layer % 2 ? b : a;
      model.runBlock(layer, hidden, out, rows, kv);
      if (RAMPS.includes(layer)) model.runRamp(layer, out, numRows, rampLogits);
      hidden = out;
    }
    model.runHead(hidden, numRows, logits);
  });
  const ramp = { kind: 'ramp', confidence: 'margin', logits: false } as const;
  const bySpan = timeUs(() => {
    model.runSpan(0, RAMPS[0]!, ramp, input, rows, kv, { hidden: a });
    model.runSpan(RAMPS[0]! + 1, RAMPS[1]!, ramp, a, rows, kv, { hidden: b });
    model.runSpan(RAMPS[1]! + 1, numLayers - 1, { kind: 'head' }, b, rows, kv, { logits });
  });
  const fused = values.composed ? NaN : timeUs(() => model.runFused(input, rows, kv, logits));
  console.log(
    `${numRows} row(s), ramps after blocks ${RAMPS.join(' and ')}: block by block ${byBlock.toFixed(0)} µs, spans ${bySpan.toFixed(0)} µs; fused, no ramp ${fused.toFixed(0)} µs`,
  );
}
model.release();
