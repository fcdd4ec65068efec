/**
 * What batching buys on stories260K, without HTTP: the fused graph's step
 * time by batch rows and KV capacity, and the in-process engine's tokens/s
 * at 1 and 16 streams (closed loop, greedy, 128 tokens) for the shortest and
 * the longest story prompt.
 *
 *   npm run build && node dist/bench/batching.js [--repeats 5]
 *
 * A step's weights are read once however many rows it has, but every row
 * scores its own keys and values over the whole capacity, so the
 * per-row share of a step grows with the context: the step table shows how
 * far 16 rows are from costing what one does.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { EXITS_OFF, GREEDY, LocalEngine } from '../src/engine/index.js';
import { KvCache, Model, resolveModel } from '../src/model/index.js';
import { PROJECT_ROOT } from '../src/util/index.js';
import { storyPrompts } from './prompts.js';
import { median } from './stats.js';

const SHARED = path.join(PROJECT_ROOT, '..', 'shared', 'models', 'stories260K');
const MAX_TOKENS = 128;
const ROWS = [1, 4, 16, 64];
const CAPACITIES = [32, 64, 128, 224];

const { values } = parseArgs({
  options: {
    repeats: { type: 'string', default: '5' },
    out: { type: 'string', default: path.join(PROJECT_ROOT, 'bench', 'results', 'batching.json') },
  },
});
const repeats = Number(values.repeats);
const model = await Model.load(await resolveModel(path.join(SHARED, 'stories260K.bin'), { tokenizer: path.join(SHARED, 'tok512.bin') }), {
  device: 'cpu',
  threads: 1,
});

/** One fused decode step over `rows` rows whose pasts fill `capacity` but one position, ready to run. */
function stepRunner(rows: number, capacity: number): () => void {
  const kv = new KvCache(model.config, rows, capacity, capacity);
  const logits = new Float32Array(rows * model.config.vocabSize);
  const pastLengths = new Int32Array(rows).fill(capacity - 1);
  const hidden = model.embed(new Array<number>(rows).fill(1), pastLengths);
  return () => model.runFused(hidden, { firstSlot: 0, numRows: rows, seqLen: 1, pastLengths }, kv, logits);
}

/** Median ms per step of every (rows, capacity) cell; cells take turns within each repeat, so drift hits all alike. */
function stepTimes(): { rows: number; capacity: number; stepMs: number }[] {
  const cells = ROWS.flatMap((rows) => CAPACITIES.map((capacity) => ({ rows, capacity, run: stepRunner(rows, capacity), times: [] as number[] })));
  for (const cell of cells) for (let i = 0; i < 50; i++) cell.run();
  for (let r = 0; r < repeats; r++) {
    for (const cell of cells) {
      const started = performance.now();
      for (let i = 0; i < 100; i++) cell.run();
      cell.times.push((performance.now() - started) / 100);
    }
  }
  return cells.map(({ rows, capacity, times }) => ({ rows, capacity, stepMs: median(times)! }));
}

/** Tokens/s of the engine at `streams` closed-loop clients, each sending `perStream` requests of `prompt`. */
async function engineTokensPerSecond(streams: number, prompt: number[], perStream: number): Promise<number> {
  const engine = new LocalEngine(model, { maxRunning: streams, maxStepTokens: 512, maxContext: model.config.maxSeqLen, earlyExit: EXITS_OFF });
  let id = 0;
  let tokens = 0;
  const client = async (requests: number) => {
    for (let i = 0; i < requests; i++) {
      const request = { id: String(id++), promptTokens: prompt, sampling: GREEDY, maxTokens: MAX_TOKENS, stop: [], earlyExit: 'off' as const };
      for await (const event of engine.generate(request)) {
        if (event.type === 'error') throw new Error(event.message);
        if (event.type === 'token') tokens++;
      }
    }
  };
  await Promise.all(Array.from({ length: streams }, () => client(1))); // warm-up: every shape once
  tokens = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: streams }, () => client(perStream)));
  return (tokens / (performance.now() - started)) * 1000;
}

const steps = stepTimes();
const stepOf = (rows: number, capacity: number) => steps.find((s) => s.rows === rows && s.capacity === capacity)!.stepMs;
console.log('| rows | ' + CAPACITIES.map((c) => `capacity ${c}: ms / µs per row`).join(' | ') + ' |');
console.log('|---:|' + CAPACITIES.map(() => '---:').join('|') + '|');
for (const rows of ROWS) {
  console.log(`| ${rows} | ` + CAPACITIES.map((c) => `${stepOf(rows, c).toFixed(3)} / ${((stepOf(rows, c) * 1000) / rows).toFixed(0)}`).join(' | ') + ' |');
}

const stories = storyPrompts().map((p) => model.tokenizer.encode(p));
const byLength = [...stories].sort((a, b) => a.length - b.length);
const engineRows = [];
for (const [label, prompt] of [
  ['shortest', byLength[0]!],
  ['longest', byLength.at(-1)!],
] as const) {
  const single: number[] = [];
  const sixteen: number[] = [];
  for (let r = 0; r < repeats; r++) {
    single.push(await engineTokensPerSecond(1, prompt, 4));
    sixteen.push(await engineTokensPerSecond(16, prompt, 2));
  }
  const row = { prompt: label, promptTokens: prompt.length, oneStream: median(single)!, sixteenStreams: median(sixteen)! };
  engineRows.push(row);
  console.log(
    `engine, ${label} prompt (${prompt.length} tokens): 1 stream ${row.oneStream.toFixed(0)} tokens/s, 16 streams ${row.sixteenStreams.toFixed(0)} (${(row.sixteenStreams / row.oneStream).toFixed(1)}x)`,
  );
}

const { numLayers, numKvHeads, headDim } = model.config;
const kvBytesPerPosition = numLayers * 2 * numKvHeads * headDim * Float32Array.BYTES_PER_ELEMENT;
const weightsBytes = fs.statSync(path.join(model.dir, 'weights.bin')).size;
console.log(
  `KV bytes per row and position: ${kvBytesPerPosition}; weights: ${weightsBytes} bytes (a row at 224 positions reads ${((kvBytesPerPosition * 224) / weightsBytes).toFixed(2)}x the weights)`,
);
fs.mkdirSync(path.dirname(values.out), { recursive: true });
fs.writeFileSync(
  values.out,
  JSON.stringify(
    {
      date: new Date().toISOString(),
      command: `node dist/bench/batching.js ${process.argv.slice(2).join(' ')}`.trim(),
      repeats,
      steps,
      engine: engineRows,
      kvBytesPerPosition,
      weightsBytes,
    },
    null,
    2,
  ),
);
model.release();
