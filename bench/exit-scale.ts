/**
 * Does deferring the deep blocks pay at realistic size? A random-weight
 * stories110M-shape model decodes single-stream with a forced exit pattern
 * (every other token leaves at half depth) and without exits; the mean
 * inter-token latency saving is set against the share of block compute the
 * exits skip (half the tokens x half the blocks = 25%).
 *
 *   npm run build && node dist/bench/exit-scale.js [--shape stories110M] [--tokens 96] [--repeats 3]
 *
 * In-process (no HTTP): the latency is the gap between the engine's token events.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { EXITS_OFF, GREEDY, LocalEngine } from '../src/engine/index.js';
import { Model } from '../src/model/index.js';
import { PROJECT_ROOT } from '../src/util/index.js';
import { prepareBenchModel } from './models.js';
import { median } from './stats.js';

const { values } = parseArgs({
  options: {
    shape: { type: 'string', default: 'stories110M' },
    tokens: { type: 'string', default: '96' },
    repeats: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    out: { type: 'string', default: path.join(PROJECT_ROOT, 'bench', 'results', 'exit-scale.json') },
  },
});
const shape = values.shape;
const { dir } = await prepareBenchModel(shape, (line) => process.stderr.write(`exit-scale: ${line}\n`));
const model = await Model.load(dir, { device: 'cpu', threads: Number(values.threads) });
const numTokens = Number(values.tokens);
const halfDepth = model.config.numLayers / 2 - 1; // the ramp after this block skips the other half
const promptTokens = model.tokenizer.encode('Once upon a time');
const engine = new LocalEngine(model, { maxRunning: 1, maxStepTokens: 512, maxContext: promptTokens.length + numTokens + 1, earlyExit: EXITS_OFF });

/** Mean gap between consecutive tokens (ms), the first token excluded. */
async function meanItl(exitPlan?: (number | null)[]): Promise<{ itlMs: number; exited: number }> {
  const request = {
    id: 'scale',
    promptTokens,
    sampling: GREEDY,
    maxTokens: numTokens,
    stop: [],
    earlyExit: 'off' as const,
    exitOverride: exitPlan && { kind: 'plan' as const, layers: exitPlan },
  };
  const times: number[] = [];
  let exited = 0;
  for await (const event of engine.generate(request)) {
    if (event.type === 'error') throw new Error(event.message);
    if (event.type !== 'token') continue;
    times.push(performance.now());
    if (event.exitLayer !== null) exited++;
  }
  return { itlMs: (times.at(-1)! - times[0]!) / (times.length - 1), exited };
}

const plan = Array.from({ length: numTokens }, (_, i) => (i % 2 === 1 ? halfDepth : null));
await meanItl(plan.slice(0, 8)); // warm-up
const off: number[] = [];
const on: number[] = [];
let exitedShare = 0;
for (let r = 0; r < Number(values.repeats); r++) {
  off.push((await meanItl()).itlMs);
  const forced = await meanItl(plan);
  on.push(forced.itlMs);
  exitedShare = forced.exited / numTokens;
  process.stderr.write(`exit-scale: repeat ${r + 1}: exits off ${off.at(-1)!.toFixed(2)} ms, forced exits ${on.at(-1)!.toFixed(2)} ms per token\n`);
}
const skippedShare = exitedShare * ((model.config.numLayers - 1 - halfDepth) / model.config.numLayers);
const saving = 1 - median(on)! / median(off)!;
const result = {
  date: new Date().toISOString(),
  command: `node dist/bench/exit-scale.js ${process.argv.slice(2).join(' ')}`.trim(),
  shape,
  threads: Number(values.threads),
  tokens: numTokens,
  exitLayer: halfDepth,
  exitedShare,
  itlOffMs: median(off),
  itlForcedMs: median(on),
  blockComputeSkipped: skippedShare,
  itlSaving: saving,
  savingOverSkipped: saving / skippedShare,
};
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
fs.mkdirSync(path.dirname(values.out), { recursive: true });
fs.writeFileSync(values.out, JSON.stringify(result, null, 2));
model.release();
