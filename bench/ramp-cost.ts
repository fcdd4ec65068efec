/**
 * What a ramp costs beside a decoder block: milliseconds per call for one
 * and for 16 decoding rows (block, the plain ramp head, the trained ramp
 * with and without its probe when the model has them), the multiply-adds
 * each does per row, and what a ramp costs beside the blocks an exit there
 * skips.
 *
 *   npm run build && node dist/bench/ramp-cost.js [--model M]
 */
import { parseArgs } from 'node:util';
import { blockMacs, KvCache, Model, resolveModel } from '../src/model/index.js';

const { values } = parseArgs({ options: { model: { type: 'string', default: 'stories260K' } } });
const model = await Model.load(await resolveModel(values.model), { device: 'cpu', threads: 1, fused: false });
const { dim, numLayers } = model.config;

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

const block = blockMacs(model.config);
const trained = model.manifest.trainedRamps;
// Without trained ramps, runRamp is the plain ramp head; with them, the plain head is measured as the whole head.
const plainVocab = trained ? model.config.vocabSize : model.rampVocab;
const layer = Math.floor(numLayers / 2);
const share = (macs: number) => (macs / block).toFixed(2);
const lines = [`${model.name}: a block does ${block.toLocaleString('en-US')} multiply-adds a row (attention projections + FFN)`];
const ms: Record<string, number> = {};
for (const rows of [1, 16]) {
  const kv = new KvCache(model.config, rows, 64);
  const hidden = Float32Array.from({ length: rows * dim }, (_, i) => Math.sin(i));
  const out = new Float32Array(rows * dim);
  const pastLengths = new Int32Array(rows).fill(32);
  const blockMs = timeMs(() => model.runBlock(layer, hidden, out, { firstSlot: 0, numRows: rows, seqLen: 1, pastLengths }, kv));
  ms[`block${rows}`] = blockMs;
  const plainLogits = new Float32Array(rows * plainVocab);
  const plainMs = timeMs(() => (trained ? model.runHead(hidden, rows, plainLogits) : model.runRamp(layer, hidden, rows, plainLogits)));
  lines.push(
    `${rows} row(s): block ${blockMs.toFixed(4)} ms; plain head over ${plainVocab} ids ${plainMs.toFixed(4)} ms = ${(plainMs / blockMs).toFixed(2)} of a block (${share(plainVocab * dim)} of its multiply-adds)`,
  );
  if (trained) {
    const logits = new Float32Array(rows * model.rampWidth);
    const probe = new Float32Array(rows);
    const logitsMs = timeMs(() => model.runRamp(layer, hidden, rows, logits));
    const probeMs = timeMs(() => model.runRamp(layer, hidden, rows, logits, probe));
    ms[`ramp${rows}`] = probeMs;
    lines.push(
      `${rows} row(s): trained ramp (gated MLP ${dim}->${trained.hidden}->${dim}, ${model.rampVocab} candidates + rest) ${logitsMs.toFixed(4)} ms = ${(logitsMs / blockMs).toFixed(2)} of a block; ` +
        `with its probe ${probeMs.toFixed(4)} ms = ${(probeMs / blockMs).toFixed(2)} (${share(model.rampMacs)} of its multiply-adds)`,
    );
  }
}
// An exit after block k (1-based) skips blocks k+1..N for now: N − k blocks.
const ramp = trained ? model.rampMacs : plainVocab * dim;
for (const afterBlocks of model.manifest.rampCandidates.map((l) => l + 1)) {
  const skipped = numLayers - afterBlocks;
  const timed =
    ms.ramp1 === undefined
      ? ''
      : `, time ${(ms.ramp1 / (skipped * ms.block1!)).toFixed(2)} (1 row) / ${(ms.ramp16! / (skipped * ms.block16!)).toFixed(2)} (16 rows)`;
  lines.push(
    `ramp after block ${afterBlocks}: skips ${skipped} block(s); ramp / skipped blocks: multiply-adds ${(ramp / (skipped * block)).toFixed(2)}${timed}`,
  );
}
process.stdout.write(`${lines.join('\n')}\n`);
model.release();
