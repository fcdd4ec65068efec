/**
 * What a ramp costs beside a decoder block: milliseconds per call for one
 * and for 16 decoding rows (block, the plain ramp head, the trained ramp when
 * the model has them), and the multiply-adds each does per row.
 *
 *   npm run build && node dist/bench/ramp-cost.js [--model M]
 */
import { parseArgs } from 'node:util';
import { KvCache, Model, resolveModel } from '../src/model/index.js';

const { values } = parseArgs({ options: { model: { type: 'string', default: 'stories260K' } } });
const model = await Model.load(await resolveModel(values.model), { device: 'cpu', threads: 1, fused: false });
const { dim, hiddenDim, numHeads, numKvHeads, headDim, numLayers } = model.config;

/** Median milliseconds of `fn` over 7 rounds of 200 calls, after a warm-up. */
function timeMs(fn: () => void): number {
  for (let i = 0; i < 50; i++) fn();
  const rounds = Array.from({ length: 7 }, () => {
    const started = performance.now();
    for (let i = 0; i < 200; i++) fn();
    return (performance.now() - started) / 200;
  });
  return rounds.sort((a, b) => a - b)[3]!;
}

const blockMacs = dim * (numHeads + 2 * numKvHeads) * headDim + numHeads * headDim * dim + 3 * dim * hiddenDim;
const trained = model.manifest.trainedRamps;
// Without trained ramps, runRamp is the plain ramp head; with them, the plain head is measured as the whole head.
const plainVocab = trained ? model.config.vocabSize : model.rampVocab;
const layer = Math.floor(numLayers / 2);
const share = (macs: number) => (macs / blockMacs).toFixed(2);
const lines = [`${model.name}: a block does ${blockMacs.toLocaleString('en-US')} multiply-adds a row (attention projections + FFN)`];
for (const rows of [1, 16]) {
  const kv = new KvCache(model.config, rows, 64);
  const hidden = Float32Array.from({ length: rows * dim }, (_, i) => Math.sin(i));
  const out = new Float32Array(rows * dim);
  const pastLengths = new Int32Array(rows).fill(32);
  const blockMs = timeMs(() => model.runBlock(layer, hidden, out, { firstSlot: 0, numRows: rows, seqLen: 1, pastLengths }, kv));
  const plainLogits = new Float32Array(rows * plainVocab);
  const plainMs = timeMs(() => (trained ? model.runHead(hidden, rows, plainLogits) : model.runRamp(layer, hidden, rows, plainLogits)));
  lines.push(
    `${rows} row(s): block ${blockMs.toFixed(4)} ms; plain head over ${plainVocab} ids ${plainMs.toFixed(4)} ms = ${(plainMs / blockMs).toFixed(2)} of a block (${share(plainVocab * dim)} of its multiply-adds)`,
  );
  if (trained) {
    const logits = new Float32Array(rows * model.rampWidth);
    const trainedMs = timeMs(() => model.runRamp(layer, hidden, rows, logits));
    const macs = dim * dim + model.rampWidth * dim;
    lines.push(
      `${rows} row(s): trained ramp (${dim}x${dim} map, ${model.rampVocab} candidates + rest) ${trainedMs.toFixed(4)} ms = ${(trainedMs / blockMs).toFixed(2)} of a block (${share(macs)} of its multiply-adds)`,
    );
  }
}
process.stdout.write(`${lines.join('\n')}\n`);
model.release();
