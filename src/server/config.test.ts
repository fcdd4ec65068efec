import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseServeArgs, ServeConfigError } from './config.js';
import { defaultModelName } from './serve.js';

test('serve flags: defaults, $PORT and $OFFRAMP_MODEL, and overrides', () => {
  const { config } = parseServeArgs([], {});
  assert.equal(config.model, 'stories260K');
  assert.equal(config.port, 8000);
  assert.equal(config.host, '127.0.0.1');
  assert.equal(config.maxRunning, 16);
  assert.equal(config.maxQueued, 64);
  assert.equal(config.maxContext, undefined);
  assert.equal(parseServeArgs([], { PORT: '9001', OFFRAMP_MODEL: '/m' }).config.port, 9001);
  assert.equal(parseServeArgs([], { PORT: '9001', OFFRAMP_MODEL: '/m' }).config.model, '/m');
  const { config: custom } = parseServeArgs(['--port', '0', '--max-running', '4', '--max-queued', '0', '--max-context', '128', '--device', 'cpu'], {
    PORT: '9001',
  });
  assert.deepEqual([custom.port, custom.maxRunning, custom.maxQueued, custom.maxContext], [0, 4, 0, 128]);
  assert.equal(parseServeArgs(['--help'], {}).help, true);
  assert.equal(config.quantize, undefined, 'unset: float32, and a prepared directory is taken as it is');
  assert.equal(parseServeArgs(['--quantize', 'int8'], {}).config.quantize, 'int8');
});

test('serve flags: a bad value names its flag', () => {
  assert.throws(
    () => parseServeArgs(['--max-running', 'many'], {}),
    (e: Error) => e instanceof ServeConfigError && /--max-running/.test(e.message),
  );
  assert.throws(() => parseServeArgs(['--port', '70000'], {}), /--port/);
  assert.throws(() => parseServeArgs(['--device', 'tpu'], {}), /--device/);
  assert.throws(() => parseServeArgs(['--quantize', 'int4'], {}), /--quantize/);
  assert.throws(() => parseServeArgs(['--bogus'], {}), ServeConfigError);
});

test('model names for the API', () => {
  assert.equal(defaultModelName('stories260K'), 'stories260K');
  assert.equal(defaultModelName('../shared/models/stories260K/stories260K.bin'), 'stories260K');
  assert.equal(defaultModelName('hf:HuggingFaceTB/SmolLM2-135M-Instruct'), 'HuggingFaceTB/SmolLM2-135M-Instruct');
  assert.equal(defaultModelName('/models/prepared/'), 'prepared');
});

test('serve flags: reliability and security defaults are safe ones', () => {
  const { config } = parseServeArgs([], {});
  assert.equal(config.host, '127.0.0.1', 'loopback unless told otherwise');
  assert.equal(config.queueTimeoutSeconds, 60);
  assert.deepEqual(config.apiKeys, []);
  assert.deepEqual(config.corsOrigins, []);
  assert.equal(config.debugRoutes, false);
});

test('serve flags: API keys repeated or comma-separated, from $OFFRAMP_API_KEY unless given', () => {
  assert.deepEqual(parseServeArgs(['--api-key', 'a', '--api-key', 'b,c', '--api-key', ' d , '], {}).config.apiKeys, ['a', 'b', 'c', 'd']);
  assert.deepEqual(parseServeArgs([], { OFFRAMP_API_KEY: 'x,y' }).config.apiKeys, ['x', 'y']);
  assert.deepEqual(parseServeArgs(['--api-key', 'z'], { OFFRAMP_API_KEY: 'x,y' }).config.apiKeys, ['z'], 'the flag replaces the environment');
  assert.deepEqual(parseServeArgs([], { OFFRAMP_API_KEY: '' }).config.apiKeys, []);
});

test('serve flags: CORS origins, queue timeout, debug routes', () => {
  const { config } = parseServeArgs(
    ['--cors-origin', 'http://localhost:5173', '--cors-origin', 'https://a.example,https://b.example:8443', '--queue-timeout', '2.5', '--debug-routes'],
    {},
  );
  assert.deepEqual(config.corsOrigins, ['http://localhost:5173', 'https://a.example', 'https://b.example:8443']);
  assert.equal(config.queueTimeoutSeconds, 2.5);
  assert.equal(config.debugRoutes, true);
  assert.deepEqual(parseServeArgs(['--cors-origin', '*'], {}).config.corsOrigins, ['*']);
  assert.throws(() => parseServeArgs(['--cors-origin', 'https://a.example/path'], {}), /--cors-origin/);
  assert.throws(() => parseServeArgs(['--cors-origin', 'localhost'], {}), /--cors-origin/);
  assert.throws(() => parseServeArgs(['--queue-timeout', '-1'], {}), /--queue-timeout/);
  assert.throws(() => parseServeArgs(['--debug-routes=yes'], {}), ServeConfigError);
});
