/**
 * Early exits on stories260K, in one run: exits off, exits on under the
 * controller (one variant per --accuracies value), oracle exits (each
 * token leaves at the earliest ramp that would stream the full model's own
 * token, recorded from a traced full run: the text is unchanged, so this is
 * the most exits can save here), lossless mode under its draft controller,
 * and lossless with the oracle's drafts (every draft accepted: the most
 * drafting can save); at each --concurrency, greedy and sampling (each
 * --temperatures value; top_p 1). Lossless rows also report, per ramp (and
 * for "context", the drafts a sequence takes from its own text, and
 * "lookahead", the lookahead head's guesses), the
 * share of drafts accepted and the drafts accepted per verified run. At
 * one stream, one more lossless variant per candidate ramp drafts there
 * whenever its confidence reaches --forced-draft (the plan forced and
 * frozen): what each ramp's drafts are worth, whatever the controller
 * chooses.
 *
 *   npm run build && node dist/bench/exits.js [--concurrency 1,4,16] [--temperatures 0,0.8]
 *     [--accuracies 0.99,0.95] [--forced-draft 0.5] [--max-tokens 128] [--warmup 2] [--rounds 8] [--seed 1234]
 *     [--confidence probe|margin|max-prob|entropy]   (default probe, as the server)
 *
 * A round is one pass over the prompts. Each variant first runs --warmup
 * rounds unmeasured (the controller's first feedback); then the variants take
 * turns, one measured round each, in an order that rotates, so that a noisy
 * neighbour on the machine slows all of them alike. Figures pool every
 * measured round: tokens/s is all tokens over all wall time, ramp trials and
 * all. Beside it, "vs exits off" divides each round's tokens/s by exits
 * off's in the same round and gives the median and range over rounds: the
 * machine drifts less within a round than over a point. With the defaults the whole run (2 temperatures x 3 stream counts x
 * 4 variants x 10 rounds of 18 requests, the oracle's traces and the
 * re-checks) should take about 3 minutes on a quiet 2-core machine (one
 * warm-up and one measured round took 69 s with the CPU shared, about half of
 * it ours); if it grows past 10, cut --rounds before --max-tokens.
 *
 * Sampling is coupled in this engine: every draw is Gumbel-max with noise
 * fixed by (seed, position, token), and a ramp drawing a position uses the
 * full model's noise there. So every request carries a seed (--seed + round
 * x prompts + prompt index), the same for every variant in a round: then
 * "the full model's token" is one token at any temperature, the oracle's
 * plan (traced with the same seed) keeps exits off's text, and each
 * variant's text can be compared with exits off's for the same request.
 * (The engine exits for seeded and greedy requests; only the HTTP server
 * decodes them lossless.)
 *
 * In-process engine (no HTTP), prompts/ story openings. Latency is measured
 * at the engine's token events, as a client reading the stream would see it
 * without the network. Agreement is reported twice: as the controller counted
 * it over the measured rounds, and re-checked independently by one full
 * forward pass over each finished request's prompt and output, each token
 * compared with the full model's argmax (greedy) or its coupled draw with the
 * request's key (sampling). Both count every decoded token (all but each
 * request's first, from the prompt pass), so tokens from the full model count
 * as agreeing, and the two figures should be equal.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import {
  drawKey,
  type EarlyExitMode,
  type EarlyExitOptions,
  EXITS_OFF,
  type GenerateRequest,
  GREEDY,
  LocalEngine,
  sample,
  type SamplingParams,
} from '../src/engine/index.js';
import { CONFIDENCE_KINDS } from '../src/exits/index.js';
import { KvCache, Model, resolveModel } from '../src/model/index.js';
import { PROJECT_ROOT } from '../src/util/index.js';
import { storyPrompts } from './prompts.js';
import { median, summarize } from './stats.js';

const SHARED = path.join(PROJECT_ROOT, '..', 'shared', 'models', 'stories260K');
const { values } = parseArgs({
  options: {
    concurrency: { type: 'string', default: '1,4,16' },
    temperatures: { type: 'string', default: '0,0.8' },
    accuracies: { type: 'string', default: '0.99,0.95' },
    'forced-draft': { type: 'string', default: '0.5' },
    'max-tokens': { type: 'string', default: '128' },
    'ramp-budget': { type: 'string', default: String(EXITS_OFF.rampBudget) },
    // The server's default: a trained ramp's probe (the margin for plain-head ramps).
    confidence: { type: 'string', default: 'probe' },
    warmup: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '8' },
    seed: { type: 'string', default: '1234' },
    out: { type: 'string', default: path.join(PROJECT_ROOT, 'bench', 'results', 'exits.json') },
  },
});
const numbers = (list: string) => list.split(',').map(Number);
const maxTokens = Number(values['max-tokens']);
const warmupRounds = Number(values.warmup);
const measuredRounds = Number(values.rounds);
const baseSeed = Number(values.seed);
const confidence = z.enum(CONFIDENCE_KINDS).parse(values.confidence);
const model = await Model.load(await resolveModel(path.join(SHARED, 'stories260K.bin'), { tokenizer: path.join(SHARED, 'tok512.bin') }), {
  device: 'cpu',
  threads: 1,
});
const prompts = storyPrompts().map((p) => model.tokenizer.encode(p));

/** Greedy at 0; otherwise plain temperature sampling (top_p 1, no top-k or min-p), as the issue asks. */
const samplingAt = (temperature: number): SamplingParams => (temperature === 0 ? GREEDY : { temperature, topP: 1, topK: 0, minP: 0 });

/** Unique per (round, prompt), and the same for every variant in a round, so their draws are the same draws. */
const seedOf = (round: number, prompt: number) => baseSeed + round * prompts.length + prompt;

interface RequestResult {
  seed: number;
  promptTokens: number[];
  tokens: number[];
  exitLayers: (number | null)[];
  /** Gaps between consecutive token events (ms). */
  gaps: number[];
}

type Plan = (number | null)[];

/**
 * Oracle plans at one temperature: per token, the earliest ramp whose token
 * (its argmax, or its coupled draw) is the full model's, from a traced run
 * with exits off and the request's own seed. Greedy plans do not depend on
 * the seed, so they are traced once per prompt.
 */
class OraclePlans {
  private readonly plans = new Map<string, Plan>();
  private readonly engine = new LocalEngine(model, { maxRunning: 1, maxStepTokens: 512, maxContext: model.config.maxSeqLen, earlyExit: EXITS_OFF });

  constructor(private readonly sampling: SamplingParams) {}

  private key(prompt: number, seed: number): string {
    return this.sampling.temperature > 0 ? `${prompt}/${seed}` : String(prompt);
  }

  get(prompt: number, seed: number): Plan {
    const plan = this.plans.get(this.key(prompt, seed));
    if (!plan) throw new Error(`no oracle plan for prompt ${prompt}, seed ${seed}`);
    return plan;
  }

  /** Traces every request of rounds 0..rounds-1 not yet planned (before any timing). */
  async prepare(rounds: number): Promise<void> {
    for (let round = 0; round < rounds; round++) {
      for (const prompt of prompts.keys()) {
        const seed = seedOf(round, prompt);
        const key = this.key(prompt, seed);
        if (!this.plans.has(key)) this.plans.set(key, await this.trace(prompt, seed));
      }
    }
  }

  private async trace(prompt: number, seed: number): Promise<Plan> {
    const request: GenerateRequest = {
      id: 'oracle',
      promptTokens: prompts[prompt]!,
      sampling: this.sampling,
      seed,
      maxTokens,
      stop: [],
      earlyExit: 'off',
      exitOverride: { kind: 'trace' },
    };
    const plan: Plan = [];
    for await (const event of this.engine.generate(request)) {
      if (event.type === 'error') throw new Error(event.message);
      if (event.type !== 'token') continue;
      // The first token comes from the prompt pass, where no ramp runs (and no trace is taken).
      const trace = event.trace;
      plan.push(trace ? (trace.ramps.find((r) => r.token === trace.finalToken)?.layer ?? null) : null);
    }
    return plan;
  }
}

interface Variant {
  name: string;
  engine: LocalEngine;
  mode: EarlyExitMode;
  oracle?: OraclePlans;
}

/** One round: every prompt once, at `concurrency` streams, with the round's seeds; returns per-request results and the wall time. */
async function drive(variant: Variant, concurrency: number, round: number, sampling: SamplingParams): Promise<{ results: RequestResult[]; wallMs: number }> {
  const results: RequestResult[] = [];
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < prompts.length) {
      const prompt = next++;
      const seed = seedOf(round, prompt);
      const plan = variant.oracle?.get(prompt, seed);
      const exitOverride = plan && { kind: 'plan' as const, layers: plan };
      const request: GenerateRequest = {
        id: `b${seed}`,
        promptTokens: prompts[prompt]!,
        sampling,
        seed,
        maxTokens,
        stop: [],
        earlyExit: variant.mode,
        exitOverride,
      };
      results.push(await collect(variant.engine, request));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { results, wallMs: performance.now() - started };
}

/** Reads one request's token events as a streaming client would, timing the gaps between them. */
async function collect(engine: LocalEngine, request: GenerateRequest): Promise<RequestResult> {
  const result: RequestResult = { seed: request.seed!, promptTokens: request.promptTokens, tokens: [], exitLayers: [], gaps: [] };
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
  return result;
}

/** The full model's logits at every position of `tokens`, by one forward pass. */
function fullLogits(tokens: number[]): Float32Array {
  const kv = new KvCache(model.config, 1, tokens.length);
  const positions = tokens.map((_, i) => i);
  let hidden = model.embed(tokens, positions);
  for (let layer = 0; layer < model.config.numLayers; layer++) {
    const out = new Float32Array(hidden.length);
    model.runBlock(layer, hidden, out, { firstSlot: 0, numRows: 1, seqLen: tokens.length, pastLengths: [0] }, kv);
    hidden = out;
  }
  const logits = new Float32Array(tokens.length * model.config.vocabSize);
  model.runHead(hidden, tokens.length, logits);
  return logits;
}

/**
 * Share of decoded tokens equal to the full model's own pick given the same
 * prefix: `sample` with the engine's key for the token's index in prompt +
 * output, which is the argmax when greedy and the coupled draw when sampling.
 * Each request's first token is left out, as the controller leaves it out:
 * it comes from the prompt pass, which no ramp reads.
 */
function recheck(results: RequestResult[], sampling: SamplingParams): number {
  const { vocabSize } = model.config;
  let agree = 0;
  let total = 0;
  for (const { seed, promptTokens, tokens } of results) {
    const logits = fullLogits([...promptTokens, ...tokens]);
    for (let i = 1; i < tokens.length; i++) {
      const index = promptTokens.length + i; // the row before it predicts it
      total++;
      if (sample(logits.subarray((index - 1) * vocabSize, index * vocabSize), sampling, drawKey(seed, index)) === tokens[i]) agree++;
    }
  }
  return agree / total;
}

/** Per ramp (and "context": drafts from the text itself; "lookahead": the lookahead head's guesses), drafts made, drafts accepted and verified runs so far (lossless), to difference over the measured rounds. */
function draftTally(engine: LocalEngine): Map<string, { drafted: number; accepted: number; runs: number }> {
  const state = engine.engine.drafts?.state();
  if (!state) return new Map();
  const sources = [...state.ramps.map((r) => [String(r.layer), r] as const), ['context', state.context] as const, ['lookahead', state.lookahead] as const];
  return new Map(sources.map(([source, { drafted, accepted, runs }]) => [source, { drafted, accepted, runs }]));
}

/** Per ramp that drafted between two tallies: the share of drafts accepted and the drafts accepted per verified run. */
function draftStats(
  before: ReturnType<typeof draftTally>,
  after: ReturnType<typeof draftTally>,
): Record<string, { acceptance: number; meanAcceptedRun: number }> {
  const stats: Record<string, { acceptance: number; meanAcceptedRun: number }> = {};
  for (const [source, end] of after) {
    const start = before.get(source) ?? { drafted: 0, accepted: 0, runs: 0 };
    const [drafted, accepted, runs] = [end.drafted - start.drafted, end.accepted - start.accepted, end.runs - start.runs];
    if (drafted > 0) stats[source] = { acceptance: accepted / drafted, meanAcceptedRun: accepted / runs };
  }
  return stats;
}

/** The controller's running tally (null with exits off), to difference over the measured rounds. */
function tally(engine: LocalEngine): { tokens: number; agreed: number } | null {
  const state = engine.engine.controller?.state();
  if (!state || state.cumulativeAgreement === null) return state ? { tokens: 0, agreed: 0 } : null;
  return { tokens: state.tokens, agreed: state.tokens * state.cumulativeAgreement };
}

function exitMixOf(results: RequestResult[]): Record<string, number> {
  const mix: Record<string, number> = {};
  for (const layer of results.flatMap((r) => r.exitLayers)) {
    const key = layer === null ? 'full' : String(layer);
    mix[key] = (mix[key] ?? 0) + 1;
  }
  return mix;
}

/** Share of requests whose tokens equal exits off's for the same seed (same prompt, same round). */
function sameTextShare(results: RequestResult[], reference: RequestResult[]): number {
  const bySeed = new Map(reference.map((r) => [r.seed, r.tokens.join(',')]));
  return results.filter((r) => bySeed.get(r.seed) === r.tokens.join(',')).length / results.length;
}

function variantsAt(concurrency: number, oracle: OraclePlans): Variant[] {
  const engineOptions = { maxRunning: Math.max(concurrency, 1), maxStepTokens: 512, maxContext: model.config.maxSeqLen };
  const exitsOn = (accuracy: number): EarlyExitOptions => ({ ...EXITS_OFF, enabled: true, accuracy, rampBudget: Number(values['ramp-budget']), confidence });
  const engineWith = (earlyExit: EarlyExitOptions) => new LocalEngine(model, { ...engineOptions, earlyExit });
  return [
    { name: 'exits off', engine: engineWith(EXITS_OFF), mode: 'off' },
    ...numbers(values.accuracies).map((accuracy) => ({ name: `exits on @${accuracy}`, engine: engineWith(exitsOn(accuracy)), mode: 'on' as const })),
    { name: 'oracle exits', engine: engineWith(EXITS_OFF), mode: 'on', oracle },
    { name: 'lossless', engine: engineWith(exitsOn(0.99)), mode: 'lossless' },
    { name: 'lossless, oracle drafts', engine: engineWith(exitsOn(0.99)), mode: 'lossless', oracle },
    ...(concurrency === 1 && values['forced-draft'] ? model.manifest.rampCandidates.map((layer) => forcedDrafts(engineWith(exitsOn(0.99)), layer)) : []),
  ];
}

/** Lossless, drafting at the ramp after `layer` whenever its confidence reaches --forced-draft (forced and frozen). */
function forcedDrafts(engine: LocalEngine, layer: number): Variant {
  const minConfidence = Number(values['forced-draft']);
  engine.engine.drafts!.setPlan({ layer, minConfidence, maxDraft: EXITS_OFF.maxDeferred }, { freeze: true });
  return { name: `lossless, drafts at L${layer} ≥ ${minConfidence}`, engine, mode: 'lossless' };
}

/** One point (temperature, streams): warm-up, then measured rounds with the variants taking turns; one row per variant. */
async function measurePoint(temperature: number, concurrency: number, oracle: OraclePlans) {
  const sampling = samplingAt(temperature);
  const variants = variantsAt(concurrency, oracle);
  for (const variant of variants) for (let round = 0; round < warmupRounds; round++) await drive(variant, concurrency, round, sampling);
  const before = variants.map((v) => tally(v.engine));
  const draftsBefore = variants.map((v) => draftTally(v.engine));
  const measured = variants.map(() => ({ results: [] as RequestResult[], wallMs: 0, roundRates: [] as number[] }));
  for (let r = 0; r < measuredRounds; r++) {
    for (let k = 0; k < variants.length; k++) {
      const v = (r + k) % variants.length;
      const { results, wallMs } = await drive(variants[v]!, concurrency, warmupRounds + r, sampling);
      measured[v]!.results.push(...results);
      measured[v]!.wallMs += wallMs;
      measured[v]!.roundRates.push(results.reduce((n, res) => n + res.tokens.length, 0) / wallMs);
    }
  }
  const exitsOff = measured[0]!.results;
  // Each round's tokens/s over exits off's in the same round: the machine drifts less within a round than over a point.
  const vsExitsOff = (v: number) => {
    const ratios = measured[v]!.roundRates.map((rate, r) => rate / measured[0]!.roundRates[r]!);
    return { median: median(ratios)!, min: Math.min(...ratios), max: Math.max(...ratios) };
  };
  return variants.map((variant, v) => {
    const { results, wallMs } = measured[v]!;
    const itl = summarize(results.flatMap((r) => r.gaps));
    const outputTokens = results.reduce((n, r) => n + r.tokens.length, 0);
    const exited = results.reduce((n, r) => n + r.exitLayers.filter((layer) => layer !== null).length, 0);
    const start = before[v];
    const end = tally(variant.engine);
    const row = {
      variant: variant.name,
      temperature,
      concurrency,
      requests: results.length,
      outputTokens,
      tokensPerSecond: (outputTokens / wallMs) * 1000,
      vsExitsOff: v === 0 ? null : vsExitsOff(v),
      itlMedianMs: itl?.p50 ?? null,
      itlP99Ms: itl?.p99 ?? null,
      // The controller's own count over the measured rounds (null: no controller).
      agreementServer: variant.mode === 'on' && start && end && end.tokens > start.tokens ? (end.agreed - start.agreed) / (end.tokens - start.tokens) : null,
      agreementRecheck: recheck(results, sampling),
      rampShare: exited / outputTokens,
      exitMix: exitMixOf(results),
      sameTextAsExitsOff: v === 0 ? null : sameTextShare(results, exitsOff),
      drafts: draftStats(draftsBefore[v]!, draftTally(variant.engine)),
      // Lossless: the draft controller's plan and clock at the end of the point.
      draftController: variant.mode === 'lossless' && !variant.oracle ? variant.engine.engine.drafts!.state() : null,
    };
    process.stderr.write(
      `exits: ${row.variant} T=${temperature} x${concurrency}: ${row.tokensPerSecond.toFixed(0)} tokens/s, ITL p50 ${fmt(row.itlMedianMs)} ms p99 ${fmt(row.itlP99Ms)} ms\n`,
    );
    return row;
  });
}

const fmt = (x: number | null, digits = 3) => (x === null ? '–' : x.toFixed(digits));
const percent = (x: number | null) => (x === null ? '–' : `${(x * 100).toFixed(1)}%`);

type Row = Awaited<ReturnType<typeof measurePoint>>[number];

function markdownTable(rows: Row[]): string {
  return [
    '| variant | temperature | streams | tokens/s | vs exits off, per round: median (range) | ITL p50 (ms) | ITL p99 (ms) | agreement (server) | agreement (re-check) | from ramps | exit mix (block: tokens) | same text as exits off | drafts accepted / per run (by ramp) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|',
    ...rows.map((r) => {
      const mix = Object.entries(r.exitMix)
        .map(([k, v]) => `${k}: ${v}`)
        .join(', ');
      const drafts = Object.entries(r.drafts)
        .map(([k, d]) => `${k}: ${percent(d.acceptance)} / ${d.meanAcceptedRun.toFixed(1)}`)
        .join(', ');
      const vs = r.vsExitsOff ? `${r.vsExitsOff.median.toFixed(2)}x (${r.vsExitsOff.min.toFixed(2)}–${r.vsExitsOff.max.toFixed(2)})` : '–';
      return `| ${r.variant} | ${r.temperature} | ${r.concurrency} | ${r.tokensPerSecond.toFixed(0)} | ${vs} | ${fmt(r.itlMedianMs)} | ${fmt(r.itlP99Ms)} | ${fmt(r.agreementServer, 4)} | ${fmt(r.agreementRecheck, 4)} | ${percent(r.rampShare)} | ${mix} | ${percent(r.sameTextAsExitsOff)} | ${drafts || '–'} |`;
    }),
  ].join('\n');
}

const rows: Row[] = [];
for (const temperature of numbers(values.temperatures)) {
  const oracle = new OraclePlans(samplingAt(temperature));
  await oracle.prepare(warmupRounds + measuredRounds);
  for (const concurrency of numbers(values.concurrency)) rows.push(...(await measurePoint(temperature, concurrency, oracle)));
}
process.stdout.write(`${markdownTable(rows)}\n`);
fs.mkdirSync(path.dirname(values.out), { recursive: true });
fs.writeFileSync(
  values.out,
  JSON.stringify({ date: new Date().toISOString(), command: `node dist/bench/exits.js ${process.argv.slice(2).join(' ')}`.trim(), rows }, null, 2),
);
model.release();
