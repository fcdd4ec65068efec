/**
 * Soak: `offramp serve` as a child process on loopback (stories260K, greedy,
 * early exits on, the compared requests lossless so every text is exact) under mixed load for a bounded
 * time: streamed and whole answers, clients that hang up mid-stream or
 * before the headers, malformed requests, overload bursts past the queue, and
 * one forced crash of the engine worker (POST /debug/fault, --debug-routes).
 *
 * It checks that nothing is lost and nothing leaks: every accepted stream
 * ends with a finish_reason and [DONE] (or an error frame, around the
 * crash); each text equals what its request gives alone; every refusal has
 * the status it should; no 5xx and no failed /health outside the crash's
 * window; /health always answers quickly; afterwards all slots are free and
 * the server's resident memory is within 10% of its value after warm-up
 * (or after the worker's restart, when that is higher);
 * SIGTERM ends it with status 0. Writes bench/results/soak.json and prints a
 * summary; the exit status says whether it passed.
 *
 * Here: the options, the report and its verdicts, the CLI. The phases are in
 * soak-phases.ts, the clients in soak-clients.ts, the counts and how an
 * answer is judged in soak-counters.ts.
 *
 *   npm run soak                      # 10 minutes
 *   npm run soak -- --minutes 0.5     # or --requests 2000; see --help
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SoakCounters } from './soak-counters.js';
import { MAX_BODY_BYTES, underLoad, type EndReadings, type Soak } from './soak-phases.js';
import { DEFAULT_SOAK_OPTIONS, type SoakOptions, type SoakReport } from './soak-report.js';
import { startServer } from './soak-server.js';

// --- the run: the phases (bench/soak-phases.ts) against one server, then the verdicts

export async function runSoak(input: Partial<SoakOptions> = {}): Promise<SoakReport> {
  const options: SoakOptions = { ...DEFAULT_SOAK_OPTIONS, ...input };
  options.log(`starting the server (stories260K, ${options.maxRunning} slots, queue ${options.maxQueued})`);
  const server = await startServer({ ...options, maxBodyBytes: MAX_BODY_BYTES });
  const soak: Soak = {
    options,
    warmupMs: (options.warmupSeconds ?? Math.min(30, Math.max(10, options.minutes * 60 * 0.05))) * 1000,
    server,
    started: performance.now(),
    counters: new SoakCounters(),
    incidents: [],
    failures: [],
    memory: { baselineKb: null, rebaselinedAfterFault: false, endKb: null, maxKb: null, ratio: null, samples: [] },
    fault: { kind: options.fault, atS: null, restartingSeen: false, recoveredAfterMs: null, excusedIncidents: 0 },
    faultWindow: null,
    healthLatencies: [],
  };
  let readings: EndReadings;
  let exitCode: number | null;
  try {
    readings = await underLoad(soak);
  } finally {
    exitCode = await server.stop();
  }
  const report = reportOf(soak, readings, exitCode);
  if (options.out) {
    fs.mkdirSync(path.dirname(options.out), { recursive: true });
    fs.writeFileSync(options.out, `${JSON.stringify(report, null, 2)}\n`);
  }
  return report;
}

/** The verdicts, added to the failures, and the report. */
function reportOf(soak: Soak, { endState, generatedTokens }: EndReadings, exitCode: number | null): SoakReport {
  const { options, counters, failures, fault, memory } = soak;
  const window = soak.faultWindow;
  const inWindow = (atMs: number): boolean => window !== null && atMs >= window[0] && atMs <= window[1];
  const unexcused = soak.incidents.filter((i) => !(i.excusable && inWindow(i.atMs)));
  fault.excusedIncidents = soak.incidents.length - unexcused.length;
  if (unexcused.length > 0) failures.push(`${unexcused.length} failure(s) outside the fault's window, e.g. ${unexcused[0]!.what}`);
  if (counters.texts.mismatched > 0) failures.push(`${counters.texts.mismatched} text(s) differ from their solo answers`);
  if (counters.hung > 0) failures.push(`${counters.hung} request(s) hung`);
  if (options.fault !== 'none') {
    if (!fault.restartingSeen) failures.push('/health never said "restarting" after the fault');
    if (fault.recoveredAfterMs === null) failures.push('the engine did not come back after the fault');
    if (endState['offramp:engine_restarts_total'] !== 1) failures.push(`engine_restarts_total is ${endState['offramp:engine_restarts_total']}, not 1`);
  }
  if (counters.bursts.count > 0 && counters.bursts.rejected429 === 0) failures.push('no burst was refused with 429: the queue is not bounded');
  if (endState['offramp:num_free_slots'] !== options.maxRunning)
    failures.push(`free slots after the run: ${endState['offramp:num_free_slots']}, not ${options.maxRunning}`);
  for (const gauge of ['offramp:num_requests_running', 'offramp:num_requests_waiting', 'offramp:num_requests_in_flight']) {
    if (endState[gauge] !== 0) failures.push(`${gauge} after the run: ${endState[gauge]}`);
  }
  if (memory.ratio !== null && memory.ratio > 1.1) failures.push(`RSS grew ${((memory.ratio - 1) * 100).toFixed(1)}% from warm-up to the end (limit 10%)`);
  const sorted = [...soak.healthLatencies].sort((a, b) => a - b);
  const maxLatencyMs = sorted.at(-1) ?? 0;
  if (maxLatencyMs > 2000) failures.push(`/health took ${maxLatencyMs.toFixed(0)} ms once (limit 2000)`);
  if (exitCode !== 0) failures.push(`the server exited with ${exitCode} after SIGTERM`);

  const { log: _log, out: _out, ...reported } = options;
  return {
    passed: failures.length === 0,
    failures,
    options: reported,
    durationS: (performance.now() - soak.started) / 1000,
    requests: { total: counters.total, byKind: counters.byKind, byStatus: counters.byStatus },
    streams: counters.streams,
    texts: counters.texts,
    disconnects: counters.disconnects,
    malformed: counters.malformed,
    bursts: counters.bursts,
    fault,
    incidents: { unexcused: unexcused.length, examples: unexcused.slice(0, 10) },
    hung: counters.hung,
    health: { checks: sorted.length, maxLatencyMs: Math.round(maxLatencyMs), p99LatencyMs: Math.round(sorted[Math.floor(sorted.length * 0.99)] ?? 0) },
    memory,
    endState,
    generatedTokens,
    serverExitCode: exitCode,
    serverLog: soak.server.log.slice(-30),
  };
}

/** A few lines for people. */
export function summarize(report: SoakReport): string {
  const r = report;
  const lines = [
    `soak ${r.passed ? 'PASSED' : 'FAILED'} in ${r.durationS.toFixed(0)} s: ${r.requests.total} requests ${JSON.stringify(r.requests.byKind)}, statuses ${JSON.stringify(r.requests.byStatus)}`,
    `  streams: ${r.streams.accepted} accepted, ${r.streams.finished} finished, ${r.streams.errorFrames} ended with an error frame; ${r.disconnects} disconnects; ${r.hung} hung`,
    `  texts: ${r.texts.checked} checked against their solo answers, ${r.texts.exact} exact, ${r.texts.mismatched} differ`,
    `  bursts: ${r.bursts.count} (${r.bursts.sent} requests, ${r.bursts.rejected429} got 429); malformed: ${r.malformed.sent} sent, ${r.malformed.wrongStatus} wrong status`,
    `  fault (${r.fault.kind}): at ${r.fault.atS?.toFixed(1) ?? '-'} s, restarting seen ${r.fault.restartingSeen}, back after ${r.fault.recoveredAfterMs ?? '-'} ms, ${r.fault.excusedIncidents} errors inside its window (excused)`,
    `  /health: ${r.health.checks} checks, p99 ${r.health.p99LatencyMs} ms, max ${r.health.maxLatencyMs} ms; end state ${JSON.stringify(r.endState)}`,
    `  RSS: ${r.memory.baselineKb ?? '?'} kB ${r.memory.rebaselinedAfterFault ? 'after the restart' : 'after warm-up'}, ${r.memory.endKb ?? '?'} kB at the end (x${r.memory.ratio?.toFixed(3) ?? '?'}), max ${r.memory.maxKb ?? '?'} kB; ${r.generatedTokens} tokens generated`,
    ...r.failures.map((f) => `  FAIL: ${f}`),
  ];
  return lines.join('\n');
}

const USAGE = `usage: npm run soak -- [--minutes M] [--requests N] [--concurrency C] [--max-running N] [--max-queued N]
                      [--fault crash|step|none] [--seed S] [--out FILE]

  --minutes M       length of the mixed-load phase (default 10)
  --requests N      stop the load after N requests if that comes first
  --concurrency C   clients sending one request after another (default 12)
  --max-running N   the server's batch slots (default 8); --max-queued N its queue (default 8)
  --fault K         how the engine worker is failed once, at 40% of the run (default crash)
  --out FILE        the JSON report (default bench/results/soak.json)`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string' },
      requests: { type: 'string' },
      concurrency: { type: 'string' },
      'max-running': { type: 'string' },
      'max-queued': { type: 'string' },
      fault: { type: 'string' },
      seed: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return void process.stdout.write(`${USAGE}\n`);
  const number = (flag: string, value: string | undefined, min: number): number | undefined => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${flag}: expected a number >= ${min}, got ${value}\n\n${USAGE}`);
    return n;
  };
  const fault = values.fault ?? 'crash';
  if (fault !== 'crash' && fault !== 'step' && fault !== 'none') throw new Error(`--fault: crash, step or none\n\n${USAGE}`);
  const options: Partial<SoakOptions> = { fault };
  const set = <K extends keyof SoakOptions>(key: K, value: SoakOptions[K] | undefined): void => {
    if (value !== undefined) options[key] = value;
  };
  set('minutes', number('minutes', values.minutes, 0.05));
  set('requests', number('requests', values.requests, 1));
  set('concurrency', number('concurrency', values.concurrency, 1));
  set('maxRunning', number('max-running', values['max-running'], 1));
  set('maxQueued', number('max-queued', values['max-queued'], 0));
  set('seed', number('seed', values.seed, 0));
  if (values.out) options.out = path.resolve(values.out);
  const report = await runSoak(options);
  process.stdout.write(`${summarize(report)}\n`);
  if (options.out ?? DEFAULT_SOAK_OPTIONS.out) process.stdout.write(`report: ${options.out ?? DEFAULT_SOAK_OPTIONS.out}\n`);
  if (!report.passed) process.exitCode = 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    await main();
  } catch (error) {
    process.stderr.write(`soak: ${(error as Error).message}\n`);
    process.exitCode = 1;
  }
}
