/**
 * Bad input never reaches the engine: each kind of bad body is a 400 or 413
 * that names the problem, and the fake engine is never asked to run it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createApp, type AppOptions } from './app.js';
import { jsonDepth, MAX_JSON_DEPTH } from './read-json.js';
import { CharTokenizer, FakeEngine, fakeModel, post } from './testing.js';

interface ErrorJson {
  error: { message: string; type: string; param: string | null; code: string | null };
}

const setup = (options: Partial<AppOptions> = {}) => {
  const engine = new FakeEngine();
  const tokenizer = new CharTokenizer();
  return { engine, tokenizer, ...createApp({ engine, model: fakeModel(tokenizer), options }) };
};

async function expectError(response: Response | Promise<Response>, status: number, message: RegExp, param: string | null = null): Promise<ErrorJson['error']> {
  const res = await response;
  const body = (await res.json()) as ErrorJson;
  assert.equal(res.status, status, JSON.stringify(body));
  assert.match(body.error.message, message);
  assert.equal(body.error.param, param, `param of: ${body.error.message}`);
  return body.error;
}

const rawPost = (app: ReturnType<typeof setup>['app'], path: string, body: BodyInit) =>
  Promise.resolve(app.request(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body }));

test('jsonDepth counts brackets outside strings only', () => {
  assert.equal(jsonDepth('{}'), 1);
  assert.equal(jsonDepth('{"a":[[1],{"b":2}]}'), 3);
  assert.equal(jsonDepth('{"a":"[[[[\\"[[["}'), 1);
  assert.equal(jsonDepth('"]]]"'), 0);
  assert.equal(jsonDepth('['.repeat(1000), 10), 11, 'stops once past the limit');
});

test('a body that is not UTF-8 is a 400 naming the encoding', async () => {
  const { app, engine } = setup();
  const prefix = new TextEncoder().encode('{"prompt": "');
  const suffix = new TextEncoder().encode('"}');
  for (const bad of [[0xff], [0xc3], [0xed, 0xa0, 0x80] /* an encoded surrogate */, [0xc0, 0xaf] /* overlong "/" */]) {
    const body = new Uint8Array([...prefix, ...bad, ...suffix]);
    const error = await expectError(rawPost(app, '/v1/completions', body), 400, /not valid UTF-8/);
    assert.equal(error.code, 'invalid_encoding');
  }
  assert.equal(engine.requests.length, 0);
});

test('lone surrogates in prompts, messages and stop strings are 400s naming the field', async () => {
  const { app, engine } = setup();
  // JSON escapes are the only way to send one: the raw bytes would not be UTF-8.
  const cases: [string, string, string][] = [
    ['/v1/completions', '{"prompt": "a\\ud800b"}', 'prompt'],
    ['/v1/completions', '{"prompt": ["\\udc00"]}', 'prompt'],
    ['/v1/completions', '{"prompt": "ok", "stop": ["\\ud83d"]}', 'stop'],
    ['/v1/chat/completions', '{"messages": [{"role": "user", "content": "x\\udfff"}]}', 'messages[0].content'],
    ['/v1/chat/completions', '{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\ud800\\ud800"}]}]}', 'messages[0].content'],
    ['/v1/chat/completions', '{"messages": [{"role": "user", "content": "x", "name": "\\udc00\\ud800"}]}', 'messages[0].name'],
  ];
  for (const [path, body, param] of cases) {
    const res = await post(app, path, body);
    const json = (await res.json()) as ErrorJson;
    assert.equal(res.status, 400, body);
    // A union reports its own message; the others name the surrogate.
    assert.ok(json.error.param === param || json.error.param?.startsWith(param), `${body}: ${JSON.stringify(json)}`);
  }
  // A proper pair (an emoji) is fine.
  assert.equal((await post(app, '/v1/completions', '{"prompt": "\\ud83d\\ude00"}')).status, 200);
  assert.equal(engine.requests.length, 1);
});

test('bodies nested deeper than the limit are refused before parsing', async () => {
  const { app, engine } = setup({ maxBodyBytes: 4 * 1024 * 1024 });
  const deep = `{"prompt": "x", "extra": ${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}}`;
  await expectError(post(app, '/v1/completions', deep), 400, /more than 32 levels deep/);
  // Two million levels: refused in milliseconds, not the second JSON.parse would take.
  const started = performance.now();
  await expectError(post(app, '/v1/completions', '['.repeat(2_000_000)), 400, /levels deep/);
  assert.ok(performance.now() - started < 500);
  const fine = `{"prompt": "x", "extra": ${'['.repeat(MAX_JSON_DEPTH - 1)}${']'.repeat(MAX_JSON_DEPTH - 1)}}`;
  assert.equal((await post(app, '/v1/completions', fine)).status, 200);
  assert.equal(engine.requests.length, 1);
});

test('absurd parameters are 400s naming the parameter', async () => {
  const { app, engine } = setup();
  const chat = (extra: Record<string, unknown>) => ({ messages: [{ role: 'user', content: 'hi' }], ...extra });
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [chat({ max_tokens: 1e9 }), 'max_tokens', /maximum context length/],
    [chat({ max_tokens: -5 }), 'max_tokens', /.+/],
    [chat({ temperature: -1 }), 'temperature', /.+/],
    [chat({ top_p: 2 }), 'top_p', /.+/],
    [chat({ min_p: 1.5 }), 'min_p', /.+/],
    [chat({ top_k: -2 }), 'top_k', /.+/],
    [chat({ seed: 1e300 }), 'seed', /.+/],
    [chat({ top_k: 2 ** 60 }), 'top_k', /.+/],
    [chat({ stop: Array.from({ length: 17 }, (_, i) => `s${i}`) }), 'stop', /.+/],
    [chat({ stop: 'x'.repeat(257) }), 'stop', /.+/],
    [chat({ stream_options: 'yes' }), 'stream_options', /.+/],
    [chat({ messages: [{ role: 'user' }], model: 5 }), 'model', /.+/],
  ];
  for (const [body, param, message] of cases) await expectError(post(app, '/v1/chat/completions', body), 400, message, param);
  assert.equal(engine.requests.length, 0);
});

test('a prompt far longer than the context can hold is refused without tokenizing it', async () => {
  const { app, engine, tokenizer } = setup();
  // The fake model: context 64, default 32 characters per token → 2048 characters at most.
  let error = await expectError(post(app, '/v1/completions', { prompt: 'x'.repeat(3000) }), 400, /at most 2048 characters/, 'prompt');
  assert.equal(error.code, 'context_length_exceeded');
  await expectError(post(app, '/v1/chat/completions', { messages: [{ role: 'user', content: 'y'.repeat(3000) }] }), 400, /2048 characters/, 'messages');
  assert.equal(tokenizer.encoded.length, 0);
  // Huge arrays are refused before the schema walks them.
  const ids = Array.from({ length: 200_000 }, () => 5);
  await expectError(post(app, '/v1/completions', { prompt: ids }), 400, /the prompt alone has 200000/, 'prompt');
  await expectError(post(app, '/v1/completions', { prompt: [ids] }), 400, /the prompt alone has 200000/, 'prompt');
  const messages = Array.from({ length: 30_000 }, () => ({ role: 'user', content: '' }));
  error = await expectError(post(app, '/v1/chat/completions', { messages }), 400, /30000 messages and content parts cannot fit/, 'messages');
  assert.equal(error.code, 'context_length_exceeded');
  // Within the character bound but over the token bound: tokenized, then refused by token count.
  await expectError(post(app, '/v1/completions', { prompt: 'x'.repeat(100) }), 400, /maximum context length is 64 tokens/, 'prompt');
  assert.equal(engine.requests.length, 0);
});

test('the body limit applies without a Content-Length, and to every route', async () => {
  const { app } = setup({ maxBodyBytes: 2048, debugRoutes: true });
  const big = new TextEncoder().encode(JSON.stringify({ prompt: 'y'.repeat(4000) }));
  const chunked = new ReadableStream({
    start(controller) {
      controller.enqueue(big.subarray(0, 1000));
      controller.enqueue(big.subarray(1000));
      controller.close();
    },
  });
  const res = await app.request('/v1/chat/completions', { method: 'POST', body: chunked, duplex: 'half' } as RequestInit);
  assert.equal(res.status, 413);
  assert.equal(((await res.json()) as ErrorJson).error.code, 'request_too_large');
});
