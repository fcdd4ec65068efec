/**
 * Early exits on stories260K, in one run: exits off, exits on under the
 * controller (at --accuracy), and oracle exits (each token leaves at the
 * earliest ramp whose argmax is the full model's, recorded from a full run:
 * the token sequence is unchanged, so this is the most exits can save here).
 *
 *   npm run build && node dist/bench/exits.js [--concurrency 1,8] [--max-tokens 128] [--accuracy 0.99] [--warmup 2] [--rounds 8]
 *
 * A round is one pass over the prompts. Each variant first runs --warmup
 * rounds unmeasured (the controller's first feedback); then the variants take
 * turns, one measured round each, in an order that rotates, so that a noisy
 * neighbour on the machine slows all three alike. Figures pool every
 * measured round: tokens/s is all tokens over all wall time, ramp trials and
 * all.
 *
 * In-process engine (no HTTP), greedy, prompts/ story openings. Latency is
 * measured at the engine's token events, as a client reading the stream
 * would see it without the network. Agreement is reported twice: as the
 * controller measured it, and re-checked independently by one full forward
 * pass over each finished request's prompt and output.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { argmax, type EarlyExitOptions, EXITS_OFF, type GenerateRequest, GREEDY, LocalEngine } from '../src/engine/index.js';
import { KvCache, Model, resolveModel } from '../src/model/index.js';
import { PROJECT_ROOT } from '../src/util/index.js';
import { storyPrompts } from './prompts.js';

const SHARED = path.join(PROJECT_ROOT, '..', 'shared', 'models', 'stories260K');
const { values } = parseArgs({
  options: {
    concurrency: { type: 'string', default: '1,8' },
    'max-tokens': { type: 'string', default: '128' },
    accuracy: { type: 'string', default: '0.99' },
    'ramp-budget': { type: 'string', default: '0.2' },
    warmup: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '8' },
    out: { type: 'string', default: path.join(PROJECT_ROOT, 'bench', 'results', 'exits.json') },
  },
});
const maxTokens = Number(values['max-tokens']);
const model = await Model.load(await resolveModel(path.join(SHARED, 'stories260K.bin'), { tokenizer: path.join(SHARED, 'tok512.bin') }), {
  device: 'cpu',
  threads: 1,
});
const prompts = storyPrompts().map((p) => model.tokenizer.encode(p));
const exitsOn: EarlyExitOptions = { ...EXITS_OFF, enabled: true, accuracy: Number(values.accuracy), rampBudget: Number(values['ramp-budget']) };

interface RequestResult {
  promptTokens: number[];
  tokens: number[];
  exitLayers: (number | null)[];
  /** Gaps between consecutive tokens (ms). */
  gaps: number[];
}

/** One round: every prompt once, at `concurrency` streams; returns per-request results and the wall time. */
async function drive(engine: LocalEngine, concurrency: number, plans?: Map<number, (number | null)[]>): Promise<{ results: RequestResult[]; wallMs: number }> {
  const queue = prompts.map((_, i) => i);
  const results: RequestResult[] = [];
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < queue.length) {
      const index = queue[next++]!;
      const plan = plans?.get(index);
      const exitOverride = plan && { kind: 'plan' as const, layers: plan };
      const request: GenerateRequest = { id: `b${next}`, promptTokens: prompts[index]!, sampling: GREEDY, maxTokens, stop: [], earlyExit: true, exitOverride };
      const result: RequestResult = { promptTokens: request.promptTokens, tokens: [], exitLayers: [], gaps: [] };
      let last = 0;
      for await (const event of engine.generate(request)) {
        if (event.type === 'error') throw new Error(event.message);
        if (event.type !== 'token') continue;
        const now = performance.now();
        if (last) result.gaps.push(now - last);
        last = now;
        result.tokens.push(...event.tokenIds);
        result.exitLayers.push(event.exitLayer);
      }
      results.push(result);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { results, wallMs: performance.now() - started };
}

/** Share of generated tokens equal to the full model's argmax given the same prefix, by one full pass per request. */
function recheck(results: RequestResult[]): number {
  const { vocabSize, numLayers } = model.config;
  let agree = 0;
  let total = 0;
  for (const { promptTokens, tokens } of results) {
    const all = [...promptTokens, ...tokens];
    const kv = new KvCache(model.config, 1, all.length);
    let hidden = model.embed(all, all.map((_, i) => i));
    for (let layer = 0; layer < numLayers; layer++) {
      const out = new Float32Array(hidden.length);
      model.runBlock(layer, hidden, out, { firstSlot: 0, numRows: 1, seqLen: all.length, pastLengths: [0] }, kv);
      hidden = out;
    }
    const logits = new Float32Array(all.length * vocabSize);
    model.runHead(hidden, all.length, logits);
    tokens.forEach((token, i) => {
      const position = promptTokens.length - 1 + i;
      total++;
      if (argmax(logits.subarray(position * vocabSize, (position + 1) * vocabSize)) === token) agree++;
    });
  }
  return agree / total;
}

const percentile = (xs: number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
};

/** The oracle plan per prompt: from a traced full run, the earliest ramp that agrees with the final argmax. */
async function oraclePlans(): Promise<Map<number, (number | null)[]>> {
  const engine = new LocalEngine(model, { maxRunning: 1, maxStepTokens: 512, maxContext: model.config.maxSeqLen, earlyExit: EXITS_OFF });
  const plans = new Map<number, (number | null)[]>();
  for (const [index, promptTokens] of prompts.entries()) {
    const plan: (number | null)[] = [];
    for await (const event of engine.generate({ id: 'oracle', promptTokens, sampling: GREEDY, maxTokens, stop: [], earlyExit: false, exitOverride: { kind: 'trace' } })) {
      if (event.type !== 'token') continue;
      // The first token comes from the prompt pass, where no ramp runs (and no trace is taken).
      const trace = event.trace;
      plan.push(trace ? (trace.ramps.find((r) => r.token === trace.finalToken)?.layer ?? null) : null);
    }
    plans.set(index, plan);
  }
  return plans;
}

const plans = await oraclePlans();
const rows = [];
for (const concurrency of values.concurrency.split(',').map(Number)) {
  const engineOptions = { maxRunning: Math.max(concurrency, 1), maxStepTokens: 512, maxContext: model.config.maxSeqLen };
  const variants = [
    { name: 'exits off', engine: new LocalEngine(model, { ...engineOptions, earlyExit: EXITS_OFF }) },
    { name: `exits on @${values.accuracy}`, engine: new LocalEngine(model, { ...engineOptions, earlyExit: exitsOn }) },
    { name: 'oracle exits', engine: new LocalEngine(model, { ...engineOptions, earlyExit: EXITS_OFF }), plans },
  ];
  for (const variant of variants) for (let r = 0; r < Number(values.warmup); r++) await drive(variant.engine, concurrency, variant.plans);
  const measured = variants.map(() => ({ results: [] as RequestResult[], wallMs: 0 }));
  for (let round = 0; round < Number(values.rounds); round++) {
    for (let k = 0; k < variants.length; k++) {
      const v = (round + k) % variants.length;
      const { results, wallMs } = await drive(variants[v]!.engine, concurrency, variants[v]!.plans);
      measured[v]!.results.push(...results);
      measured[v]!.wallMs += wallMs;
    }
  }
  for (const [v, variant] of variants.entries()) {
    const { results, wallMs } = measured[v]!;
    const gaps = results.flatMap((r) => r.gaps);
    const exitMix: Record<string, number> = {};
    for (const layer of results.flatMap((r) => r.exitLayers)) exitMix[layer === null ? 'full' : String(layer)] = (exitMix[layer === null ? 'full' : String(layer)] ?? 0) + 1;
    const outputTokens = results.reduce((n, r) => n + r.tokens.length, 0);
    const state = variant.engine.engine.controller?.state();
    const row = {
      variant: variant.name,
      concurrency,
      requests: results.length,
      outputTokens,
      tokensPerSecond: (outputTokens / wallMs) * 1000,
      itlMedianMs: percentile(gaps, 0.5),
      itlP99Ms: percentile(gaps, 0.99),
      agreementServer: state ? state.cumulativeAgreement : null,
      agreementRecheck: recheck(results),
      exitMix,
    };
    rows.push(row);
    process.stderr.write(`exits: ${row.variant} x${concurrency}: ${row.tokensPerSecond.toFixed(0)} tokens/s, ITL p50 ${row.itlMedianMs.toFixed(3)} ms p99 ${row.itlP99Ms.toFixed(3)} ms\n`);
  }
}

const fmt = (x: number | null, digits = 3) => (x === null ? '–' : x.toFixed(digits));
const table = [
  '| variant | streams | tokens/s | ITL p50 (ms) | ITL p99 (ms) | agreement (server) | agreement (re-check) | exit mix (block: tokens) |',
  '|---|---:|---:|---:|---:|---:|---:|---|',
  ...rows.map(
    (r) =>
      `| ${r.variant} | ${r.concurrency} | ${r.tokensPerSecond.toFixed(0)} | ${fmt(r.itlMedianMs)} | ${fmt(r.itlP99Ms)} | ${fmt(r.agreementServer, 4)} | ${fmt(r.agreementRecheck, 4)} | ${Object.entries(r.exitMix)
        .map(([k, v]) => `${k}: ${v}`)
        .join(', ')} |`,
  ),
].join('\n');
process.stdout.write(`${table}\n`);
fs.mkdirSync(path.dirname(values.out), { recursive: true });
fs.writeFileSync(values.out, JSON.stringify({ date: new Date().toISOString(), command: `node dist/bench/exits.js ${process.argv.slice(2).join(' ')}`.trim(), rows }, null, 2));
model.release();
