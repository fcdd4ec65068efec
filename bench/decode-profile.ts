/**
 * Where a decoded token's time goes: onnxruntime's own profiler over a bare
 * greedy decode loop (bench/decode-loop.ts), fused whole-model graph and
 * block by block side by side, one quantization and thread count a run.
 *
 *   node dist/bench/decode-profile.js [--model stories110M] [--quantize none|int8] [--threads N] [--tokens N] [--repeats N]
 *
 * Per token it splits the loop's wall time into: time outside onnxruntime's
 * `Run` (the JS loop, embedding, argmax, the binding, the KV append),
 * inside `Run` but outside the executor (input checks, output fetches),
 * the executor between kernels, and the kernels by op type, matrix
 * products against weights ("linear") apart from attention's. Beside it:
 * the bytes fed and fetched per call, and the weight bytes the linear
 * kernels read per token over their time (achieved bandwidth).
 *
 * The profiler costs time of its own per kernel (it records each one's
 * shapes and memory counters), which lands between kernels; so each loop
 * also runs unprofiled, alternating with the profiled one in the same
 * process, and "all but kernels" is that run's time less the kernels'.
 * Wall times are medians of the repeats; kernel times, means.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Model, QUANTIZATIONS, readManifest, weightsLabel, type Quantization } from '../src/model/index.js';
import { bareDecode, DECODE_PATHS, type DecodePath } from './decode-loop.js';
import { prepareBenchModel } from './models.js';
import { median } from './stats.js';

const PROMPT = 'Once upon a time';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'stories110M' },
    quantize: { type: 'string', default: 'none' },
    threads: { type: 'string', default: '1' },
    tokens: { type: 'string', default: '32' },
    repeats: { type: 'string', default: '3' },
  },
});
if (!(QUANTIZATIONS as readonly string[]).includes(values.quantize)) throw new Error(`--quantize: one of ${QUANTIZATIONS.join(', ')}`);
const quantization = values.quantize as Quantization;
const threads = Number(values.threads);
const numTokens = Number(values.tokens);
const repeats = Number(values.repeats);
const log = (line: string) => process.stderr.write(`decode-profile: ${line}\n`);

/** One event of onnxruntime's Chrome-trace profile (times in µs). */
interface TraceEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args?: { op_name?: string; input_type_shape?: Record<string, number[]>[] };
}

/**
 * µs by row label, summed over every session's decode calls: a session's
 * calls come `callsPerLoop` to a decode loop, the first of them the prompt's
 * (left out).
 */
function readProfiles(files: string[], callsPerLoop: number): Map<string, number> {
  const us = new Map<string, number>();
  const add = (label: string, dur: number) => us.set(label, (us.get(label) ?? 0) + dur);
  for (const file of files) {
    const events = (JSON.parse(fs.readFileSync(file, 'utf8')) as TraceEvent[]).sort((a, b) => a.ts - b.ts);
    let call = -1;
    for (const e of events) {
      if (e.cat === 'Session' && e.name === 'SequentialExecutor::Execute') add('execute', call % callsPerLoop === 0 ? 0 : e.dur);
      if (e.cat === 'Session' && e.name === 'model_run') {
        // model_run starts before its nodes and the executor (same ts order); it opens a call.
        call++;
        if (call % callsPerLoop !== 0) add('run', e.dur);
      }
      if (call % callsPerLoop === 0 || e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
      const op = e.args?.op_name ?? '?';
      // A matrix product by a weight: its second input is 2-D, or prepacked (then the profile lists only the first); attention's are 4-D.
      const shapes = e.args?.input_type_shape ?? [];
      const second = shapes.length > 1 ? Object.values(shapes[1]!)[0] : undefined;
      const linear = op === 'MatMulNBits' || op === 'Gemm' || (op === 'MatMul' && (second === undefined || second.length === 2));
      add(`kernel:${op}${linear ? ' (linear)' : ''}`, e.dur);
      add('kernels', e.dur);
      if (linear) add('linear', e.dur);
    }
  }
  return us;
}

const bench = await prepareBenchModel(values.model, log, quantization);
const manifest = readManifest(bench.dir);
// What the linear kernels read per token: every weight (int8 codes and their scales) but the embedding table (read by JS), the rotary tables and the norms.
const linearBytes = Object.entries(manifest.weights)
  .filter(([name]) => name !== 'tok_embeddings' && !name.startsWith('rope.') && !name.endsWith('norm'))
  .reduce((sum, [, w]) => sum + w.byteLength, 0);

interface Column {
  path: DecodePath;
  tokensPerSecond: number;
  profiledTokensPerSecond: number;
  us: Map<string, number>;
  callsPerToken: number;
  fedBytes: number;
  fetchedBytes: number;
}
const columns: Column[] = [];
for (const decodePath of DECODE_PATHS) {
  const fused = decodePath === 'fused';
  const profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'offramp-profile-'));
  const plain = await Model.load(bench.dir, { device: 'cpu', threads, fused });
  const profiled = await Model.load(bench.dir, { device: 'cpu', threads, fused, profile: path.join(profileDir, decodePath) });
  const promptTokens = plain.tokenizer.encode(PROMPT);
  bareDecode(plain, decodePath, promptTokens, numTokens); // warm-up
  const plainRates: number[] = [];
  const profiledRates: number[] = [];
  const callsBefore = profiled.calls;
  // Alternating, so machine drift hits both alike; the profile covers every profiled loop.
  for (let r = 0; r < repeats; r++) {
    plainRates.push(bareDecode(plain, decodePath, promptTokens, numTokens));
    profiledRates.push(bareDecode(profiled, decodePath, promptTokens, numTokens));
  }
  const callsPerToken = (profiled.calls - callsBefore) / (repeats * numTokens);
  plain.release();
  profiled.release(); // writes the profiles
  const files = fs.readdirSync(profileDir).map((f) => path.join(profileDir, f));
  const used = files.filter((f) => (fused ? path.basename(f).startsWith('fused-fused_') : /^blocks-(block_\d+|head)_/.test(path.basename(f))));
  const us = readProfiles(used, numTokens);
  for (const [label, total] of us) us.set(label, total / (repeats * (numTokens - 1)));
  fs.rmSync(profileDir, { recursive: true, force: true });
  const tokensPerSecond = median(plainRates)!;
  const profiledTokensPerSecond = median(profiledRates)!;

  // Bytes per decode call at the loop's last position, from the graphs' input and output shapes (bareDecode's KV capacity is the loop's context + 1);
  // onnxruntime-node binds CPU tensors in place, so these are what a call points at, not copies.
  const { dim, numLayers, numKvHeads, headDim, vocabSize } = profiled.config;
  const context = promptTokens.length + numTokens; // positions the KV cache holds (KvCache's capacity)
  const layers = fused ? numLayers : 1;
  const kvPast = 2 * numKvHeads * (context + 1) * headDim * 4;
  const mask = (context + 2) * 4 * (profiled.config.numHeads / numKvHeads);
  const fedBytes = dim * 4 + 8 + mask + layers * kvPast;
  const fetchedBytes = (fused ? vocabSize * 4 : dim * 4) + layers * 2 * numKvHeads * headDim * 4;
  columns.push({ path: decodePath, tokensPerSecond, profiledTokensPerSecond, us, callsPerToken, fedBytes, fetchedBytes });
}

const ms = (us: number) => (us / 1000).toFixed(2);
const share = (us: number, col: Column) => `${((100 * us) / (1e6 / col.profiledTokensPerSecond)).toFixed(1)}%`;
const rowOf = (label: string, valueOf: (c: Column) => number) =>
  `| ${label} | ${columns.map((c) => `${ms(valueOf(c))} | ${share(valueOf(c), c)}`).join(' | ')} |`;
/** A row with one value per column and no share. */
const textRow = (label: string, valueOf: (c: Column) => string) => `| ${label} | ${columns.map((c) => `${valueOf(c)} | `).join(' | ')}|`;
const get = (c: Column, key: string) => c.us.get(key) ?? 0;
const kernelLabels = [...new Set(columns.flatMap((c) => [...c.us.keys()].filter((k) => k.startsWith('kernel:'))))].sort(
  (a, b) => get(columns[0]!, b) - get(columns[0]!, a),
);
const lines = [
  `${values.model}, ${weightsLabel(quantization)}, ${threads} thread(s), ${numTokens} tokens, load average ${os.loadavg()[0]!.toFixed(1)} on ${os.cpus().length} cores`,
  '',
  `| per token | ${columns.map((c) => `${c.path} ms | share`).join(' | ')} |`,
  `|---|${columns.map(() => '---:|---:').join('|')}|`,
  textRow('tokens/s unprofiled (profiled)', (c) => `${c.tokensPerSecond.toFixed(1)} (${c.profiledTokensPerSecond.toFixed(1)})`),
  rowOf('wall time, profiled', (c) => 1e6 / c.profiledTokensPerSecond),
  rowOf('all but kernels, unprofiled (wall − kernels)', (c) => 1e6 / c.tokensPerSecond - get(c, 'kernels')),
  rowOf('outside Run: JS loop, binding, KV append', (c) => 1e6 / c.profiledTokensPerSecond - get(c, 'run')),
  rowOf('in Run, outside the executor', (c) => get(c, 'run') - get(c, 'execute')),
  rowOf('executor, between kernels', (c) => get(c, 'execute') - get(c, 'kernels')),
  rowOf('kernels', (c) => get(c, 'kernels')),
  ...kernelLabels.map((k) => rowOf(`&nbsp;&nbsp;${k.slice('kernel:'.length)}`, (c) => get(c, k))),
  textRow('calls per token', (c) => c.callsPerToken.toFixed(0)),
  textRow('bytes fed / fetched per call', (c) => `${(c.fedBytes / 1024).toFixed(0)} KiB / ${(c.fetchedBytes / 1024).toFixed(0)} KiB`),
  textRow('linear weights read per token', () => `${(linearBytes / 1e6).toFixed(0)} MB`),
  textRow("linear kernels' bandwidth", (c) => `${(linearBytes / get(c, 'linear') / 1000).toFixed(1)} GB/s`),
];
process.stdout.write(`${lines.join('\n')}\n`);
