import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createApp, type AppOptions } from './app.js';
import { FakeEngine, fakeModel, post } from './testing.js';

const setup = (options: Partial<AppOptions> = {}) => createApp({ engine: new FakeEngine(), model: fakeModel(), options });
const completion = { prompt: 'x' };

test('without API keys every route is open', async () => {
  const { app } = setup();
  assert.equal((await post(app, '/v1/completions', completion)).status, 200);
  assert.equal((await app.request('/metrics')).status, 200);
});

test('with API keys: Bearer required everywhere but /health and the playground page; 401 in OpenAI’s shape', async () => {
  const { app } = setup({ apiKeys: ['sk-one', 'sk-two'] });
  const attempts: Record<string, string>[] = [
    {},
    { authorization: 'Bearer sk-wrong' },
    { authorization: 'sk-one' },
    { authorization: 'Basic c2stb25lOg==' },
    { authorization: 'Bearer sk-one-more' },
  ];
  for (const headers of attempts) {
    const res = await post(app, '/v1/completions', completion, headers);
    assert.equal(res.status, 401, JSON.stringify(headers));
    assert.equal(res.headers.get('www-authenticate'), 'Bearer');
    const body = (await res.json()) as { error: Record<string, unknown> };
    assert.equal(body.error.type, 'invalid_request_error');
    assert.equal(body.error.code, 'invalid_api_key');
    assert.equal(typeof body.error.message, 'string');
  }
  for (const key of ['sk-one', 'sk-two']) assert.equal((await post(app, '/v1/completions', completion, { authorization: `Bearer ${key}` })).status, 200);
  assert.equal((await post(app, '/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }] }, { authorization: 'bearer sk-two' })).status, 200);
  for (const path of ['/metrics', '/exits', '/v1/models', '/nope']) assert.equal((await app.request(path)).status, 401, path);
  assert.equal((await app.request('/v1/models', { headers: { authorization: 'Bearer sk-one' } })).status, 200);
  assert.equal((await app.request('/health')).status, 200);
  // The playground's page itself holds no data (it asks for a key to call the API with).
  assert.notEqual((await app.request('/')).status, 401);
  // Public means GET: a POST to a public path still needs the key.
  assert.equal((await post(app, '/health', {})).status, 401);
});

test('CORS is off by default: no Access-Control headers, preflights are not answered', async () => {
  const { app } = setup();
  const res = await post(app, '/v1/completions', completion, { origin: 'https://evil.example' });
  assert.equal(res.headers.get('access-control-allow-origin'), null);
  const preflight = await app.request('/v1/completions', {
    method: 'OPTIONS',
    headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
  });
  assert.equal(preflight.headers.get('access-control-allow-origin'), null);
});

test('CORS for named origins: preflight without a key, headers on answers and on errors, other origins get none', async () => {
  const { app } = setup({ corsOrigins: ['http://localhost:5173'], apiKeys: ['k'] });
  const preflight = await app.request('/v1/chat/completions', {
    method: 'OPTIONS',
    headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
  });
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers.get('access-control-allow-origin'), 'http://localhost:5173');
  assert.match(preflight.headers.get('access-control-allow-headers') ?? '', /Authorization/);
  const ok = await post(app, '/v1/completions', completion, { origin: 'http://localhost:5173', authorization: 'Bearer k' });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get('access-control-allow-origin'), 'http://localhost:5173');
  const denied = await post(app, '/v1/completions', completion, { origin: 'http://localhost:5173' });
  assert.equal(denied.status, 401);
  assert.equal(denied.headers.get('access-control-allow-origin'), 'http://localhost:5173', 'the page can read why');
  const other = await post(app, '/v1/completions', completion, { origin: 'https://evil.example', authorization: 'Bearer k' });
  assert.equal(other.headers.get('access-control-allow-origin'), null);

  const open = setup({ corsOrigins: ['*'] });
  const res = await post(open.app, '/v1/completions', completion, { origin: 'https://anywhere.example' });
  assert.equal(res.headers.get('access-control-allow-origin'), '*');
});

test('no file outside the playground folder is served', async () => {
  const { app } = setup();
  const paths = [
    '/package.json',
    '/src/server/app.ts',
    '/dist/src/server/app.js',
    '/playground/routes.ts',
    '/playground/index.ts',
    '/playground/../package.json',
    '/playground/%2e%2e/package.json',
    '/playground/..%2fpackage.json',
    '/playground/%2e%2e%2f%2e%2e%2fpackage.json',
    '/playground/.env',
    '/static/app.js',
    '/node_modules/hono/package.json',
    '/../../etc/passwd',
    '/%2e%2e/%2e%2e/etc/passwd',
  ];
  for (const path of paths) {
    const res = await app.request(path);
    assert.equal(res.status, 404, path);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/, path);
  }
});
