import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RequestError } from '../engine/index.js';
import { createApp, type AppOptions } from './app.js';
import { FakeEngine, fakeModel, gate, post, throwing } from './testing.js';

interface ErrorJson {
  error: { message: string; type: string; param: string | null; code: string | null };
}

const setup = (engine = new FakeEngine(), options: Partial<AppOptions> = {}) => createApp({ engine, model: fakeModel(), options });

async function expectError(response: Response | Promise<Response>, status: number, param: string | null = null): Promise<ErrorJson['error']> {
  const res = await response;
  assert.equal(res.status, status);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const body = (await res.json()) as ErrorJson;
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(body.error.param, param, `param of: ${body.error.message}`);
  return body.error;
}

const chat = (extra: Record<string, unknown>) => ({ messages: [{ role: 'user', content: 'hi' }], ...extra });

test('invalid JSON and an empty body are 400s', async () => {
  const { app } = setup();
  const error = await expectError(post(app, '/v1/chat/completions', '{"messages": ['), 400);
  assert.equal(error.type, 'invalid_request_error');
  assert.match(error.message, /not valid JSON/);
  await expectError(post(app, '/v1/completions', ''), 400);
  await expectError(post(app, '/v1/completions', '[1, 2]'), 400);
});

test('schema failures name the field in param', async () => {
  const { app } = setup();
  const cases: [Record<string, unknown>, string][] = [
    [chat({ temperature: 3 }), 'temperature'],
    [chat({ temperature: 'hot' }), 'temperature'],
    [chat({ top_p: 0 }), 'top_p'],
    [chat({ max_tokens: 0 }), 'max_tokens'],
    [chat({ max_completion_tokens: 1.5 }), 'max_completion_tokens'],
    [chat({ seed: 'x' }), 'seed'],
    [chat({ stream: 'yes' }), 'stream'],
    [chat({ stop: Array.from({ length: 17 }, (_, i) => `s${i}`) }), 'stop'],
    [chat({ stop: '' }), 'stop'],
    [chat({ logprobs: true }), 'logprobs'],
    [{ messages: [] }, 'messages'],
    [{ messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
    [{ messages: [{ role: 'user', content: 5 }] }, 'messages[0].content'],
    [{}, 'messages'],
  ];
  for (const [body, param] of cases) await expectError(post(app, '/v1/chat/completions', body), 400, param);
  await expectError(post(app, '/v1/completions', { prompt: ['a', 'b'] }), 400, 'prompt');
  await expectError(post(app, '/v1/completions', { prompt: [] }), 400, 'prompt');
  await expectError(post(app, '/v1/completions', { prompt: 'x', echo: true }), 400, 'echo');
  await expectError(post(app, '/v1/completions', { prompt: 'x', best_of: 2 }), 400, 'best_of');
});

test('n other than 1 is refused clearly', async () => {
  const { app } = setup();
  const error = await expectError(post(app, '/v1/chat/completions', chat({ n: 2 })), 400, 'n');
  assert.match(error.message, /only n = 1/);
});

test('a prompt that does not fit the context with max_tokens is a 400 naming the limit', async () => {
  const { app } = setup();
  // 'x' encodes to 2 ids; the context is 64.
  let error = await expectError(post(app, '/v1/completions', { prompt: 'x', max_tokens: 63 }), 400, 'max_tokens');
  assert.equal(error.code, 'context_length_exceeded');
  assert.match(error.message, /maximum context length is 64 tokens/);
  await expectError(post(app, '/v1/completions', { prompt: 'x', max_completion_tokens: 100 }), 400, 'max_completion_tokens');
  error = await expectError(post(app, '/v1/completions', { prompt: 'x'.repeat(80) }), 400, 'prompt');
  assert.match(error.message, /64/);
  const ok = await post(app, '/v1/completions', { prompt: 'x', max_tokens: 62 });
  assert.equal(ok.status, 200);
});

test('token ids outside the vocabulary are a 400', async () => {
  const { app } = setup();
  const error = await expectError(post(app, '/v1/completions', { prompt: [1, 300] }), 400, 'prompt');
  assert.match(error.message, /outside the vocabulary/);
});

test('an unknown model is a 404; an unknown route is a 404', async () => {
  const { app } = setup();
  const error = await expectError(post(app, '/v1/chat/completions', chat({ model: 'gpt-9' })), 404, 'model');
  assert.equal(error.code, 'model_not_found');
  await expectError(post(app, '/v1/embeddings', { input: 'x' }), 404);
  await expectError(app.request('/nope'), 404);
});

test('an oversized body is a 413', async () => {
  const { app } = setup(new FakeEngine(), { maxBodyBytes: 2048 });
  const error = await expectError(post(app, '/v1/completions', { prompt: 'x'.repeat(4000) }), 413);
  assert.equal(error.code, 'request_too_large');
  // Also without a Content-Length (chunked upload).
  const body = new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(JSON.stringify({ prompt: 'y'.repeat(4000) })));
      controller.close();
    },
  });
  await expectError(app.request('/v1/completions', { method: 'POST', body, duplex: 'half' } as RequestInit), 413);
});

test('a full queue is a 429 with Retry-After; capacity comes back when requests finish', async () => {
  const release = gate();
  const engine = new FakeEngine(async function* (request) {
    await release.promise;
    yield { type: 'finished', requestId: request.id, finishReason: 'stop', text: '', usage: { promptTokens: 1, completionTokens: 0 } };
  });
  const { app, state } = setup(engine, { maxRunning: 1, maxQueued: 1, retryAfterSeconds: 2 });
  const pending = [post(app, '/v1/completions', { prompt: 'a' }), post(app, '/v1/completions', { prompt: 'b' })];
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(state.inFlight, 2);
  const res = await post(app, '/v1/completions', { prompt: 'c' });
  assert.equal(res.headers.get('retry-after'), '2');
  const error = await expectError(res, 429);
  assert.equal(error.code, 'queue_full');
  release.open();
  for (const p of pending) assert.equal((await p).status, 200);
  assert.equal((await post(app, '/v1/completions', { prompt: 'd' })).status, 200);
});

test('a request the engine refuses is a JSON 400; an engine failure before the first token is a 500', async () => {
  const refusing = new FakeEngine(throwing(() => new RequestError('the prompt is empty after tokenization')));
  const error = await expectError(post(setup(refusing).app, '/v1/completions', { prompt: 'x', stream: true }), 400);
  assert.match(error.message, /empty/);

  const failing = new FakeEngine(async function* (request) {
    yield { type: 'error', requestId: request.id, message: 'inference failed: out of memory' };
  });
  const failure = await expectError(post(setup(failing).app, '/v1/completions', { prompt: 'x', stream: true }), 500);
  assert.equal(failure.type, 'server_error');
});

test('while loading: model routes and /health answer 503; /metrics answers', async () => {
  const { app, state } = createApp({ engine: new FakeEngine(), model: null });
  assert.equal((await app.request('/health')).status, 503);
  const error = await expectError(post(app, '/v1/completions', { prompt: 'x' }), 503);
  assert.equal(error.code, 'model_loading');
  await expectError(app.request('/v1/models'), 503);
  assert.equal((await app.request('/metrics')).status, 200);
  state.setReady(fakeModel());
  assert.equal((await app.request('/health')).status, 200);
  assert.equal((await post(app, '/v1/completions', { prompt: 'x' })).status, 200);
});
