/**
 * The HTTP surface: OpenAI's completion routes, /v1/models, /health and
 * /metrics, as a hono app that tests drive with `app.request(…)` and
 * serve.ts puts on a socket.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { EngineStats } from '../engine/messages.js';
import type { EngineClient } from '../engine/types.js';
import { ApiError, fromZodError, toErrorResponse } from './errors.js';
import type { Endpoint, ResponseMeta } from './format.js';
import { ServerMetrics } from './metrics.js';
import { PROMETHEUS_CONTENT_TYPE } from './prometheus.js';
import { encodeCompletionPrompt } from './prompt.js';
import { checkModel, toGenerateRequest } from './request.js';
import { respond } from './respond.js';
import { ChatCompletionSchema, CompletionSchema, type GenerationBody } from './schemas.js';
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
}

export const DEFAULT_APP_OPTIONS: AppOptions = {
  maxRunning: 16,
  maxQueued: 64,
  maxBodyBytes: 4 * 1024 * 1024,
  retryAfterSeconds: 1,
};

export interface AppDeps {
  engine: EngineClient;
  /** The served model, or null while it loads: then model routes answer 503 until `state.setReady(model)`. */
  model: ModelInfo | null;
  options?: Partial<AppOptions>;
  /** The engine's own occupancy for /metrics (WorkerEngine.stats); the HTTP side's counts otherwise. */
  engineStats?: () => EngineStats | null;
  /** False when the engine can no longer serve (its worker died): /health answers 503. */
  engineAlive?: () => boolean;
}

export interface ServerApp {
  app: Hono;
  /** Lifecycle: `setReady(model)` once loaded, `drain(graceMs)` to shut down. */
  state: ServerState;
  metrics: ServerMetrics;
}

/** The body as JSON, or a 400 that says why not. */
async function readJson(c: Context): Promise<unknown> {
  const text = await c.req.text();
  if (!text.trim()) throw new ApiError(400, 'the request body is empty; send a JSON object', { code: 'invalid_json' });
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new ApiError(400, `the request body is not valid JSON (${(error as Error).message})`, { code: 'invalid_json' });
  }
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
  app.use(
    '/v1/*',
    bodyLimit({
      maxSize: options.maxBodyBytes,
      onError: () => {
        throw new ApiError(413, `the request body is larger than ${options.maxBodyBytes} bytes`, { code: 'request_too_large' });
      },
    }),
  );

  app.get('/health', (c) => {
    if (state.phase === 'ready' && deps.engineAlive?.() === false) return c.json({ status: 'engine_dead' }, 503);
    return c.json({ status: state.phase }, state.phase === 'ready' ? 200 : 503);
  });

  app.get('/metrics', (c) => {
    const text = metrics.render(deps.engineStats?.() ?? null, { inFlight: state.inFlight, started: state.started });
    return c.body(text, 200, { 'content-type': PROMETHEUS_CONTENT_TYPE });
  });

  // The early-exit controller's state: active ramps, thresholds, agreement, exit rates, utilities, recent adjustments.
  app.get('/exits', (c) => {
    const stats = deps.engineStats?.() ?? null;
    return c.json(stats?.exits ? { enabled: true, ...stats.exits } : { enabled: false });
  });

  app.get('/v1/models', (c) => {
    const { model, created } = state.serving();
    return c.json({ object: 'list', data: [{ id: model.id, object: 'model', created, owned_by: 'offramp', max_model_len: model.maxContext }] });
  });

  const generate = async (c: Context, endpoint: Endpoint): Promise<Response> => {
    const arrivedMs = performance.now();
    const { model, prompter } = state.serving();
    const json = await readJson(c);
    let body: GenerationBody;
    let promptTokens: number[];
    if (endpoint === 'chat') {
      const parsed = ChatCompletionSchema.safeParse(json);
      if (!parsed.success) throw fromZodError(parsed.error);
      checkModel(parsed.data.model, model);
      body = parsed.data;
      promptTokens = prompter.encode(parsed.data.messages);
    } else {
      const parsed = CompletionSchema.safeParse(json);
      if (!parsed.success) throw fromZodError(parsed.error);
      checkModel(parsed.data.model, model);
      body = parsed.data;
      promptTokens = encodeCompletionPrompt(parsed.data.prompt, model.tokenizer);
    }
    const id = `${endpoint === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '')}`;
    const request = toGenerateRequest(id, body, promptTokens, model, endpoint === 'chat' ? 'messages' : 'prompt');
    const meta: ResponseMeta = { endpoint, id, created: Math.floor(Date.now() / 1000), model: model.id, includeUsage: !!body.stream_options?.include_usage };
    const admission = state.admit();
    return respond(c, deps.engine, { meta, request, stream: !!body.stream }, admission, metrics.startRequest(model.id, arrivedMs));
  };

  app.post('/v1/chat/completions', (c) => generate(c, 'chat'));
  app.post('/v1/completions', (c) => generate(c, 'completion'));

  return { app, state, metrics };
}
