/**
 * Soak: `offramp serve` as a child process on loopback (stories260K, greedy,
 * early exits off so every text is exact) under mixed load for a bounded
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
 *   npm run soak                      # 10 minutes
 *   npm run soak -- --minutes 0.5     # or --requests 2000; see --help
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PROJECT_ROOT, Rng } from '../src/util/index.js';
import { loadPrompts } from './prompts.js';
import { exchange, malformedCatalogue, send, type Outcome, type SoakCase } from './soak-requests.js';
import { residentKb, scrape, settledRss, startServer, waitIdle } from './soak-server.js';
/** The server's body limit in the soak: small, so the "too large" case is cheap to send. */
const MAX_BODY_BYTES = 64 * 1024;
/** A request with no complete answer after this long counts as hung. */
const REQUEST_TIMEOUT_MS = 60_000;
/** After the worker is back, its failure may still show this long (streams that were mid-frame). */
const FAULT_GRACE_MS = 2000;
/** How long a restarted worker serves load before the second memory baseline (the first waits the whole warm-up). */
const RESTART_WARMUP_MS = 5000;

export interface SoakOptions {
  /** Length of the mixed-load phase. */
  minutes: number;
  /**
   * The same mix before it (no fault, not counted), so resident memory has
   * reached its working size when the baseline is read: it climbs for the
   * first ten seconds or so (default: 5% of the run, 10 to 30 s).
   */
  warmupSeconds?: number;
  /** Stop the load after this many requests, if that comes first. */
  requests?: number;
  /** Clients sending one request after another. */
  concurrency: number;
  /** The server's batch slots and queue. */
  maxRunning: number;
  maxQueued: number;
  /** How the worker is failed once, at `faultAt` of the run: 'none' for no fault. */
  fault: 'crash' | 'step' | 'none';
  faultAt: number;
  seed: number;
  /** Where the JSON report goes; null: nowhere. */
  out: string | null;
  log: (line: string) => void;
}

export const DEFAULT_SOAK_OPTIONS: SoakOptions = {
  minutes: 10,
  concurrency: 12,
  maxRunning: 8,
  maxQueued: 8,
  fault: 'crash',
  faultAt: 0.4,
  seed: 1,
  out: path.join(PROJECT_ROOT, 'bench', 'results', 'soak.json'),
  log: (line) => process.stderr.write(`soak: ${line}\n`),
};

type Kind = 'stream' | 'whole' | 'disconnect' | 'malformed' | 'burst';

/** Something that failed (or would have, outside the fault's window). */
interface Incident {
  atMs: number;
  kind: Kind | 'health' | 'fault';
  what: string;
  /** May be excused when it happened around the forced fault. */
  excusable: boolean;
}

export interface SoakReport {
  passed: boolean;
  failures: string[];
  options: Omit<SoakOptions, 'log' | 'out'>;
  durationS: number;
  requests: { total: number; byKind: Record<string, number>; byStatus: Record<string, number> };
  /** Streams answered 200: how they ended. */
  streams: { accepted: number; finished: number; errorFrames: number };
  /** Finished answers (streamed or whole) compared with their solo texts. */
  texts: { checked: number; exact: number; mismatched: number; mismatches: { case: string; expected: string; got: string }[] };
  disconnects: number;
  malformed: { sent: number; wrongStatus: number };
  bursts: { count: number; sent: number; rejected429: number };
  fault: { kind: string; atS: number | null; restartingSeen: boolean; recoveredAfterMs: number | null; excusedIncidents: number };
  incidents: { unexcused: number; examples: Incident[] };
  hung: number;
  health: { checks: number; maxLatencyMs: number; p99LatencyMs: number };
  /** baselineKb: after warm-up, or after the worker's restart when that is higher (rebaselinedAfterFault). */
  memory: { baselineKb: number | null; rebaselinedAfterFault: boolean; endKb: number | null; maxKb: number | null; ratio: number | null; samples: [number, number][] };
  endState: Record<string, number>;
  generatedTokens: number;
  serverExitCode: number | null;
  serverLog: string[];
}

/** A seeded PRNG: the same seed gives the same mix of requests. */
function random(seed: number): () => number {
  const generator = new Rng(seed);
  return () => generator.next();
}

/** Prompts with known answers: story openings (completions, some with a stop string) and chat turns. */
function soakCases(): SoakCase[] {
  const lengths = [16, 48, 96];
  return loadPrompts()
    .filter((p) => p.id.startsWith('short-') || p.kind === 'chat')
    .map((p, i): SoakCase => {
      const common = { max_tokens: lengths[i % lengths.length]!, temperature: 0, early_exit: false, ...(i % 5 === 4 ? { stop: ['.'] } : {}) };
      return p.kind === 'story'
        ? { id: p.id, path: '/v1/completions', body: { prompt: p.prompt, ...common } }
        : { id: p.id, path: '/v1/chat/completions', body: { messages: p.messages, ...common } };
    });
}

// --- the run

export async function runSoak(input: Partial<SoakOptions> = {}): Promise<SoakReport> {
  const options: SoakOptions = { ...DEFAULT_SOAK_OPTIONS, ...input };
  const { log } = options;
  const rand = random(options.seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)]!;
  const cases = soakCases();
  const malformed = malformedCatalogue(MAX_BODY_BYTES);
  const failures: string[] = [];
  const incidents: Incident[] = [];
  const byKind: Record<string, number> = {};
  const byStatus: Record<string, number> = {};
  const streams = { accepted: 0, finished: 0, errorFrames: 0 };
  const texts = { checked: 0, exact: 0, mismatched: 0, mismatches: [] as SoakReport['texts']['mismatches'] };
  const bursts = { count: 0, sent: 0, rejected429: 0 };
  const malformedStats = { sent: 0, wrongStatus: 0 };
  let disconnects = 0;
  let hung = 0;
  let total = 0;

  log(`starting the server (stories260K, ${options.maxRunning} slots, queue ${options.maxQueued})`);
  const server = await startServer({ ...options, maxBodyBytes: MAX_BODY_BYTES });
  const started = performance.now();
  const expected = new Map<string, string>();
  let exitCode: number | null = null;
  const healthLatencies: number[] = [];
  const memory: SoakReport['memory'] = { baselineKb: null, rebaselinedAfterFault: false, endKb: null, maxKb: null, ratio: null, samples: [] };
  const fault: SoakReport['fault'] = { kind: options.fault, atS: null, restartingSeen: false, recoveredAfterMs: null, excusedIncidents: 0 };
  let faultWindow: [number, number] | null = null;
  let endState: Record<string, number> = {};
  let generatedTokens = 0;

  /** Judges a generation's outcome against its solo text. */
  const judge = (kind: Kind, soakCase: SoakCase, outcome: Outcome): void => {
    total += 1;
    byKind[kind] = (byKind[kind] ?? 0) + 1;
    byStatus[outcome.status] = (byStatus[outcome.status] ?? 0) + 1;
    const at = outcome.statusAtMs || outcome.endAtMs;
    // The worker's crash never touches the sockets: a failed connection is never excused.
    if (outcome.failed) return void incidents.push({ atMs: outcome.endAtMs, kind, what: `connection failed: ${outcome.failed}`, excusable: false });
    if (kind === 'disconnect') {
      disconnects += 1;
      if (outcome.status >= 500) incidents.push({ atMs: at, kind, what: `status ${outcome.status}`, excusable: true });
      return;
    }
    if (outcome.aborted) {
      hung += 1;
      return void incidents.push({ atMs: outcome.endAtMs, kind, what: `hung: no complete answer within ${REQUEST_TIMEOUT_MS / 1000} s (${soakCase.id})`, excusable: false });
    }
    if (outcome.status === 429) {
      if (kind === 'burst') bursts.rejected429 += 1;
      if (!outcome.retryAfter) incidents.push({ atMs: at, kind, what: '429 without Retry-After', excusable: false });
      return;
    }
    if (outcome.status >= 500) {
      return void incidents.push({ atMs: at, kind, what: `status ${outcome.status}: ${outcome.error?.message ?? ''}`, excusable: true });
    }
    if (outcome.status !== 200) return void incidents.push({ atMs: at, kind, what: `status ${outcome.status} for ${soakCase.id}: ${outcome.error?.message}`, excusable: false });
    const streamed = kind !== 'whole';
    if (streamed) streams.accepted += 1;
    if (streamed && !outcome.done) return void incidents.push({ atMs: outcome.endAtMs, kind, what: `stream ended without [DONE] (${soakCase.id})`, excusable: false });
    if (outcome.error) {
      streams.errorFrames += 1;
      return void incidents.push({ atMs: outcome.endAtMs, kind, what: `error frame: ${outcome.error.message}`, excusable: true });
    }
    if (outcome.finishReason !== 'stop' && outcome.finishReason !== 'length') {
      return void incidents.push({ atMs: outcome.endAtMs, kind, what: `no finish_reason (${soakCase.id})`, excusable: false });
    }
    if (streamed) streams.finished += 1;
    const want = expected.get(soakCase.id);
    texts.checked += 1;
    if (outcome.text === want) texts.exact += 1;
    else {
      texts.mismatched += 1;
      if (texts.mismatches.length < 5) texts.mismatches.push({ case: soakCase.id, expected: want ?? '', got: outcome.text });
      incidents.push({ atMs: outcome.endAtMs, kind, what: `text differs from its solo answer (${soakCase.id})`, excusable: false });
    }
  };

  const generation = async (kind: Kind, streamed: boolean): Promise<void> => {
    const soakCase = pick(cases);
    const hangUp = kind === 'disconnect' ? (rand() < 0.3 ? { abortAfterMs: Math.floor(rand() * 20) } : { abortAfterFrames: Math.floor(rand() * 6) }) : {};
    const outcome = await send(server.url, soakCase, { stream: streamed, apiKey: server.apiKey, timeoutMs: REQUEST_TIMEOUT_MS, includeUsage: rand() < 0.3, ...hangUp });
    judge(kind, soakCase, outcome);
    // A client told to come back later (429, 503) waits a little, as the OpenAI clients do.
    if (kind !== 'burst' && (outcome.status === 429 || outcome.status === 503)) await sleep(rand() * 1000 * Math.min(1, Number(outcome.retryAfter ?? 1)));
  };

  const sendMalformed = async (): Promise<void> => {
    const bad = pick(malformed);
    const key: Record<string, string> = bad.key === false ? {} : { authorization: `Bearer ${bad.key === 'wrong' ? 'soak-wrong-key' : server.apiKey}` };
    const outcome = await exchange(server.url, bad.path, bad.body, { 'content-type': 'application/json', ...key }, { timeoutMs: REQUEST_TIMEOUT_MS });
    total += 1;
    malformedStats.sent += 1;
    byKind.malformed = (byKind.malformed ?? 0) + 1;
    byStatus[outcome.status] = (byStatus[outcome.status] ?? 0) + 1;
    if (outcome.status !== bad.status || !outcome.error?.message) {
      malformedStats.wrongStatus += 1;
      const what = outcome.failed ? `connection failed: ${outcome.failed}` : `status ${outcome.status}, not ${bad.status}`;
      incidents.push({ atMs: outcome.endAtMs, kind: 'malformed', what: `${bad.name}: ${what}`, excusable: false });
    }
  };

  /** One client's next request, by weight. */
  const mixed = async (): Promise<void> => {
    const r = rand();
    if (r < 0.55) await generation('stream', true);
    else if (r < 0.7) await generation('whole', false);
    else if (r < 0.82) await generation('disconnect', true);
    else await sendMalformed();
  };

  const burst = async (): Promise<void> => {
    const size = options.maxRunning + options.maxQueued + 8;
    bursts.count += 1;
    bursts.sent += size;
    await Promise.all(Array.from({ length: size }, () => generation('burst', true)));
  };

  try {
    // Solo answers, one request at a time: the texts every later answer must equal.
    for (const soakCase of cases) {
      const outcome = await send(server.url, soakCase, { stream: false, apiKey: server.apiKey, timeoutMs: REQUEST_TIMEOUT_MS });
      if (outcome.status !== 200 || !outcome.finishReason) throw new Error(`solo ${soakCase.id}: status ${outcome.status} ${outcome.error?.message ?? ''}`);
      expected.set(soakCase.id, outcome.text);
    }
    log(`${cases.length} solo answers in ${((performance.now() - started) / 1000).toFixed(1)} s`);

    // Warm-up: the same mix (no fault), so memory reaches its working size before the baseline.
    const warmupMs = (options.warmupSeconds ?? Math.min(30, Math.max(10, options.minutes * 60 * 0.05))) * 1000;
    const warmupEnd = performance.now() + warmupMs;
    await Promise.all([
      burst(),
      ...Array.from({ length: options.concurrency }, async () => {
        while (performance.now() < warmupEnd) await mixed();
      }),
    ]);
    await waitIdle(server, options.maxRunning, 15_000);
    memory.baselineKb = await settledRss(server);
    memory.maxKb = memory.baselineKb;
    log(`warmed up in ${(warmupMs / 1000).toFixed(0)} s; RSS ${memory.baselineKb ?? '?'} kB`);
    // Warm-up answers were checked like the rest; the counts report the measured phase.
    total = 0;
    for (const k of Object.keys(byKind)) delete byKind[k];
    for (const k of Object.keys(byStatus)) delete byStatus[k];
    Object.assign(streams, { accepted: 0, finished: 0, errorFrames: 0 });
    Object.assign(texts, { checked: 0, exact: 0 });
    Object.assign(bursts, { count: 0, sent: 0, rejected429: 0 });
    Object.assign(malformedStats, { sent: 0, wrongStatus: 0 });
    disconnects = 0;
    const tokensBefore = (await scrape(server)).get('offramp:generation_tokens_total{model_name="stories260K"}') ?? 0;

    // The measured run.
    const loadStart = performance.now();
    const loadMs = options.minutes * 60_000;
    const loadEnd = loadStart + loadMs;
    const more = (): boolean => performance.now() < loadEnd && (options.requests === undefined || total < options.requests);
    let faultRun: Promise<void> | null = options.fault === 'none' ? Promise.resolve() : null;
    const faultDue = (): boolean => performance.now() >= loadStart + options.faultAt * loadMs || (options.requests !== undefined && total >= options.faultAt * options.requests);

    const injectFault = async (): Promise<void> => {
      const sentAt = performance.now();
      try {
        await forceFault(sentAt);
      } catch (error) {
        failures.push(`the forced fault failed: ${(error as Error).message}`);
        faultWindow ??= [sentAt, performance.now() + FAULT_GRACE_MS];
      }
    };
    const forceFault = async (sentAt: number): Promise<void> => {
      fault.atS = (sentAt - loadStart) / 1000;
      log(`forcing a worker ${options.fault} at ${fault.atS.toFixed(1)} s`);
      const res = await fetch(`${server.url}/debug/fault`, {
        method: 'POST',
        headers: { authorization: `Bearer ${server.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ kind: options.fault }),
      });
      if (res.status !== 202) failures.push(`POST /debug/fault answered ${res.status}`);
      const deadline = sentAt + 60_000;
      let recoveredAt = Infinity;
      while (performance.now() < deadline) {
        const health = await fetch(`${server.url}/health`).then(async (r) => ({ status: r.status, body: (await r.json()) as { status: string } }));
        if (health.status === 503 && health.body.status === 'restarting') fault.restartingSeen = true;
        if (health.status === 200 && fault.restartingSeen) {
          recoveredAt = performance.now();
          break;
        }
        await sleep(5);
      }
      fault.recoveredAfterMs = Number.isFinite(recoveredAt) ? Math.round(recoveredAt - sentAt) : null;
      faultWindow = [sentAt, recoveredAt + FAULT_GRACE_MS];
      log(fault.recoveredAfterMs === null ? 'the worker did not come back' : `worker back after ${fault.recoveredAfterMs} ms`);
      if (fault.recoveredAfterMs === null) return;
      // A restarted worker is a new warm-up: the dead thread's malloc arena stays mapped, a one-time
      // step in RSS, and the new worker grows its KV cache, onnxruntime arenas and JIT code as the
      // first one did before the first baseline. So the second baseline, like the first, is taken
      // after a warm-up under load. Growth is measured from the higher of the two baselines.
      await sleep(Math.min(RESTART_WARMUP_MS, warmupMs));
      const afterRestart = await settledRss(server);
      if (afterRestart !== null && memory.baselineKb !== null && afterRestart > memory.baselineKb) {
        log(`RSS ${afterRestart} kB after the restart: the baseline from here on`);
        memory.baselineKb = afterRestart;
        memory.rebaselinedAfterFault = true;
      }
    };

    // /health and /metrics keep answering, quickly, whatever the load; RSS is sampled along the way.
    const monitor = async (): Promise<void> => {
      let lastRss = 0;
      while (more()) {
        const t0 = performance.now();
        const status = await fetch(`${server.url}/health`).then((r) => r.status, () => 0);
        const latency = performance.now() - t0;
        healthLatencies.push(latency);
        if (status !== 200) incidents.push({ atMs: t0, kind: 'health', what: `/health answered ${status}`, excusable: true });
        const metricsOk = await scrape(server).then(() => true, () => false);
        if (!metricsOk) incidents.push({ atMs: t0, kind: 'health', what: '/metrics failed', excusable: false });
        if (performance.now() - lastRss > 2000) {
          lastRss = performance.now();
          const rss = residentKb(server.pid);
          if (rss !== null) {
            memory.maxKb = Math.max(memory.maxKb ?? 0, rss);
            // [seconds into the load, kB]
            memory.samples.push([Math.round((lastRss - loadStart) / 100) / 10, rss]);
          }
        }
        if (!faultRun && faultDue()) faultRun = injectFault();
        await sleep(200);
      }
    };

    const burstEveryMs = Math.max(5000, loadMs / 6);
    const bursting = async (): Promise<void> => {
      for (let next = loadStart + burstEveryMs; ; next += burstEveryMs) {
        await sleep(Math.max(0, next - performance.now()));
        if (!more()) return;
        await burst();
      }
    };

    await Promise.all([
      monitor(),
      bursting(),
      ...Array.from({ length: options.concurrency }, async () => {
        while (more()) await mixed();
      }),
    ]);
    await (faultRun ?? injectFault());
    const loadS = (performance.now() - loadStart) / 1000;
    log(`load done: ${total} requests in ${loadS.toFixed(1)} s`);

    // Afterwards: everything given back.
    const end = await waitIdle(server, options.maxRunning, 15_000);
    endState = Object.fromEntries(
      ['offramp:num_free_slots', 'offramp:num_requests_running', 'offramp:num_requests_waiting', 'offramp:num_requests_in_flight', 'offramp:engine_restarts_total'].map((k) => [k, end.get(k) ?? NaN]),
    );
    generatedTokens = (end.get('offramp:generation_tokens_total{model_name="stories260K"}') ?? 0) - tokensBefore;
    memory.endKb = await settledRss(server);
    if (memory.baselineKb && memory.endKb) memory.ratio = memory.endKb / memory.baselineKb;
    if ((await fetch(`${server.url}/health`)).status !== 200) failures.push('/health is not 200 after the run');
  } finally {
    exitCode = await server.stop();
  }

  // Verdicts.
  const window = faultWindow as [number, number] | null;
  const inWindow = (atMs: number): boolean => window !== null && atMs >= window[0] && atMs <= window[1];
  const unexcused = incidents.filter((i) => !(i.excusable && inWindow(i.atMs)));
  fault.excusedIncidents = incidents.length - unexcused.length;
  if (unexcused.length > 0) failures.push(`${unexcused.length} failure(s) outside the fault's window, e.g. ${unexcused[0]!.what}`);
  if (texts.mismatched > 0) failures.push(`${texts.mismatched} text(s) differ from their solo answers`);
  if (hung > 0) failures.push(`${hung} request(s) hung`);
  if (options.fault !== 'none') {
    if (!fault.restartingSeen) failures.push('/health never said "restarting" after the fault');
    if (fault.recoveredAfterMs === null) failures.push('the engine did not come back after the fault');
    if (endState['offramp:engine_restarts_total'] !== 1) failures.push(`engine_restarts_total is ${endState['offramp:engine_restarts_total']}, not 1`);
  }
  if (bursts.count > 0 && bursts.rejected429 === 0) failures.push('no burst was refused with 429: the queue is not bounded');
  if (endState['offramp:num_free_slots'] !== options.maxRunning) failures.push(`free slots after the run: ${endState['offramp:num_free_slots']}, not ${options.maxRunning}`);
  for (const gauge of ['offramp:num_requests_running', 'offramp:num_requests_waiting', 'offramp:num_requests_in_flight']) {
    if (endState[gauge] !== 0) failures.push(`${gauge} after the run: ${endState[gauge]}`);
  }
  if (memory.ratio !== null && memory.ratio > 1.1) failures.push(`RSS grew ${((memory.ratio - 1) * 100).toFixed(1)}% from warm-up to the end (limit 10%)`);
  const sorted = [...healthLatencies].sort((a, b) => a - b);
  const maxLatencyMs = sorted.at(-1) ?? 0;
  if (maxLatencyMs > 2000) failures.push(`/health took ${maxLatencyMs.toFixed(0)} ms once (limit 2000)`);
  if (exitCode !== 0) failures.push(`the server exited with ${exitCode} after SIGTERM`);

  const { log: _log, out: _out, ...reported } = options;
  const report: SoakReport = {
    passed: failures.length === 0,
    failures,
    options: reported,
    durationS: (performance.now() - started) / 1000,
    requests: { total, byKind, byStatus },
    streams,
    texts,
    disconnects,
    malformed: malformedStats,
    bursts,
    fault,
    incidents: { unexcused: unexcused.length, examples: unexcused.slice(0, 10) },
    hung,
    health: { checks: sorted.length, maxLatencyMs: Math.round(maxLatencyMs), p99LatencyMs: Math.round(sorted[Math.floor(sorted.length * 0.99)] ?? 0) },
    memory,
    endState,
    generatedTokens,
    serverExitCode: exitCode,
    serverLog: server.log.slice(-30),
  };
  if (options.out) {
    fs.mkdirSync(path.dirname(options.out), { recursive: true });
    fs.writeFileSync(options.out, `${JSON.stringify(report, null, 2)}\n`);
  }
  return report;
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
