/**
 * The markdown report: how the run was made, then one table per load mode
 * (closed-loop concurrency, Poisson rate), variants side by side, medians
 * over repeats.
 *
 * @module
 */
import type { BenchPoint, BenchResult } from './result.js';
import { loadLabel } from './load.js';
import type { PointMedians } from './stats.js';

/** Three significant figures, without exponent noise. */
export function fmt(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  const abs = Math.abs(value);
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return String(Number(value.toPrecision(2)));
}

const pct = (value: number | null | undefined, digits = 1) => (value === null || value === undefined ? '–' : `${(100 * value).toFixed(digits)}%`);
const signedPct = (value: number | null | undefined) => (value === null || value === undefined ? '–' : `${value >= 0 ? '+' : ''}${(100 * value).toFixed(0)}%`);
const triple = (s: PointMedians['ttftMs']) => (s ? `${fmt(s.p50)} / ${fmt(s.p90)} / ${fmt(s.p99)}` : '–');

function row(point: BenchPoint, off: BenchPoint | undefined): string {
  const m = point.median;
  const ratio =
    off && off !== point && m.outputTokensPerSecond !== null && off.median.outputTokensPerSecond
      ? `${(m.outputTokensPerSecond / off.median.outputTokensPerSecond).toFixed(2)}x`
      : '';
  const metricsOk = point.runs.every((r) => r.serverMetrics === null)
    ? ''
    : point.runs.every((r) => r.serverMetrics?.ttft.within10Percent && r.serverMetrics.itl.within10Percent)
      ? ' ✓'
      : ' ✗';
  return [
    loadLabel(point.load),
    point.variant,
    fmt(m.outputTokensPerSecond),
    ratio,
    fmt(m.requestsPerSecond),
    triple(m.ttftMs),
    triple(m.itlMs),
    fmt(m.tpotMs?.p50),
    fmt(m.e2eMs?.p50),
    pct(m.exitedShare),
    pct(m.agreementStreamed, 2),
    pct(m.sequenceIdenticalShare, 0),
    pct(m.engineBusy, 0),
    `${signedPct(m.metricsTtftRelativeDiff)} / ${signedPct(m.metricsItlRelativeDiff)}${metricsOk}`,
    String(m.errors),
  ].join(' | ');
}

const HEADER = [
  '| load | variant | output tokens/s | vs exits-off | requests/s | TTFT p50 / p90 / p99 ms | ITL p50 / p90 / p99 ms | TPOT p50 ms | e2e p50 ms | from ramps | exit agreement | same text as exits-off | engine busy | vs /metrics TTFT / ITL | errors |',
  '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
];

/** The tables alone (what the bench prints). */
export function markdownTables(result: BenchResult): string {
  const sections: string[] = [];
  for (const mode of ['closed', 'poisson'] as const) {
    const loads = result.loads.filter((l) => l.mode === mode);
    if (loads.length === 0) continue;
    const lines = [mode === 'closed' ? '### Closed loop (concurrent clients)' : '### Open loop (Poisson arrivals)', '', ...HEADER];
    for (const load of loads) {
      const points = result.points.filter((p) => loadLabel(p.load) === loadLabel(load));
      const off = points.find((p) => p.variant === 'exits-off');
      for (const point of points) lines.push(`| ${row(point, off)} |`);
    }
    sections.push(lines.join('\n'));
  }
  return sections.join('\n\n');
}

export function markdownReport(result: BenchResult): string {
  const c = result.config;
  const checks = result.points.flatMap((p) =>
    p.runs.flatMap((r) => (r.serverMetrics ? [r.serverMetrics.ttft.within10Percent && r.serverMetrics.itl.within10Percent] : [])),
  );
  const m = result.machine;
  const llamaCppNote = result.variants.some((v) => v.id === 'llama.cpp')
    ? '- llama.cpp (node-llama-cpp, in this process) batches concurrent requests on its context sequences, one per server slot; requests beyond them queue.\n'
    : '';
  return `# offramp bench: ${result.model.name}

${result.date} · \`${result.command}\` · ${m.cpus} x ${m.cpuModel}, Node ${m.node} · load average ${m.loadAverageStart.map((x) => x.toFixed(2)).join(' ')} at start, ${m.loadAverageEnd.map((x) => x.toFixed(2)).join(' ')} at end · ${result.durationS.toFixed(0)} s

${result.model.realWeights ? 'Trained weights: the exit columns are meaningful.' : 'Random weights (a synth shape): speed only; the exit columns say nothing about exit quality.'} ${c.maxTokens} new tokens at most, temperature ${c.temperature}, seed ${c.seed}, ${c.prompts.used} prompts (story openings to /v1/completions, chat turns to /v1/chat/completions), ${c.warmup} warm-up requests per variant, ${c.threads} onnxruntime thread(s), ${c.maxRunning} server slots. Medians over ${c.repeats} repeat(s), variants alternating.

${markdownTables(result)}

- TTFT: to the first content chunk; ITL: gaps between content chunks; TPOT: (e2e − TTFT) / (tokens − 1); all client side, milliseconds.
- transformers.js serves one request at a time in this process (no HTTP): at concurrency > 1 and under Poisson arrivals its requests queue, so its throughput is sequential serving's and its TTFT includes the wait.
${llamaCppNote}- from ramps: share of streamed chunks that carried \`exit_layer\`. exit agreement: share of this point's exit-controller verdicts where the streamed token equalled the full model's argmax (GET /exits before and after). same text: requests whose whole text equals exits-off's for the same prompt and seed.
- engine busy: share of the point's wall time the server's engine thread spent in steps (\`offramp:engine_busy_seconds_total\`); near 100%, the engine is what limits throughput.
- vs /metrics: client mean minus the server's histogram mean (sum/count increase over the point), relative; ✓ when every repeat is within 10% on both. ${checks.filter(Boolean).length} of ${checks.length} runs within 10%.
`;
}
