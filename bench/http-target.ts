/**
 * offramp (or any OpenAI-compatible server) as a bench target: streamed
 * requests over node:http, the SSE stream read by eventsource-parser,
 * timestamps taken as each network read arrives; plus /metrics and /exits
 * snapshots. `startOfframp` runs a server in this process (its engine in
 * its own worker thread, as `offramp serve` does) or as an `offramp serve`
 * child process.
 *
 * @module
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { createParser } from 'eventsource-parser';
import { SERVE_USAGE, ServeConfigSchema, startServer, type ServeConfig } from '../src/server/index.js';
import { withHugePages } from '../src/util/index.js';
import type { BenchModel } from './models.js';
import { failedRecord, type ExitsSnapshot, type RequestRecord, type ServerSnapshot, type Target } from './target.js';
import type { Work } from './workload.js';

/** The parts of a streamed chunk the client reads (chat or completion). */
interface StreamChunk {
  choices?: { text?: string; delta?: { content?: string | null }; finish_reason?: string | null; exit_layer?: number }[];
  usage?: { completion_tokens?: number } | null;
  error?: { message?: string };
}

/** No single request may hang a run. */
const REQUEST_TIMEOUT_MS = 10 * 60 * 1000;

function errorMessage(error: unknown): string {
  const e = error as Error & { cause?: Error };
  return e.cause?.message ? `${e.message}: ${e.cause.message}` : String(e.message ?? error);
}

/** The request body; chat turns go to /v1/chat/completions, story openings to /v1/completions. */
function requestOf(work: Work, model: string | null, maxTokens: number, temperature: number): { route: string; body: Record<string, unknown> } {
  const common = {
    ...(model === null ? {} : { model }),
    max_tokens: maxTokens,
    temperature,
    // Sampled requests carry a seed so that every variant draws alike (a seeded or greedy request asked to exit decodes lossless: the server's rule).
    ...(temperature > 0 ? { seed: work.seed } : {}),
    stream: true,
    stream_options: { include_usage: true },
  };
  if (work.prompt.kind === 'chat') return { route: '/v1/chat/completions', body: { ...common, messages: work.prompt.messages } };
  return { route: '/v1/completions', body: { ...common, prompt: work.prompt.prompt } };
}

/**
 * Sends one streamed request and times it. Never throws: a failure is a
 * record with `error` set.
 */
export async function streamRequest(
  baseUrl: string,
  model: string | null,
  work: Work,
  startMs: number,
  maxTokens: number,
  temperature: number,
): Promise<RequestRecord> {
  const { route, body } = requestOf(work, model, maxTokens, temperature);
  const record: RequestRecord = { ...failedRecord(work, startMs, ''), error: null };
  let done = false;
  let usageTokens: number | null = null;
  let now = 0;
  const parser = createParser({
    onEvent: (event) => {
      if (event.data === '[DONE]') {
        done = true;
        record.endMs = now;
        return;
      }
      const chunk = JSON.parse(event.data) as StreamChunk;
      if (chunk.error) {
        record.error ??= `error frame: ${chunk.error.message ?? event.data}`;
        return;
      }
      if (typeof chunk.usage?.completion_tokens === 'number') usageTokens = chunk.usage.completion_tokens;
      const choice = chunk.choices?.[0];
      if (!choice) return;
      const text = choice.text ?? choice.delta?.content ?? '';
      if (text !== '') {
        record.chunkMs.push(now);
        record.chunkExit.push(typeof choice.exit_layer === 'number' ? choice.exit_layer : null);
        record.text += text;
      }
      if (choice.finish_reason) record.finishReason = choice.finish_reason;
    },
  });
  try {
    const { status, body: reply } = await postStream(`${baseUrl}${route}`, JSON.stringify(body), (text) => {
      // One timestamp per network read: every event in it arrived together.
      now = performance.now();
      parser.feed(text);
    });
    if (status !== 200) {
      let message = reply.slice(0, 200);
      try {
        message = (JSON.parse(reply) as StreamChunk).error?.message ?? message;
      } catch {
        // not JSON: keep the text
      }
      return failedRecord(work, startMs, `HTTP ${status}: ${message}`);
    }
    now = performance.now();
  } catch (error) {
    return { ...record, endMs: performance.now(), error: errorMessage(error) };
  }
  if (!done && record.error === null) record.error = 'the stream ended without [DONE]';
  if (!done) record.endMs = now;
  record.outputTokens = usageTokens ?? record.chunkMs.length;
  record.tokenSource = usageTokens === null ? 'chunks' : 'usage';
  if (record.error === null && record.finishReason === null) record.error = 'no finish_reason';
  return record;
}

/**
 * POSTs `body` and hands each network read of a 200 answer to `onText` as it
 * arrives; any other status comes back with its body. node:http rather than
 * fetch: fetch's web-stream reader cost the load generator more CPU per
 * token than the server spends, on the same two cores.
 */
function postStream(url: string, body: string, onText: (text: string) => void): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, timeout: REQUEST_TIMEOUT_MS }, (response) => {
      const status = response.statusCode ?? 0;
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (piece: string) => (status === 200 ? onText(piece) : (text += piece)));
      response.on('end', () => resolve({ status, body: text }));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`)));
    request.on('error', reject);
    request.end(body);
  });
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls GET /health until it answers 200. */
export async function waitHealthy(baseUrl: string, timeoutMs = 120_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = '';
  while (performance.now() < deadline) {
    try {
      const response = await fetch(`${baseUrl}/health`);
      if (response.ok) return;
      last = `HTTP ${response.status} ${await response.text()}`;
    } catch (error) {
      last = errorMessage(error);
    }
    await sleep(100);
  }
  throw new Error(`${baseUrl}/health did not answer 200 within ${timeoutMs / 1000} s (last: ${last})`);
}

/** A server reached over HTTP; `stop` shuts it down when the bench started it. */
export class HttpTarget implements Target {
  constructor(
    readonly id: string,
    readonly baseUrl: string,
    /** The `model` field to send (null: leave it out). */
    private readonly model: string | null,
    private readonly stop: () => Promise<void> = async () => {},
  ) {}

  send(work: Work, startMs: number, maxTokens: number, temperature: number): Promise<RequestRecord> {
    return streamRequest(this.baseUrl, this.model, work, startMs, maxTokens, temperature);
  }

  async snapshot(): Promise<ServerSnapshot | null> {
    const metrics = await fetch(`${this.baseUrl}/metrics`).then(
      (r) => (r.ok ? r.text() : ''),
      () => '',
    );
    const exits = await fetch(`${this.baseUrl}/exits`).then(
      async (r) => {
        if (!r.ok) return null;
        const body = (await r.json()) as Partial<ExitsSnapshot> & { enabled?: boolean };
        if (!body.enabled || typeof body.tokens !== 'number') return null;
        return {
          tokens: body.tokens,
          windowedAgreement: body.windowedAgreement ?? null,
          cumulativeAgreement: body.cumulativeAgreement ?? null,
          ramps: (body.ramps ?? []).map((r) => ({ layer: r.layer, threshold: r.threshold, exitRate: r.exitRate })),
        };
      },
      () => null,
    );
    if (!metrics && !exits) return null;
    return { metrics, exits };
  }

  async close(): Promise<void> {
    await this.stop();
  }
}

/** Connects to a server someone else started; its model name comes from /v1/models. */
export async function connect(url: string): Promise<HttpTarget> {
  const baseUrl = url.replace(/\/+$/, '').replace(/\/v1$/, '');
  await waitHealthy(baseUrl);
  const models = (await (await fetch(`${baseUrl}/v1/models`)).json()) as { data?: { id?: string }[] };
  return new HttpTarget(baseUrl, baseUrl, models.data?.[0]?.id ?? null);
}

/** How the bench runs each offramp variant: in this process (engine in its own worker thread), or as an `offramp serve` child process. */
export type ServerMode = 'inline' | 'process';

/**
 * Starts offramp on a free port with `flags` on top of the bench's, waits
 * for /health and returns it as a target.
 */
export async function startOfframp(
  id: string,
  model: BenchModel,
  flags: Partial<ServeConfig>,
  mode: ServerMode,
  log: (line: string) => void,
): Promise<HttpTarget> {
  const config = ServeConfigSchema.parse({
    model: model.dir,
    servedModelName: model.name,
    port: 0,
    shutdownGraceSeconds: 0,
    // A deep queue under Poisson overload is what the bench measures, not a reason to refuse.
    queueTimeoutSeconds: 0,
    ...flags,
  });
  return mode === 'inline' ? startInline(id, config, model.name, log) : startProcess(id, config, model.name, log);
}

async function startInline(id: string, config: ServeConfig, modelName: string, log: (line: string) => void): Promise<HttpTarget> {
  const running = await startServer(config, (line) => log(`${id}: ${line}`));
  try {
    await Promise.race([running.ready, running.died.then((error) => Promise.reject(error))]);
    await waitHealthy(running.url);
  } catch (error) {
    await running.stop(0);
    throw error;
  }
  return new HttpTarget(id, running.url, modelName, () => running.stop(0));
}

/** `offramp serve` flags for `config` (those the bench sets). */
function serveArgs(config: ServeConfig): string[] {
  const args = ['serve', '--model', config.model, '--port', '0', '--host', config.host, '--device', config.device, '--threads', String(config.threads)];
  args.push('--max-running', String(config.maxRunning), '--max-queued', String(config.maxQueued), '--max-step-tokens', String(config.maxStepTokens));
  if (config.maxContext !== undefined) args.push('--max-context', String(config.maxContext));
  if (config.servedModelName) args.push('--served-model-name', config.servedModelName);
  args.push('--early-exit', config.earlyExit, '--accuracy', String(config.accuracy), '--shutdown-grace', '0');
  // Newer servers refuse a request that waited a minute; older ones do not know the flag.
  if (SERVE_USAGE.includes('--queue-timeout')) args.push('--queue-timeout', '0');
  return args;
}

async function startProcess(id: string, config: ServeConfig, modelName: string, log: (line: string) => void): Promise<HttpTarget> {
  const main = fileURLToPath(new URL('../src/main.js', import.meta.url));
  const env = { ...process.env };
  delete env.OFFRAMP_API_KEY; // the bench sends no key
  // With the tunable already set, serve runs in this child itself (no second process): its pid is the server's.
  const child = spawn(process.execPath, [main, ...serveArgs(config)], { env: withHugePages(env), stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let tail = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => {
      tail = (tail + text).slice(-4000);
      const match = /listening on (http:\/\/\S+)/.exec(tail);
      if (match) resolve(match[1]!);
    });
    void exited.then((code) => reject(new Error(`${id}: offramp serve exited (${code}) before listening:\n${tail}`)));
  });
  const stop = async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await Promise.race([waitHealthy(url), exited.then((code) => Promise.reject(new Error(`${id}: offramp serve exited (${code}):\n${tail}`)))]);
  } catch (error) {
    await stop();
    throw error;
  }
  log(`${id}: offramp serve (pid ${child.pid}) at ${url}`);
  return new HttpTarget(id, url, modelName, stop);
}
