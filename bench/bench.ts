/**
 * The tokens-per-second benchmark: offramp with exits off, with exits on at
 * each --accuracy, and transformers.js on the same weights, side by side in
 * one run. Closed-loop concurrencies and Poisson rates; each point runs for
 * every variant in turn (the order rotating between repeats) so machine
 * drift hits all alike; the report shows medians over repeats.
 *
 *   npm run bench [-- --quick | --model stories15M --concurrency 1,4,16 ...]
 *
 * Writes bench-<model>.json (schema: bench/README.md), .md and .svg under
 * bench/results/ (--quick: bench/results/tmp/) and prints the table.
 *
 * @module
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TextTokenizer } from '../src/model/index.js';
import { ChatPrompter, encodeCompletionPrompt } from '../src/server/index.js';
import { connect, startOfframp } from './http-target.js';
import { loadLabel, runClosedLoop, runOpenLoop, type Load } from './load.js';
import { prepareBenchModel, exportGgufPeerModel, exportPeerModel, type BenchModel } from './models.js';
import { LlamaCppTarget } from './llama-cpp-peer.js';
import { BENCH_USAGE, closedLoopRequests, parseBenchArgs, type BenchOptions } from './options.js';
import { PeerTarget } from './peer.js';
import { Progress } from './progress.js';
import { loadPrompts, type Prompt } from './prompts.js';
import { markdownReport, markdownTables } from './report.js';
import { addItlHistogram, ITL_HISTOGRAM, pointMedians, runStats, sequenceAgreement, type RunStats } from './stats.js';
import { BENCH_SCHEMA, type BenchPoint, type BenchResult, type BenchVariant } from './result.js';
import { svgChart } from './svg.js';
import type { RequestRecord, Target } from './target.js';
import { buildWork, poissonArrivals, type Work } from './workload.js';

const OFF = 'exits-off';
const PEER = 'transformers.js';
const LLAMA_CPP = 'llama.cpp';
/** llama.cpp's LLAMA_MAX_SEQ: a context holds at most this many sequences. */
const LLAMA_CPP_MAX_SEQUENCES = 256;

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** Prompts whose tokens plus --max-tokens fit the model, and the context that needs. */
async function fittingPrompts(model: BenchModel, prompts: Prompt[], maxTokens: number): Promise<{ used: Prompt[]; skipped: string[]; maxContext: number }> {
  const tokenizer = await TextTokenizer.load(model.dir);
  const prompter = new ChatPrompter(tokenizer);
  const used: Prompt[] = [];
  const skipped: string[] = [];
  let longest = 0;
  for (const p of prompts) {
    const n = p.kind === 'chat' ? prompter.encode(p.messages).length : encodeCompletionPrompt(p.prompt, tokenizer).length;
    if (n + maxTokens > model.maxSeqLen) skipped.push(p.id);
    else {
      used.push(p);
      longest = Math.max(longest, n);
    }
  }
  return { used, skipped, maxContext: Math.min(model.maxSeqLen, longest + maxTokens) };
}

/** Starts every variant the options ask for, appending to `targets` as they come up (so a failure can close those already running). */
async function startVariants(
  options: BenchOptions,
  model: BenchModel,
  maxContext: number,
  maxRunning: number,
  targets: Target[],
  log: (line: string) => void,
): Promise<BenchVariant[]> {
  const variants: BenchVariant[] = [];
  const serverFlags = { threads: options.threads, maxRunning, maxQueued: options.maxQueued, maxContext };
  const offramp: { id: string; earlyExit: 'on' | 'lossless' | 'off'; accuracy: number | null }[] = [];
  if (options.url.length === 0 && options.variants.includes('off')) offramp.push({ id: OFF, earlyExit: 'off', accuracy: null });
  if (options.url.length === 0 && options.variants.includes('on')) {
    for (const accuracy of options.accuracy) offramp.push({ id: `exits-on@${accuracy}`, earlyExit: 'on', accuracy });
  }
  if (options.url.length === 0 && options.variants.includes('lossless')) offramp.push({ id: 'lossless', earlyExit: 'lossless', accuracy: null });
  for (const v of offramp) {
    log(`starting ${v.id}`);
    const flags = { ...serverFlags, earlyExit: v.earlyExit, ...(v.accuracy === null ? {} : { accuracy: v.accuracy }) };
    targets.push(await startOfframp(v.id, model, flags, options.servers, log));
    variants.push({ ...v, kind: 'offramp', url: null });
  }
  for (const url of options.url) {
    const target = await connect(url);
    targets.push(target);
    variants.push({ id: target.id, kind: 'external', earlyExit: null, accuracy: null, url });
  }
  if (options.variants.includes('peer')) {
    const dir = exportPeerModel(model.name, log);
    log(`loading ${PEER} from ${dir}`);
    targets.push(await PeerTarget.load(PEER, dir, options.threads));
    variants.push({ id: PEER, kind: 'peer', earlyExit: null, accuracy: null, url: null });
  }
  if (options.variants.includes('llama.cpp')) {
    const file = exportGgufPeerModel(model.name, log);
    // As many sequences as offramp's servers have slots, up to llama.cpp's limit of 256 (LLAMA_MAX_SEQ).
    const sequences = Math.min(maxRunning, LLAMA_CPP_MAX_SEQUENCES);
    log(`loading ${LLAMA_CPP} (node-llama-cpp) from ${file}, ${sequences} sequences`);
    targets.push(await LlamaCppTarget.load(LLAMA_CPP, file, maxContext, options.threads, sequences));
    variants.push({ id: LLAMA_CPP, kind: 'peer', earlyExit: null, accuracy: null, url: null });
  }
  if (targets.length === 0) throw new Error('no variants to run (check --variants)');
  return variants;
}

/** One load point's requests (and, open loop, their arrival times): the same for every variant and repeat. */
interface Plan {
  load: Load;
  work: Work[];
  arrivals: number[] | null;
}

function plansFor(options: BenchOptions, prompts: Prompt[]): Plan[] {
  const closed = options.concurrency.map((concurrency): Plan => ({
    load: { mode: 'closed', concurrency },
    work: buildWork(prompts, closedLoopRequests(options, concurrency), options.seed),
    arrivals: null,
  }));
  const open = options.rate.map((rate): Plan => {
    const arrivals = poissonArrivals(rate, options.duration, options.seed + Math.round(rate * 1000));
    return { load: { mode: 'poisson', rate }, work: buildWork(prompts, arrivals.length, options.seed), arrivals };
  });
  return [...closed, ...open];
}

/** Runs one point on one target with a live progress line; returns its records and the server's snapshots around it. */
async function runPoint(
  target: Target,
  plan: Plan,
  options: BenchOptions,
  progress: Progress,
  label: string,
): Promise<{ records: RequestRecord[]; stats: RunStats }> {
  let finished = 0;
  let tokens = 0;
  const t0 = performance.now();
  progress.start(() => {
    const s = (performance.now() - t0) / 1000;
    return `${label}: ${finished}/${plan.work.length} requests, ${s > 0 ? (tokens / s).toFixed(0) : 0} tokens/s`;
  });
  const params = {
    maxTokens: options.maxTokens,
    temperature: options.temperature,
    onRecord: (r: RequestRecord) => {
      finished++;
      tokens += r.outputTokens;
    },
  };
  const before = await target.snapshot();
  const records = plan.arrivals
    ? await runOpenLoop(target, plan.work, plan.arrivals, params)
    : await runClosedLoop(target, plan.work, plan.load.mode === 'closed' ? plan.load.concurrency : 1, params);
  // The engine worker posts its exit-controller stats every 50 ms.
  if (before) await sleep(150);
  const after = await target.snapshot();
  return { records, stats: runStats(0, records, before, after) };
}

/**
 * Runs the benchmark `args` describe; returns its result, or null for --help.
 * Throws BenchUsageError for wrong flags.
 */
export async function benchCommand(args: string[]): Promise<BenchResult | null> {
  const { options, help } = parseBenchArgs(args);
  if (help) {
    process.stdout.write(`${BENCH_USAGE}\n`);
    return null;
  }
  const began = performance.now();
  const loadAverageStart = os.loadavg();
  const progress = new Progress();
  const log = (line: string) => progress.log(`bench: ${line}`);

  const model = await prepareBenchModel(options.model, log);
  const fit = await fittingPrompts(model, loadPrompts(), options.maxTokens);
  if (fit.used.length === 0) throw new Error(`no prompt fits ${options.maxTokens} new tokens in ${model.name}'s ${model.maxSeqLen} positions`);
  if (fit.skipped.length > 0) log(`skipping prompts too long for --max-tokens ${options.maxTokens}: ${fit.skipped.join(', ')}`);
  const maxRunning = options.maxRunning ?? Math.min(1024, Math.max(16, ...options.concurrency));

  const targets: Target[] = [];
  try {
    const variants = await startVariants(options, model, fit.maxContext, maxRunning, targets, log);

    // Warm-up: sessions, allocations, the exit controller's first tuning. Not measured.
    if (options.warmup > 0) {
      const warm = buildWork(fit.used, options.warmup, options.seed + 1_000_003);
      for (const target of targets) {
        progress.start(() => `bench: warming up ${target.id}`);
        const records = await runClosedLoop(target, warm, Math.min(4, Math.max(...options.concurrency)), options);
        const failed = records.filter((r) => r.error !== null);
        progress.done(`bench: warmed up ${target.id} (${records.length - failed.length}/${records.length} ok)`);
        if (failed.length === records.length) throw new Error(`${target.id}: every warm-up request failed: ${failed[0]?.error}`);
      }
    }

    const plans = plansFor(options, fit.used);
    const key = (load: Load, variant: string) => `${loadLabel(load)}|${variant}`;
    const points = new Map<string, BenchPoint>();
    for (const plan of plans) {
      for (const variant of variants) {
        points.set(key(plan.load, variant.id), {
          variant: variant.id,
          load: plan.load,
          requests: plan.work.length,
          runs: [],
          median: pointMedians([]),
          itlHistogram: new Array<number>(ITL_HISTOGRAM.numBins).fill(0),
        });
      }
    }
    // What each request wrote, by point and repeat: exits-off's is the reference for "same text".
    const texts = new Map<string, RequestRecord[]>();
    const numPoints = options.repeats * plans.length * targets.length;
    let done = 0;
    for (let repeat = 0; repeat < options.repeats; repeat++) {
      for (const plan of plans) {
        // Rotate who goes first, so no variant always runs right after a pause (or right after another's load).
        for (const target of targets.map((_, i) => targets[(i + repeat) % targets.length]!)) {
          const label = `bench [${done + 1}/${numPoints}] ${loadLabel(plan.load)} ${target.id} repeat ${repeat + 1}/${options.repeats}`;
          const { records, stats } = await runPoint(target, plan, options, progress, label);
          const point = points.get(key(plan.load, target.id))!;
          point.runs.push({ ...stats, repeat });
          addItlHistogram(records, point.itlHistogram);
          texts.set(
            `${key(plan.load, target.id)}|${repeat}`,
            records.map((r) => ({ ...r, chunkMs: [], chunkExit: [] })),
          );
          done++;
          const errors = stats.requests.errors > 0 ? `, ${stats.requests.errors} errors` : '';
          progress.done(`${label}: ${stats.outputTokensPerSecond.toFixed(0)} tokens/s, ${stats.requestsPerSecond.toFixed(1)} requests/s${errors}`);
        }
      }
    }

    for (const point of points.values()) {
      if (point.variant !== OFF) {
        for (const run of point.runs) {
          const reference = texts.get(`${key(point.load, OFF)}|${run.repeat}`);
          const mine = texts.get(`${key(point.load, point.variant)}|${run.repeat}`);
          if (reference && mine) run.sequenceAgreement = sequenceAgreement(mine, new Map(reference.map((r) => [r.index, r.text])));
        }
      }
      point.median = pointMedians(point.runs);
    }

    const { out, url: urls, ...config } = options;
    const result: BenchResult = {
      schema: BENCH_SCHEMA,
      date: new Date().toISOString(),
      command: `npm run bench -- ${args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a}'`)).join(' ')}`.trim(),
      machine: {
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model ?? 'unknown',
        node: process.version,
        platform: `${process.platform}-${process.arch}`,
        loadAverageStart,
        loadAverageEnd: os.loadavg(),
      },
      model: { name: model.name, realWeights: model.realWeights, maxSeqLen: model.maxSeqLen, maxContext: fit.maxContext },
      config: { ...config, urls, maxRunning, prompts: { used: fit.used.length, skipped: fit.skipped } },
      variants,
      loads: plans.map((p) => p.load),
      itlHistogram: ITL_HISTOGRAM,
      points: [...points.values()],
      durationS: (performance.now() - began) / 1000,
    };
    fs.mkdirSync(out, { recursive: true });
    const stem = path.join(out, `bench-${model.name}`);
    const report = markdownReport(result);
    fs.writeFileSync(`${stem}.json`, `${JSON.stringify(result, null, 2)}\n`);
    fs.writeFileSync(`${stem}.md`, report);
    fs.writeFileSync(`${stem}.svg`, svgChart(result));
    process.stdout.write(`${markdownTables(result)}\n`);
    log(`wrote ${stem}.{json,md,svg} in ${result.durationS.toFixed(1)} s`);
    return result;
  } finally {
    progress.stop();
    for (const target of targets) await target.close().catch((error: Error) => log(`closing ${target.id}: ${error.message}`));
  }
}
