/**
 * The HTTP surface: OpenAI's completion routes, /v1/models, /health and
 * /metrics, as a hono app that tests drive with `app.request(…)` and
 * serve.ts puts on a socket.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import { Hono, type Context } from 'hono';
import type { ServedEngine } from '../engine/index.js';
import { playgroundRoutes } from '../playground/index.js';
import { bodyLimit } from './body-limit.js';
import { ApiError, fromZodError, toErrorResponse } from './errors.js';
import type { Endpoint, ResponseMeta } from './format.js';
import { ServerMetrics } from './metrics.js';
import { PROMETHEUS_CONTENT_TYPE } from './prometheus.js';
import { encodeCompletionPrompt, refuseOversizedArrays } from './prompt.js';
import { checkModel, toGenerateRequest } from './request.js';
import { respond } from './respond.js';
import { readJson } from './read-json.js';
import { ChatCompletionSchema, CompletionSchema, FaultSchema, ForceExitsSchema, type GenerationBody } from './schemas.js';
import { apiKeyAuth, corsFor } from './security.js';
import { ServerState, type ModelInfo } from './state.js';

export interface AppOptions {
  /** The engine's batch slots (requests decoded at once); with maxQueued, decides 429. */
  maxRunning: number;
  /** Requests that may wait for a slot; one more gets 429. */
  maxQueued: number;
  /** Largest request body; larger ones get 413. */
  maxBodyBytes: number;
  /** Retry-After (seconds) on a 429. */
  retryAfterSeconds: number;
  /** Longest wait for a request's first engine event (queue plus prompt) before a 429 queue_timeout; 0: none. */
  queueTimeoutMs: number;
  /** Bearer keys accepted on every route but the public ones (see isPublicPath); empty: no auth. */
  apiKeys: readonly string[];
  /** Origins allowed by CORS ('*': any); empty: no CORS headers at all. */
  corsOrigins: readonly string[];
  /** Test and soak use only: POST /debug/fault, /debug/gc and /debug/exits. */
  debugRoutes: boolean;
}

export const DEFAULT_APP_OPTIONS: AppOptions = {
  maxRunning: 16,
  maxQueued: 64,
  maxBodyBytes: 1024 * 1024,
  retryAfterSeconds: 1,
  queueTimeoutMs: 60_000,
  apiKeys: [],
  corsOrigins: [],
  debugRoutes: false,
};

export interface AppDeps {
  /** The engine, with its health, occupancy and (behind `debugRoutes`) fault injection. */
  engine: ServedEngine;
  /** The served model, or null while it loads: then model routes answer 503 until `state.setReady(model)`. */
  model: ModelInfo | null;
  options?: Partial<AppOptions>;
}

export interface ServerApp {
  app: Hono;
  /** Lifecycle: `setReady(model)` once loaded, `drain(graceMs)` to shut down. */
  state: ServerState;
  metrics: ServerMetrics;
}

/**
 * Builds the app around an engine.
 *
 * @example
 * const { app } = createApp({ engine, model: { id: 'stories260K', maxContext: 512, tokenizer } });
 * const res = await app.request('/v1/completions', { method: 'POST', body: JSON.stringify({ prompt: 'Once' }) });
 */
export function createApp(deps: AppDeps): ServerApp {
  const options = { ...DEFAULT_APP_OPTIONS, ...deps.options };
  const state = new ServerState(options);
  const metrics = new ServerMetrics();
  if (deps.model) state.setReady(deps.model);
  const app = new Hono();

  app.onError((error) => {
    if (error instanceof ApiError && error.status !== 500) metrics.reject(error.status);
    return toErrorResponse(error);
  });
  app.notFound((c) => toErrorResponse(new ApiError(404, `Invalid URL (${c.req.method} ${c.req.path})`, { code: 'not_found' })));
  // CORS first, so preflights need no key and even a 401 tells the page why.
  if (options.corsOrigins.length > 0) app.use('*', corsFor(options.corsOrigins));
  if (options.apiKeys.length > 0) app.use('*', apiKeyAuth(options.apiKeys));
  app.use(
    '*',
    bodyLimit(options.maxBodyBytes, () => new ApiError(413, `the request body is larger than ${options.maxBodyBytes} bytes`, { code: 'request_too_large' })),
  );

  app.get('/health', (c) => {
    const engine = deps.engine.health;
    if (state.phase === 'ready' && engine === 'restarting') return c.json({ status: 'restarting' }, 503);
    if (state.phase === 'ready' && engine === 'dead') return c.json({ status: 'engine_dead' }, 503);
    return c.json({ status: state.phase }, state.phase === 'ready' ? 200 : 503);
  });

  app.get('/metrics', (c) => {
    const http = { inFlight: state.inFlight, started: state.started, engineRestarts: deps.engine.restarts };
    const text = metrics.render(deps.engine.stats, http);
    return c.body(text, 200, { 'content-type': PROMETHEUS_CONTENT_TYPE });
  });

  // The early-exit controllers' state: the server's mode; active ramps, thresholds, agreement, exit rates, utilities,
  // recent adjustments; and lossless mode's drafting plan, acceptance and run lengths.
  app.get('/exits', (c) => {
    const stats = deps.engine.stats;
    if (!stats?.exits) return c.json({ enabled: false });
    return c.json({ enabled: true, mode: state.model?.earlyExit ?? null, ...stats.exits, lossless: stats.lossless });
  });

  app.get('/v1/models', (c) => {
    const { model, created } = state.serving();
    return c.json({ object: 'list', data: [{ id: model.id, object: 'model', created, owned_by: 'offramp', max_model_len: model.maxContext }] });
  });

  const generate = async (c: Context, endpoint: Endpoint): Promise<Response> => {
    const arrivedMs = performance.now();
    const { model, prompter } = state.serving();
    const json = await readJson(c);
    refuseOversizedArrays(json, model);
    let body: GenerationBody;
    let promptTokens: number[];
    if (endpoint === 'chat') {
      const parsed = ChatCompletionSchema.safeParse(json);
      if (!parsed.success) throw fromZodError(parsed.error);
      checkModel(parsed.data.model, model);
      body = parsed.data;
      promptTokens = prompter.encode(parsed.data.messages, model);
    } else {
      const parsed = CompletionSchema.safeParse(json);
      if (!parsed.success) throw fromZodError(parsed.error);
      checkModel(parsed.data.model, model);
      body = parsed.data;
      promptTokens = encodeCompletionPrompt(parsed.data.prompt, model.tokenizer, model);
    }
    const id = `${endpoint === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '')}`;
    const request = toGenerateRequest(id, body, promptTokens, model, endpoint === 'chat' ? 'messages' : 'prompt');
    const meta: ResponseMeta = { endpoint, id, created: Math.floor(Date.now() / 1000), model: model.id, includeUsage: !!body.stream_options?.include_usage };
    const admission = state.admit();
    const job = { meta, request, stream: !!body.stream, queueTimeoutMs: options.queueTimeoutMs, retryAfterSeconds: options.retryAfterSeconds };
    return respond(c, deps.engine, job, admission, metrics.startRequest(model.id, arrivedMs));
  };

  app.post('/v1/chat/completions', (c) => generate(c, 'chat'));
  app.post('/v1/completions', (c) => generate(c, 'completion'));

  // Test and soak use only: fail or slow the engine worker on purpose to exercise recovery and disconnects. Off unless --debug-routes.
  if (options.debugRoutes) {
    app.post('/debug/fault', async (c) => {
      const parsed = FaultSchema.safeParse(await readJson(c));
      if (!parsed.success) throw fromZodError(parsed.error);
      deps.engine.injectFault(parsed.data);
      return c.json({ injected: parsed.data.kind }, 202);
    });
    // Tests: force and freeze the exit thresholds and the draft plan, so that tokens really come from ramps.
    app.post('/debug/exits', async (c) => {
      const parsed = ForceExitsSchema.safeParse(await readJson(c));
      if (!parsed.success) throw fromZodError(parsed.error);
      const { ramps, draft } = parsed.data;
      const candidates = state.model?.rampLayers;
      if (candidates) {
        const stray = [...(ramps ?? []), ...(draft ? [draft] : [])].find(({ layer }) => !candidates.includes(layer));
        if (stray)
          throw new ApiError(400, `layer ${stray.layer} has no ramp; this model's ramps follow layers ${candidates.join(', ')}`, {
            param: 'layer',
            code: 'invalid_value',
          });
      }
      deps.engine.forceExits({ ...(ramps && { ramps }), ...(draft !== undefined && { draft }) });
      return c.json({ forced: parsed.data }, 202);
    });
    // Both threads collect garbage (with node --expose-gc), so the soak compares resident memory like with like.
    app.post('/debug/gc', (c) => {
      const gc = (globalThis as { gc?: () => void }).gc;
      gc?.();
      deps.engine.collectGarbage();
      return c.json({ collected: gc !== undefined }, 202);
    });
  }
  // The chat playground: the page at /, its files under /playground/ (src/playground/).
  app.route('/', playgroundRoutes());

  return { app, state, metrics };
}
