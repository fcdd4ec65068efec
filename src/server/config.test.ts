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
  const { config: custom } = parseServeArgs(['--port', '0', '--max-running', '4', '--max-queued', '0', '--max-context', '128', '--device', 'cpu'], { PORT: '9001' });
  assert.deepEqual([custom.port, custom.maxRunning, custom.maxQueued, custom.maxContext], [0, 4, 0, 128]);
  assert.equal(parseServeArgs(['--help'], {}).help, true);
});

test('serve flags: a bad value names its flag', () => {
  assert.throws(() => parseServeArgs(['--max-running', 'many'], {}), (e: Error) => e instanceof ServeConfigError && /--max-running/.test(e.message));
  assert.throws(() => parseServeArgs(['--port', '70000'], {}), /--port/);
  assert.throws(() => parseServeArgs(['--device', 'tpu'], {}), /--device/);
  assert.throws(() => parseServeArgs(['--bogus'], {}), ServeConfigError);
});

test('model names for the API', () => {
  assert.equal(defaultModelName('stories260K'), 'stories260K');
  assert.equal(defaultModelName('../shared/models/stories260K/stories260K.bin'), 'stories260K');
  assert.equal(defaultModelName('hf:HuggingFaceTB/SmolLM2-135M-Instruct'), 'HuggingFaceTB/SmolLM2-135M-Instruct');
  assert.equal(defaultModelName('/models/prepared/'), 'prepared');
});
