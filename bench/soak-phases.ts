/**
 * The soak's phases against one running server, in order: solo answers (the
 * texts to compare with), warm-up (then the counts start again), the
 * measured load with the forced fault, and the readings afterwards. They
 * share one `Soak` record; bench/soak.ts draws the verdicts from it.
 *
 * @module
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { loadPrompts } from './prompts.js';
import { SoakClients } from './soak-clients.js';
import { REQUEST_TIMEOUT_MS, type Incident, type SoakCounters } from './soak-counters.js';
import { malformedCatalogue, send, type SoakCase } from './soak-requests.js';
import { residentKb, scrape, settledRss, waitIdle, type Server } from './soak-server.js';
import type { SoakOptions, SoakReport } from './soak-report.js';

/** The server's body limit in the soak: small, so the "too large" case is cheap to send. */
export const MAX_BODY_BYTES = 64 * 1024;
/** After the worker is back, its failure may still show this long (streams that were mid-frame). */
const FAULT_GRACE_MS = 2000;
/** How long a restarted worker serves load before the second memory baseline (the first waits the whole warm-up). */
const RESTART_WARMUP_MS = 5000;
/** The generated-token counter, read before and after the measured load. */
const TOKENS_METRIC = 'offramp:generation_tokens_total{model_name="stories260K"}';

/** What the phases share: the server, and what they record for the report. */
export interface Soak {
  options: SoakOptions;
  /** The warm-up's length: the worker's restart waits at most this long before its memory baseline. */
  warmupMs: number;
  server: Server;
  started: number;
  /** The counts, cleared after the warm-up. */
  counters: SoakCounters;
  /** Everything that went wrong, the warm-up included: never cleared. */
  incidents: Incident[];
  /** Failures that are not incidents (the fault's route, /health after the run). */
  failures: string[];
  memory: SoakReport['memory'];
  fault: SoakReport['fault'];
  /** [from, to] (performance.now() ms): failures inside it may be excused; null until the fault is forced. */
  faultWindow: [number, number] | null;
  healthLatencies: number[];
}

/** What is read from the server after the load. */
export interface EndReadings {
  endState: Record<string, number>;
  generatedTokens: number;
}

/** Prompts with known answers: story openings (completions, some with a stop string) and chat turns. */
function soakCases(): SoakCase[] {
  const lengths = [16, 48, 96];
  return loadPrompts()
    .filter((p) => p.id.startsWith('short-') || p.kind === 'chat')
    .map((p, i): SoakCase => {
      const common = { max_tokens: lengths[i % lengths.length]!, temperature: 0, early_exit: 'lossless', ...(i % 5 === 4 ? { stop: ['.'] } : {}) };
      return p.kind === 'story'
        ? { id: p.id, path: '/v1/completions', body: { prompt: p.prompt, ...common } }
        : { id: p.id, path: '/v1/chat/completions', body: { messages: p.messages, ...common } };
    });
}

/** Everything that needs the server: the phases up to the readings after the load. */
export async function underLoad(soak: Soak): Promise<EndReadings> {
  const { options, server } = soak;
  const cases = soakCases();
  const expected = await soloAnswers(soak, cases);
  const clients = new SoakClients({
    seed: options.seed,
    maxRunning: options.maxRunning,
    maxQueued: options.maxQueued,
    server,
    cases,
    expected,
    malformed: malformedCatalogue(MAX_BODY_BYTES),
    counters: soak.counters,
    incidents: soak.incidents,
  });
  await warmUp(soak, clients);
  const tokensBefore = (await scrape(server)).get(TOKENS_METRIC) ?? 0;
  await measuredLoad(soak, clients);
  return afterwards(soak, tokensBefore);
}

/** Solo answers, one request at a time: the texts every later answer must equal. */
async function soloAnswers(soak: Soak, cases: readonly SoakCase[]): Promise<Map<string, string>> {
  const expected = new Map<string, string>();
  for (const soakCase of cases) {
    const outcome = await send(soak.server.url, soakCase, { stream: false, apiKey: soak.server.apiKey, timeoutMs: REQUEST_TIMEOUT_MS });
    if (outcome.status !== 200 || !outcome.finishReason) throw new Error(`solo ${soakCase.id}: status ${outcome.status} ${outcome.error?.message ?? ''}`);
    expected.set(soakCase.id, outcome.text);
  }
  soak.options.log(`${cases.length} solo answers in ${((performance.now() - soak.started) / 1000).toFixed(1)} s`);
  return expected;
}

/** The same mix (no fault), so memory reaches its working size before the baseline; then the counts start again. */
async function warmUp(soak: Soak, clients: SoakClients): Promise<void> {
  const { options, server, memory } = soak;
  const warmupEnd = performance.now() + soak.warmupMs;
  await Promise.all([
    clients.burst(),
    ...Array.from({ length: options.concurrency }, async () => {
      while (performance.now() < warmupEnd) await clients.mixed();
    }),
  ]);
  await waitIdle(server, options.maxRunning, 15_000);
  memory.baselineKb = await settledRss(server);
  memory.maxKb = memory.baselineKb;
  options.log(`warmed up in ${(soak.warmupMs / 1000).toFixed(0)} s; RSS ${memory.baselineKb ?? '?'} kB`);
  // Warm-up answers were checked like the rest, and their incidents stay; the counts report the measured phase.
  soak.counters.reset();
}

/** The measured run: the mixed load, a burst every so often, /health watched, and the fault forced once. */
async function measuredLoad(soak: Soak, clients: SoakClients): Promise<void> {
  const { options, counters } = soak;
  const loadStart = performance.now();
  const loadMs = options.minutes * 60_000;
  const loadEnd = loadStart + loadMs;
  const more = (): boolean => performance.now() < loadEnd && (options.requests === undefined || counters.total < options.requests);
  let faultRun: Promise<void> | null = options.fault === 'none' ? Promise.resolve() : null;
  const faultDue = (): boolean =>
    performance.now() >= loadStart + options.faultAt * loadMs || (options.requests !== undefined && counters.total >= options.faultAt * options.requests);
  const burstEveryMs = Math.max(5000, loadMs / 6);
  const bursting = async (): Promise<void> => {
    for (let next = loadStart + burstEveryMs; ; next += burstEveryMs) {
      await sleep(Math.max(0, next - performance.now()));
      if (!more()) return;
      await clients.burst();
    }
  };
  await Promise.all([
    monitor(soak, loadStart, more, () => {
      if (!faultRun && faultDue()) faultRun = injectFault(soak, loadStart);
    }),
    bursting(),
    ...Array.from({ length: options.concurrency }, async () => {
      while (more()) await clients.mixed();
    }),
  ]);
  await (faultRun ?? injectFault(soak, loadStart));
  options.log(`load done: ${counters.total} requests in ${((performance.now() - loadStart) / 1000).toFixed(1)} s`);
}

/** /health and /metrics keep answering, quickly, whatever the load; RSS is sampled along the way. `tick` may start the fault. */
async function monitor(soak: Soak, loadStart: number, more: () => boolean, tick: () => void): Promise<void> {
  const { server, memory, incidents } = soak;
  let lastRss = 0;
  while (more()) {
    const t0 = performance.now();
    const status = await fetch(`${server.url}/health`)
      .then((r) => r.status)
      .catch(() => 0);
    soak.healthLatencies.push(performance.now() - t0);
    if (status !== 200) incidents.push({ atMs: t0, kind: 'health', what: `/health answered ${status}`, excusable: true });
    const metricsOk = await scrape(server)
      .then(() => true)
      .catch(() => false);
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
    tick();
    await sleep(200);
  }
}

/** Forces the fault; if that throws, the failure is recorded and the window opened from the request on. */
async function injectFault(soak: Soak, loadStart: number): Promise<void> {
  const sentAt = performance.now();
  try {
    await forceFault(soak, loadStart, sentAt);
  } catch (error) {
    soak.failures.push(`the forced fault failed: ${(error as Error).message}`);
    soak.faultWindow ??= [sentAt, performance.now() + FAULT_GRACE_MS];
  }
}

/** POST /debug/fault, then /health until the worker is back, then (after a short warm-up) the second memory baseline. */
async function forceFault(soak: Soak, loadStart: number, sentAt: number): Promise<void> {
  const { options, server, fault, memory } = soak;
  fault.atS = (sentAt - loadStart) / 1000;
  options.log(`forcing a worker ${options.fault} at ${fault.atS.toFixed(1)} s`);
  const res = await fetch(`${server.url}/debug/fault`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ kind: options.fault }),
  });
  if (res.status !== 202) soak.failures.push(`POST /debug/fault answered ${res.status}`);
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
  soak.faultWindow = [sentAt, recoveredAt + FAULT_GRACE_MS];
  options.log(fault.recoveredAfterMs === null ? 'the worker did not come back' : `worker back after ${fault.recoveredAfterMs} ms`);
  if (fault.recoveredAfterMs === null) return;
  // A restarted worker is a new warm-up: the dead thread's malloc arena stays mapped, a one-time
  // step in RSS, and the new worker grows its KV cache, onnxruntime arenas and JIT code as the
  // first one did before the first baseline. So the second baseline, like the first, is taken
  // after a warm-up under load. Growth is measured from the higher of the two baselines.
  await sleep(Math.min(RESTART_WARMUP_MS, soak.warmupMs));
  const afterRestart = await settledRss(server);
  if (afterRestart !== null && memory.baselineKb !== null && afterRestart > memory.baselineKb) {
    options.log(`RSS ${afterRestart} kB after the restart: the baseline from here on`);
    memory.baselineKb = afterRestart;
    memory.rebaselinedAfterFault = true;
  }
}

/** Afterwards: everything given back, memory read again, /health still 200. */
async function afterwards(soak: Soak, tokensBefore: number): Promise<EndReadings> {
  const { options, server, memory } = soak;
  const end = await waitIdle(server, options.maxRunning, 15_000);
  const endState = Object.fromEntries(
    [
      'offramp:num_free_slots',
      'offramp:num_requests_running',
      'offramp:num_requests_waiting',
      'offramp:num_requests_in_flight',
      'offramp:engine_restarts_total',
    ].map((k) => [k, end.get(k) ?? NaN]),
  );
  const generatedTokens = (end.get(TOKENS_METRIC) ?? 0) - tokensBefore;
  memory.endKb = await settledRss(server);
  if (memory.baselineKb && memory.endKb) memory.ratio = memory.endKb / memory.baselineKb;
  if ((await fetch(`${server.url}/health`)).status !== 200) soak.failures.push('/health is not 200 after the run');
  return { endState, generatedTokens };
}
