import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createParser } from 'eventsource-parser';
import { createApp } from './app.js';
import { CharTokenizer, FakeEngine, fakeModel, gate, post, sseChunks, sseData, token, tokens } from './testing.js';

const setup = (engine = new FakeEngine(), model = fakeModel()) => ({ engine, ...createApp({ engine, model }) });

test('chat stream: role chunk, one chunk per text, empty-delta finish chunk, usage chunk, [DONE]', async () => {
  const { app } = setup();
  const res = await post(app, '/v1/chat/completions', {
    model: 'fake-model',
    messages: [{ role: 'user', content: 'Hi' }],
    stream: true,
    stream_options: { include_usage: true },
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const chunks = await sseChunks(res);
  const id = chunks[0]!.id as string;
  assert.match(id, /^chatcmpl-/);
  for (const chunk of chunks) {
    assert.equal(chunk.id, id);
    assert.equal(chunk.object, 'chat.completion.chunk');
    assert.equal(chunk.model, 'fake-model');
    assert.equal(typeof chunk.created, 'number');
  }
  const choices = chunks.map((c) => c.choices);
  assert.deepEqual(choices, [
    [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }],
    [{ index: 0, delta: { content: 'Hello' }, logprobs: null, finish_reason: null }],
    [{ index: 0, delta: { content: ',' }, logprobs: null, finish_reason: null }],
    [{ index: 0, delta: { content: ' world' }, logprobs: null, finish_reason: null }],
    [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }],
    [],
  ]);
  for (const chunk of chunks.slice(0, -1)) assert.equal(chunk.usage, null);
  // Plain template: "User: Hi\nAssistant:" with BOS = 1 + 19 characters.
  assert.deepEqual(chunks.at(-1)!.usage, { prompt_tokens: 20, completion_tokens: 3, total_tokens: 23 });
});

test('chat stream without include_usage has no usage field and no usage chunk', async () => {
  const { app } = setup(new FakeEngine(tokens(['a'], 'length')));
  const chunks = await sseChunks(await post(app, '/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], stream: true }));
  assert.equal(chunks.length, 3);
  for (const chunk of chunks) assert.ok(!('usage' in chunk));
  assert.deepEqual((chunks[2]!.choices as unknown[])[0], { index: 0, delta: {}, logprobs: null, finish_reason: 'length' });
});

test('held-back text released at the end comes before the finish chunk; empty token texts send nothing', async () => {
  const { app } = setup(new FakeEngine(tokens(['a', '', 'b'], 'length', 'c')));
  const chunks = await sseChunks(await post(app, '/v1/completions', { prompt: 'x', stream: true }));
  const choices = chunks.map((c) => (c.choices as Record<string, unknown>[])[0]);
  assert.deepEqual(choices, [
    { index: 0, text: 'a', logprobs: null, finish_reason: null },
    { index: 0, text: 'b', logprobs: null, finish_reason: null },
    { index: 0, text: 'c', logprobs: null, finish_reason: null },
    { index: 0, text: '', logprobs: null, finish_reason: 'length' },
  ]);
  for (const chunk of chunks) {
    assert.equal(chunk.object, 'text_completion');
    assert.match(chunk.id as string, /^cmpl-/);
  }
});

test('completions stream with include_usage ends with a usage chunk', async () => {
  const { app } = setup();
  const chunks = await sseChunks(await post(app, '/v1/completions', { prompt: 'Once', stream: true, stream_options: { include_usage: true } }));
  assert.deepEqual(chunks.at(-1)!.choices, []);
  assert.deepEqual(chunks.at(-1)!.usage, { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 });
  assert.equal(chunks.map((c) => (c.choices as { text?: string }[])[0]?.text ?? '').join(''), 'Hello, world');
});

test('non-streamed chat and completion answers carry the whole text and usage', async () => {
  const { app } = setup();
  const chat = (await (await post(app, '/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }] })).json()) as Record<string, unknown>;
  assert.equal(chat.object, 'chat.completion');
  assert.match(chat.id as string, /^chatcmpl-/);
  assert.deepEqual(chat.choices, [{ index: 0, message: { role: 'assistant', content: 'Hello, world', refusal: null }, logprobs: null, finish_reason: 'stop' }]);
  assert.deepEqual(chat.usage, { prompt_tokens: 20, completion_tokens: 3, total_tokens: 23 });

  const res = await post(app, '/v1/completions', { prompt: ['Once'], stream: false });
  assert.equal(res.status, 200);
  const completion = (await res.json()) as Record<string, unknown>;
  assert.equal(completion.object, 'text_completion');
  assert.deepEqual(completion.choices, [{ index: 0, text: 'Hello, world', logprobs: null, finish_reason: 'stop' }]);
  assert.deepEqual(completion.usage, { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 });
});

test('parameters reach the engine; unknown fields are ignored', async () => {
  const { app, engine } = setup();
  const res = await post(app, '/v1/completions', {
    model: 'fake-model',
    prompt: 'abc',
    max_tokens: 10,
    max_completion_tokens: 7,
    temperature: 0.5,
    top_p: 0.9,
    top_k: -1,
    min_p: 0.05,
    seed: 42,
    stop: '\n',
    user: 'me',
    n: 1,
    frequency_penalty: 0, // unknown to us: ignored
    some_extension: { x: 1 },
  });
  assert.equal(res.status, 200);
  const request = engine.requests[0]!;
  assert.deepEqual(request.promptTokens, [1, 100, 101, 102]);
  assert.deepEqual(request.sampling, { temperature: 0.5, topP: 0.9, topK: 0, minP: 0.05 });
  assert.equal(request.maxTokens, 7);
  assert.equal(request.seed, 42);
  assert.equal(request.earlyExit, 'lossless', 'a seeded request decodes lossless, so it reproduces');
  assert.deepEqual(request.stop, ['\n']);

  await post(app, '/v1/completions', { prompt: [[5, 6, 7]], stop: ['a', 'b'] });
  const second = engine.requests[1]!;
  assert.deepEqual(second.promptTokens, [5, 6, 7]);
  assert.deepEqual(second.sampling, { temperature: 1, topP: 1, topK: 0, minP: 0 });
  assert.equal(second.maxTokens, 64 - 3, 'default max_tokens: the rest of the context');
  assert.equal(second.seed, undefined);
  assert.equal(second.earlyExit, 'on');
  assert.deepEqual(second.stop, ['a', 'b']);

  await post(app, '/v1/completions', { prompt: [8, 9] });
  assert.deepEqual(engine.requests[2]!.promptTokens, [8, 9]);
});

test('a chat template from the tokenizer is rendered with the messages, the generation prompt and the special tokens', async () => {
  const template =
    '{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}';
  const tokenizer = new CharTokenizer(template);
  const { app, engine } = setup(new FakeEngine(), fakeModel(tokenizer, 256));
  const res = await post(app, '/v1/chat/completions', {
    messages: [
      { role: 'developer', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'text', text: 'Hi' }] },
    ],
  });
  assert.equal(res.status, 200);
  assert.equal(tokenizer.encoded.at(-1), '<s><system>Be brief.</system><user>Hi</user><assistant>');
  // The template wrote BOS itself: no second one from the tokenizer.
  assert.equal(engine.requests[0]!.promptTokens[0], ('<'.codePointAt(0)! % 296) + 3);
});

test('the plain chat template labels users and assistants and cues the assistant', async () => {
  const tokenizer = new CharTokenizer();
  const { app } = setup(new FakeEngine(), fakeModel(tokenizer, 256));
  await post(app, '/v1/chat/completions', {
    messages: [
      { role: 'system', content: 'Tell stories.' },
      { role: 'user', content: 'A cat?' },
      { role: 'assistant', content: 'Once.' },
      { role: 'user', content: 'More.' },
    ],
  });
  assert.equal(tokenizer.encoded.at(-1), 'Tell stories.\nUser: A cat?\nAssistant: Once.\nUser: More.\nAssistant:');
});

test('a client that disconnects mid-stream aborts its engine request', async () => {
  const release = gate();
  const engine = new FakeEngine(async function* (request, signal) {
    yield token(request.id, 'one');
    await release.promise;
    // A real engine ends an aborted request with finished/abort.
    assert.ok(signal?.aborted);
    yield { type: 'finished', requestId: request.id, finishReason: 'abort', text: '', usage: { promptTokens: 1, completionTokens: 1 } };
  });
  const { app, state } = setup(engine);
  const res = await post(app, '/v1/completions', { prompt: 'x', stream: true });
  const reader = res.body!.getReader();
  const first = await reader.read();
  assert.match(new TextDecoder().decode(first.value), /"one"/);
  assert.equal(state.inFlight, 1);
  await reader.cancel();
  assert.deepEqual(engine.aborted, [engine.requests[0]!.id]);
  release.open();
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(state.inFlight, 0, 'the slot is given back');
});

test('an engine error mid-stream becomes an error frame, then [DONE]', async () => {
  const engine = new FakeEngine(async function* (request) {
    yield token(request.id, 'a');
    yield { type: 'error', requestId: request.id, message: 'inference failed: boom' };
  });
  const { app } = setup(engine);
  const data = await sseData(await post(app, '/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], stream: true }));
  assert.equal(data.length, 4);
  const error = JSON.parse(data[2]!) as { error: { message: string; type: string } };
  assert.equal(error.error.type, 'server_error');
  assert.match(error.error.message, /boom/);
  assert.equal(data[3], '[DONE]');
});

test('requests are timed and counted in /metrics', async () => {
  const { app } = setup();
  await post(app, '/v1/completions', { prompt: 'Once' });
  await post(app, '/v1/completions', { prompt: 'x', n: 3 });
  const res = await app.request('/metrics');
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  assert.match(text, /^# TYPE offramp:time_to_first_token_seconds histogram$/m);
  assert.match(text, /^offramp:time_to_first_token_seconds_count\{model_name="fake-model"\} 1$/m);
  assert.match(text, /^offramp:inter_token_latency_seconds_count\{model_name="fake-model"\} 2$/m);
  assert.match(text, /^offramp:e2e_request_latency_seconds_bucket\{model_name="fake-model",le="\+Inf"\} 1$/m);
  assert.match(text, /^offramp:prompt_tokens_total\{model_name="fake-model"\} 5$/m);
  assert.match(text, /^offramp:generation_tokens_total\{model_name="fake-model"\} 3$/m);
  assert.match(text, /^offramp:generation_tokens_by_exit_total\{model_name="fake-model",exit_layer="full"\} 3$/m);
  assert.match(text, /^offramp:request_success_total\{model_name="fake-model",finished_reason="stop"\} 1$/m);
  assert.match(text, /^offramp:requests_rejected_total\{status="400"\} 1$/m);
  assert.match(text, /^offramp:num_requests_running 0$/m);
  assert.match(text, /^offramp:num_requests_waiting 0$/m);
});

test('/metrics shows the engine’s own stats when it reports them', async () => {
  const engine = new FakeEngine();
  const stats = { running: 3, waiting: 2, freeSlots: 13, busySeconds: 1.5, exits: null, lossless: null };
  engine.stats = stats;
  const { app } = createApp({ engine, model: fakeModel() });
  const text = await (await app.request('/metrics')).text();
  assert.match(text, /^offramp:num_requests_running 3$/m);
  assert.match(text, /^offramp:num_requests_waiting 2$/m);
  assert.match(text, /^offramp:num_free_slots 13$/m);
  assert.match(text, /^offramp:engine_busy_seconds_total 1\.5$/m);
  stats.busySeconds = 2;
  assert.match(await (await app.request('/metrics')).text(), /^offramp:engine_busy_seconds_total 2$/m);
  stats.busySeconds = 0.25; // a restarted worker counts from its own start
  assert.match(await (await app.request('/metrics')).text(), /^offramp:engine_busy_seconds_total 2\.25$/m);
});

test('/v1/models lists the served model; /health says ready', async () => {
  const { app } = setup();
  const models = (await (await app.request('/v1/models')).json()) as { object: string; data: Record<string, unknown>[] };
  assert.equal(models.object, 'list');
  assert.deepEqual(models.data, [{ id: 'fake-model', object: 'model', created: 1700000000, owned_by: 'offramp', max_model_len: 64 }]);
  const health = await app.request('/health');
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { status: 'ready' });
});

test('drain: in-flight streams finish cleanly while new requests get 503', async () => {
  const release = gate();
  const engine = new FakeEngine(async function* (request) {
    yield token(request.id, 'a');
    await release.promise;
    yield { type: 'finished', requestId: request.id, finishReason: 'stop', text: '', usage: { promptTokens: 1, completionTokens: 1 } };
  });
  const { app, state } = setup(engine);
  const res = await post(app, '/v1/completions', { prompt: 'x', stream: true });
  const drained = state.drain(5000);
  const refused = await post(app, '/v1/completions', { prompt: 'x' });
  assert.equal(refused.status, 503);
  assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'shutting_down');
  assert.equal((await app.request('/health')).status, 503);
  release.open();
  const chunks = await sseChunks(res);
  assert.equal((chunks.at(-1)!.choices as { finish_reason: string }[])[0]!.finish_reason, 'stop');
  assert.equal(await drained, 0);
});

test('drain: streams still running when the grace period ends are cut with an error frame', async () => {
  const engine = new FakeEngine(async function* (request, signal) {
    yield token(request.id, 'a');
    await new Promise((resolve) => signal!.addEventListener('abort', resolve));
    yield { type: 'finished', requestId: request.id, finishReason: 'abort', text: '', usage: { promptTokens: 1, completionTokens: 1 } };
  });
  const { app, state } = setup(engine);
  const res = await post(app, '/v1/completions', { prompt: 'x', stream: true });
  const events: string[] = [];
  const parser = createParser({ onEvent: (e) => events.push(e.data) });
  const reading = (async () => {
    for await (const bytes of res.body!) parser.feed(new TextDecoder().decode(bytes));
  })();
  assert.equal(await state.drain(20), 1);
  await reading;
  assert.equal(events.length, 3);
  assert.equal((JSON.parse(events[1]!) as { error: { code: string } }).error.code, 'shutting_down');
  assert.equal(events[2], '[DONE]');
});

test('early exits: per-request early_exit reaches the engine; exited tokens carry exit_layer and exit_confidence', async () => {
  const engine = new FakeEngine(async function* (request) {
    yield token(request.id, 'a', 2);
    yield token(request.id, 'b');
    yield { type: 'finished', requestId: request.id, finishReason: 'stop', text: '', usage: { promptTokens: 1, completionTokens: 2 } };
  });
  const { app } = setup(engine);
  const chunks = await sseChunks(await post(app, '/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], stream: true }));
  assert.equal(engine.requests[0]!.earlyExit, 'on');
  assert.deepEqual((chunks[1]!.choices as unknown[])[0], {
    index: 0,
    delta: { content: 'a' },
    logprobs: null,
    finish_reason: null,
    exit_layer: 2,
    exit_confidence: 0.9,
  });
  assert.deepEqual((chunks[2]!.choices as unknown[])[0], { index: 0, delta: { content: 'b' }, logprobs: null, finish_reason: null });
  await post(app, '/v1/completions', { prompt: 'x', early_exit: false });
  assert.equal(engine.requests[1]!.earlyExit, 'off');
  // The modes by name; a seeded or greedy request that would exit decodes lossless (its text is the full model's, so it reproduces).
  await post(app, '/v1/completions', { prompt: 'x', early_exit: 'lossless' });
  await post(app, '/v1/completions', { prompt: 'x', seed: 3 });
  await post(app, '/v1/completions', { prompt: 'x', seed: 3, early_exit: 'off' });
  await post(app, '/v1/completions', { prompt: 'x', temperature: 0 });
  await post(app, '/v1/completions', { prompt: 'x', temperature: 0, early_exit: 'off' });
  await post(app, '/v1/completions', { prompt: 'x', temperature: 0.1 });
  assert.deepEqual(
    engine.requests.slice(2).map((r) => r.earlyExit),
    ['lossless', 'lossless', 'off', 'lossless', 'off', 'on'],
  );
  const bad = await post(app, '/v1/completions', { prompt: 'x', early_exit: 'sometimes' });
  assert.equal(bad.status, 400);
});

test('early exits: verified drafts carry exit_layer and exit_verified; a server with exits off turns every request off', async () => {
  const engine = new FakeEngine(async function* (request) {
    yield { ...token(request.id, 'a', 1), verified: true };
    yield { type: 'finished', requestId: request.id, finishReason: 'stop', text: '', usage: { promptTokens: 1, completionTokens: 1 } };
  });
  const { app } = setup(engine);
  const chunks = await sseChunks(await post(app, '/v1/completions', { prompt: 'x', stream: true, early_exit: 'lossless' }));
  assert.deepEqual((chunks[0]!.choices as unknown[])[0], {
    index: 0,
    text: 'a',
    logprobs: null,
    finish_reason: null,
    exit_layer: 1,
    exit_confidence: 0.9,
    exit_verified: true,
  });
  const off = setup(engine, { ...fakeModel(), earlyExit: 'off' });
  await post(off.app, '/v1/completions', { prompt: 'x', early_exit: 'lossless' });
  assert.equal(engine.requests.at(-1)!.earlyExit, 'off');
});
