/**
 * From request records to a point's figures: latency percentiles,
 * throughput, exit mix, the server's own view (/metrics, /exits) differenced
 * over the point, and medians over repeats.
 *
 * Definitions (DESIGN.md, "Measuring"):
 * - TTFT: due time to the first content chunk (a chunk with non-empty text).
 * - ITL: gaps between consecutive content chunks, as the client sees them.
 * - TPOT: (e2e − TTFT) / (output tokens − 1), output tokens from the usage chunk.
 * - e2e: due time to the end of the stream ([DONE]).
 * A chunk that carries several tokens (text held back, e.g. an incomplete
 * UTF-8 character) is one ITL gap but counts all its tokens in TPOT and
 * tokens/s; `tokensPerChunk` shows how often that happened (1.0: never).
 *
 * @module
 */
import { byLabel, parsePrometheus, total, type Sample } from './prometheus-text.js';
import type { RequestRecord, ServerSnapshot } from './target.js';

export interface Summary {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  min: number;
  max: number;
}

/** The q-quantile of sorted values, linearly interpolated (numpy's default). */
function quantile(sorted: readonly number[], q: number): number {
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
}

export function summarize(values: readonly number[]): Summary | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return {
    count: sorted.length,
    mean: sorted.reduce((s, v) => s + v, 0) / sorted.length,
    p50: quantile(sorted, 0.5),
    p90: quantile(sorted, 0.9),
    p99: quantile(sorted, 0.99),
    min: sorted[0]!,
    max: sorted.at(-1)!,
  };
}

export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  return quantile(
    [...values].sort((a, b) => a - b),
    0.5,
  );
}

/** The rate over runs of equal work from each run's rate: work over total time, the harmonic mean. */
export function combinedRate(rates: readonly number[]): number {
  return rates.length / rates.reduce((s, rate) => s + 1 / rate, 0);
}

/**
 * Decodes in one measurement of an engine that decodes `numTokens` at
 * `tokensPerSecond`: `requests`, or fewer where fewer already take
 * `seconds` (at least one). Many short decodes make a measurement long
 * enough to ride out the machine's hiccups; past that length more of them
 * cost time and buy nothing.
 */
export function decodesPerMeasurement(tokensPerSecond: number, numTokens: number, requests: number, seconds: number): number {
  return Math.max(1, Math.min(requests, Math.ceil((seconds * tokensPerSecond) / numTokens)));
}

/** Client mean against the server's histogram mean, over the same requests. */
export interface MeanCheck {
  clientMeanMs: number | null;
  serverMeanMs: number | null;
  /** (client − server) / server. */
  relativeDiff: number | null;
  within10Percent: boolean | null;
  serverCount: number;
}

/** The point as the server's /metrics saw it, next to the client's figures. */
export interface MetricsCheck {
  ttft: MeanCheck;
  /** Client side: per-token mean, Σ(last chunk − first chunk) / Σ(tokens − 1), which is what the server's per-token histogram averages. */
  itl: MeanCheck;
  /** offramp:generation_tokens_total's increase against the client's count: they must be equal. */
  generationTokens: { client: number; server: number };
  /** offramp:generation_tokens_by_exit_total's increase, by exit_layer ("full": the whole model). */
  serverExitTokens: Record<string, number>;
  /** offramp:engine_busy_seconds_total's increase over the point's duration: near 1, the engine thread is the limit. */
  engineBusy: number | null;
}

/** The exit controller over the point, from GET /exits before and after. */
export interface AgreementStats {
  /** Share of this point's verdicts where the streamed token equalled the full model's argmax. */
  streamed: number | null;
  /** Verdicts recorded during the point. */
  verdicts: number;
  /** /exits after the point: the accuracy window's agreement and the agreement since the server started. */
  windowed: number | null;
  cumulative: number | null;
  ramps: { layer: number; threshold: number; exitRate: number }[];
}

export interface SequenceAgreement {
  /** Requests compared with exits-off's answer to the same work item (same prompt, same seed). */
  compared: number;
  identical: number;
  identicalShare: number | null;
  /** Mean share of the longer text that the two texts share as a prefix. */
  prefixShare: number | null;
}

/** One repeat of one point. */
export interface RunStats {
  repeat: number;
  requests: { sent: number; finished: number; errors: number };
  errorSamples: string[];
  finishReasons: Record<string, number>;
  outputTokens: number;
  contentChunks: number;
  tokensPerChunk: number | null;
  tokenSource: 'usage' | 'chunks' | 'mixed' | null;
  /** First due time to last end. */
  durationS: number;
  outputTokensPerSecond: number;
  requestsPerSecond: number;
  ttftMs: Summary | null;
  itlMs: Summary | null;
  tpotMs: Summary | null;
  e2eMs: Summary | null;
  /** Due time to the moment the load generator sent it (open loop; large values mean the generator could not keep up). */
  sendLagMs: Summary | null;
  /** Content chunks by exit_layer ("full": no exit_layer, the whole model). */
  exitMix: Record<string, number>;
  /** Share of content chunks released by a ramp. */
  exitedShare: number | null;
  agreement: AgreementStats | null;
  serverMetrics: MetricsCheck | null;
  /** Filled in after the run (null for exits-off itself). */
  sequenceAgreement: SequenceAgreement | null;
}

// ITL histogram bins: log-spaced from 1 µs, 20 per decade, up to 10^4 ms; values beyond land in the end bins.
export const ITL_HISTOGRAM = { firstEdgeMs: 0.001, binsPerDecade: 20, numBins: 140 } as const;

export function itlBin(ms: number): number {
  const { firstEdgeMs, binsPerDecade, numBins } = ITL_HISTOGRAM;
  const bin = Math.floor(Math.log10(Math.max(ms, firstEdgeMs) / firstEdgeMs) * binsPerDecade);
  return Math.min(numBins - 1, Math.max(0, bin));
}

/** Adds a run's ITL gaps to `counts` (for the chart). */
export function addItlHistogram(records: readonly RequestRecord[], counts: number[]): void {
  for (const r of records) {
    if (r.error !== null) continue;
    for (let i = 1; i < r.chunkMs.length; i++) counts[itlBin(r.chunkMs[i]! - r.chunkMs[i - 1]!)]! += 1;
  }
}

function meanCheck(client: number | null, serverSum: number, serverCount: number): MeanCheck {
  const serverMeanMs = serverCount > 0 ? (serverSum / serverCount) * 1000 : null;
  const relativeDiff = client !== null && serverMeanMs !== null && serverMeanMs > 0 ? (client - serverMeanMs) / serverMeanMs : null;
  return { clientMeanMs: client, serverMeanMs, relativeDiff, within10Percent: relativeDiff === null ? null : Math.abs(relativeDiff) <= 0.1, serverCount };
}

function metricsCheck(ok: readonly RequestRecord[], before: Sample[], after: Sample[], clientTtftMean: number | null, durationS: number): MetricsCheck {
  const delta = (name: string) => total(after, name) - total(before, name);
  let spanMs = 0;
  let gaps = 0;
  for (const r of ok) {
    if (r.outputTokens < 2 || r.chunkMs.length === 0) continue;
    spanMs += r.chunkMs.at(-1)! - r.chunkMs[0]!;
    gaps += r.outputTokens - 1;
  }
  const exitsBefore = byLabel(before, 'offramp:generation_tokens_by_exit_total', 'exit_layer');
  const exitsAfter = byLabel(after, 'offramp:generation_tokens_by_exit_total', 'exit_layer');
  const serverExitTokens: Record<string, number> = {};
  for (const [layer, count] of Object.entries(exitsAfter)) {
    const d = count - (exitsBefore[layer] ?? 0);
    if (d > 0) serverExitTokens[layer] = d;
  }
  return {
    ttft: meanCheck(clientTtftMean, delta('offramp:time_to_first_token_seconds_sum'), delta('offramp:time_to_first_token_seconds_count')),
    itl: meanCheck(gaps > 0 ? spanMs / gaps : null, delta('offramp:inter_token_latency_seconds_sum'), delta('offramp:inter_token_latency_seconds_count')),
    generationTokens: { client: ok.reduce((s, r) => s + r.outputTokens, 0), server: delta('offramp:generation_tokens_total') },
    serverExitTokens,
    engineBusy:
      durationS > 0 && after.some((s) => s.name === 'offramp:engine_busy_seconds_total') ? delta('offramp:engine_busy_seconds_total') / durationS : null,
  };
}

function agreementStats(before: ServerSnapshot['exits'], after: ServerSnapshot['exits']): AgreementStats | null {
  if (!after) return null;
  const correct = (s: ServerSnapshot['exits']) => (s && s.cumulativeAgreement !== null ? Math.round(s.cumulativeAgreement * s.tokens) : 0);
  const verdicts = after.tokens - (before?.tokens ?? 0);
  return {
    streamed: verdicts > 0 ? (correct(after) - correct(before)) / verdicts : null,
    verdicts,
    windowed: after.windowedAgreement,
    cumulative: after.cumulativeAgreement,
    ramps: after.ramps,
  };
}

/** One repeat's figures from its records and the server snapshots taken around it. */
export function runStats(repeat: number, records: readonly RequestRecord[], before: ServerSnapshot | null, after: ServerSnapshot | null): RunStats {
  const ok = records.filter((r) => r.error === null);
  const errors = records.filter((r) => r.error !== null);
  const ttft: number[] = [];
  const itl: number[] = [];
  const tpot: number[] = [];
  const e2e: number[] = [];
  const exitMix: Record<string, number> = {};
  const finishReasons: Record<string, number> = {};
  for (const r of ok) {
    e2e.push(r.endMs - r.startMs);
    finishReasons[r.finishReason ?? 'none'] = (finishReasons[r.finishReason ?? 'none'] ?? 0) + 1;
    for (const layer of r.chunkExit) exitMix[layer === null ? 'full' : String(layer)] = (exitMix[layer === null ? 'full' : String(layer)] ?? 0) + 1;
    if (r.chunkMs.length === 0) continue;
    const first = r.chunkMs[0]! - r.startMs;
    ttft.push(first);
    for (let i = 1; i < r.chunkMs.length; i++) itl.push(r.chunkMs[i]! - r.chunkMs[i - 1]!);
    if (r.outputTokens >= 2) tpot.push((r.endMs - r.startMs - first) / (r.outputTokens - 1));
  }
  const outputTokens = ok.reduce((s, r) => s + r.outputTokens, 0);
  const contentChunks = ok.reduce((s, r) => s + r.chunkMs.length, 0);
  const start = Math.min(...records.map((r) => r.startMs));
  const end = Math.max(...records.map((r) => r.endMs));
  const durationS = records.length > 0 ? (end - start) / 1000 : 0;
  const sources = new Set(ok.map((r) => r.tokenSource));
  const ttftSummary = summarize(ttft);
  const exited = contentChunks - (exitMix.full ?? 0);
  return {
    repeat,
    requests: { sent: records.length, finished: ok.length, errors: errors.length },
    errorSamples: [...new Set(errors.map((r) => r.error!))].slice(0, 5),
    finishReasons,
    outputTokens,
    contentChunks,
    tokensPerChunk: contentChunks > 0 ? outputTokens / contentChunks : null,
    tokenSource: sources.size === 0 ? null : sources.size > 1 ? 'mixed' : [...sources][0]!,
    durationS,
    outputTokensPerSecond: durationS > 0 ? outputTokens / durationS : 0,
    requestsPerSecond: durationS > 0 ? ok.length / durationS : 0,
    ttftMs: ttftSummary,
    itlMs: summarize(itl),
    tpotMs: summarize(tpot),
    e2eMs: summarize(e2e),
    sendLagMs: summarize(records.map((r) => r.sendLagMs)),
    exitMix,
    exitedShare: contentChunks > 0 ? exited / contentChunks : null,
    agreement: agreementStats(before?.exits ?? null, after?.exits ?? null),
    serverMetrics:
      before?.metrics && after?.metrics
        ? metricsCheck(ok, parsePrometheus(before.metrics), parsePrometheus(after.metrics), ttftSummary?.mean ?? null, durationS)
        : null,
    sequenceAgreement: null,
  };
}

/** Texts equal, and how much of them agrees as a prefix, against a reference run of the same work. */
export function sequenceAgreement(records: readonly RequestRecord[], reference: ReadonlyMap<number, string>): SequenceAgreement {
  let compared = 0;
  let identical = 0;
  let prefix = 0;
  for (const r of records) {
    const ref = reference.get(r.index);
    if (r.error !== null || ref === undefined) continue;
    // transformers.js's decoder drops the space a first token starts with; offramp streams it.
    const a = r.text.trimStart();
    const b = ref.trimStart();
    compared++;
    if (a === b) identical++;
    let n = 0;
    while (n < a.length && n < b.length && a[n] === b[n]) n++;
    prefix += Math.max(a.length, b.length) === 0 ? 1 : n / Math.max(a.length, b.length);
  }
  return { compared, identical, identicalShare: compared > 0 ? identical / compared : null, prefixShare: compared > 0 ? prefix / compared : null };
}

/** Medians over repeats of the figures the table and chart show. */
export interface PointMedians {
  outputTokensPerSecond: number | null;
  requestsPerSecond: number | null;
  ttftMs: Omit<Summary, 'count' | 'min' | 'max'> | null;
  itlMs: Omit<Summary, 'count' | 'min' | 'max'> | null;
  tpotMs: Omit<Summary, 'count' | 'min' | 'max'> | null;
  e2eMs: Omit<Summary, 'count' | 'min' | 'max'> | null;
  exitedShare: number | null;
  agreementStreamed: number | null;
  sequenceIdenticalShare: number | null;
  metricsTtftRelativeDiff: number | null;
  metricsItlRelativeDiff: number | null;
  engineBusy: number | null;
  errors: number;
}

function medianSummary(summaries: (Summary | null)[]): PointMedians['ttftMs'] {
  const present = summaries.filter((s): s is Summary => s !== null);
  if (present.length === 0) return null;
  const m = (key: 'mean' | 'p50' | 'p90' | 'p99') => median(present.map((s) => s[key]))!;
  return { mean: m('mean'), p50: m('p50'), p90: m('p90'), p99: m('p99') };
}

const medianOf = (values: (number | null | undefined)[]) => median(values.filter((v): v is number => v !== null && v !== undefined));

export function pointMedians(runs: readonly RunStats[]): PointMedians {
  return {
    outputTokensPerSecond: medianOf(runs.map((r) => r.outputTokensPerSecond)),
    requestsPerSecond: medianOf(runs.map((r) => r.requestsPerSecond)),
    ttftMs: medianSummary(runs.map((r) => r.ttftMs)),
    itlMs: medianSummary(runs.map((r) => r.itlMs)),
    tpotMs: medianSummary(runs.map((r) => r.tpotMs)),
    e2eMs: medianSummary(runs.map((r) => r.e2eMs)),
    exitedShare: medianOf(runs.map((r) => r.exitedShare)),
    agreementStreamed: medianOf(runs.map((r) => r.agreement?.streamed)),
    sequenceIdenticalShare: medianOf(runs.map((r) => r.sequenceAgreement?.identicalShare)),
    metricsTtftRelativeDiff: medianOf(runs.map((r) => r.serverMetrics?.ttft.relativeDiff)),
    metricsItlRelativeDiff: medianOf(runs.map((r) => r.serverMetrics?.itl.relativeDiff)),
    engineBusy: medianOf(runs.map((r) => r.serverMetrics?.engineBusy)),
    errors: runs.reduce((s, r) => s + r.requests.errors, 0),
  };
}
