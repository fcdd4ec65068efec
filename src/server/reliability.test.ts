/**
 * Overload and faults as the HTTP side handles them, with the fake engine:
 * queue timeouts, /health while the engine restarts, the debug fault route.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createApp, type AppOptions } from './app.js';
import { FakeEngine, fakeModel, gate, post, sseData, throwing, token } from './testing.js';

interface ErrorJson {
  error: { message: string; type: string; param: string | null; code: string | null };
}

test('a request that gets no first token within the queue timeout is withdrawn and answered 429 queue_timeout', async () => {
  const release = gate();
  const engine = new FakeEngine(async function* (request, signal) {
    // Waits for a slot until released or withdrawn, like a queued engine request.
    await Promise.race([release.promise, new Promise((resolve) => signal?.addEventListener('abort', resolve))]);
    if (signal?.aborted) {
      yield { type: 'finished', requestId: request.id, finishReason: 'abort', text: '', usage: { promptTokens: 1, completionTokens: 0 } };
      return;
    }
    yield token(request.id, 'a');
    yield { type: 'finished', requestId: request.id, finishReason: 'stop', text: '', usage: { promptTokens: 1, completionTokens: 1 } };
  });
  const options: Partial<AppOptions> = { queueTimeoutMs: 50, retryAfterSeconds: 3 };
  const { app, state } = createApp({ engine, model: fakeModel(), options });
  for (const stream of [false, true]) {
    const started = performance.now();
    const res = await post(app, '/v1/completions', { prompt: 'x', stream });
    assert.ok(performance.now() - started < 1000);
    assert.equal(res.status, 429);
    assert.equal(res.headers.get('retry-after'), '3');
    const body = (await res.json()) as ErrorJson;
    assert.equal(body.error.code, 'queue_timeout');
    assert.equal(body.error.type, 'rate_limit_exceeded');
    assert.match(body.error.message, /waited 0\.05 s in the queue/);
  }
  assert.deepEqual(
    engine.aborted,
    engine.requests.map((r) => r.id),
    'withdrawn from the engine',
  );
  assert.equal(state.inFlight, 0, 'the queue place is given back');
  const metrics = await (await app.request('/metrics')).text();
  assert.match(metrics, /^offramp:requests_rejected_total\{status="429"\} 2$/m);
  // A request that starts in time is not affected by the timeout afterwards.
  const pending = post(app, '/v1/completions', { prompt: 'x', stream: true });
  release.open();
  const data = await sseData(await pending);
  assert.equal(data.at(-1), '[DONE]');
});

test('queue timeout 0 waits as long as it takes', async () => {
  const release = gate();
  const engine = new FakeEngine(async function* (request) {
    await release.promise;
    yield { type: 'finished', requestId: request.id, finishReason: 'stop', text: '', usage: { promptTokens: 1, completionTokens: 0 } };
  });
  const { app } = createApp({ engine, model: fakeModel(), options: { queueTimeoutMs: 0 } });
  const pending = post(app, '/v1/completions', { prompt: 'x' });
  setTimeout(release.open, 100);
  assert.equal((await pending).status, 200);
});

test('/health says restarting (503) while the engine restarts and engine_dead once it cannot; /metrics counts restarts', async () => {
  const engine = new FakeEngine();
  const { app } = createApp({ engine, model: fakeModel() });
  assert.equal((await app.request('/health')).status, 200);
  engine.health = 'restarting';
  let res = await app.request('/health');
  assert.equal(res.status, 503);
  assert.deepEqual(await res.json(), { status: 'restarting' });
  engine.health = 'ready';
  engine.restarts = 2;
  assert.equal((await app.request('/health')).status, 200);
  assert.match(await (await app.request('/metrics')).text(), /^offramp:engine_restarts_total 2$/m);
  engine.health = 'dead';
  res = await app.request('/health');
  assert.equal(res.status, 503);
  assert.deepEqual(await res.json(), { status: 'engine_dead' });
});

test('an engine that cannot take the request (restarting) is a 503 with Retry-After', async () => {
  const engine = new FakeEngine(throwing(() => new Error('the engine is restarting after a failure; retry shortly')));
  const { app } = createApp({ engine, model: fakeModel() });
  const res = await post(app, '/v1/completions', { prompt: 'x', stream: true });
  assert.equal(res.status, 503);
  assert.equal(res.headers.get('retry-after'), '1');
  assert.equal(((await res.json()) as ErrorJson).error.code, 'engine_unavailable');
});

test('POST /debug/fault exists only with debugRoutes', async () => {
  const off = createApp({ engine: new FakeEngine(), model: fakeModel() });
  assert.equal((await post(off.app, '/debug/fault', { kind: 'crash' })).status, 404);
  const engine = new FakeEngine();
  const on = createApp({ engine, model: fakeModel(), options: { debugRoutes: true, apiKeys: ['k'] } });
  assert.equal((await post(on.app, '/debug/fault', { kind: 'crash' })).status, 401, 'keys apply to it too');
  const auth = { authorization: 'Bearer k' };
  assert.equal((await post(on.app, '/debug/fault', { kind: 'crash' }, auth)).status, 202);
  assert.equal((await post(on.app, '/debug/fault', { kind: 'step' }, auth)).status, 202);
  assert.equal((await post(on.app, '/debug/fault', { kind: 'slow', step_ms: 20 }, auth)).status, 202);
  assert.equal((await post(on.app, '/debug/fault', { kind: 'meteor' }, auth)).status, 400);
  assert.equal((await post(on.app, '/debug/fault', { kind: 'slow' }, auth)).status, 400, 'slow needs step_ms');
  assert.deepEqual(engine.faults, [{ kind: 'crash' }, { kind: 'step' }, { kind: 'slow', stepMs: 20 }]);
});

test('POST /debug/exits forces only layers that have a ramp, and says which do', async () => {
  const engine = new FakeEngine();
  const { app } = createApp({ engine, model: { ...fakeModel(), rampLayers: [0, 1, 2] }, options: { debugRoutes: true } });
  assert.equal((await post(app, '/debug/exits', { ramps: [{ layer: 2, threshold: 0.5 }] })).status, 202);
  const stray = await post(app, '/debug/exits', { ramps: [{ layer: 1, threshold: 0.5 }], draft: { layer: 4, minConfidence: 0.5, maxDraft: 3 } });
  assert.equal(stray.status, 400);
  assert.match(((await stray.json()) as ErrorJson).error.message, /layer 4 has no ramp; this model's ramps follow layers 0, 1, 2/);
  assert.deepEqual(engine.forced, [{ ramps: [{ layer: 2, threshold: 0.5 }] }]);
});
