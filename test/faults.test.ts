/**
 * Engine faults on the real server (stories260K, greedy): when the worker's
 * decode loop throws or the worker thread crashes, every request in flight
 * ends with an error (an error frame then [DONE] mid-stream, a JSON 500
 * before headers), /health says `restarting` until a new worker is up, and
 * then requests succeed with exactly the text they would have had anyway.
 * Too many failures in a row leave the engine dead, and `died` says so.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { EXITS_OFF } from '../src/engine/engine.js';
import type { Fault } from '../src/engine/messages.js';
import { GREEDY } from '../src/engine/sampler.js';
import { EngineDeadError, WorkerEngine } from '../src/engine/index.js';
import { resolveModel } from '../src/model/index.js';
import { ServeConfigSchema, startServer, type RunningServer } from '../src/server/index.js';
import { metric, sseFrames, until } from './http.js';
import { requireSharedModels, sharedModelPath } from './shared.js';

const MODEL = () => sharedModelPath('stories260K', 'stories260K.bin');
const TOKENIZER = () => sharedModelPath('stories260K', 'tok512.bin');

function tempCache(t: TestContext): void {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'offramp-faults-test-'));
  const before = process.env.OFFRAMP_CACHE_DIR;
  process.env.OFFRAMP_CACHE_DIR = cache;
  t.after(() => {
    if (before === undefined) delete process.env.OFFRAMP_CACHE_DIR;
    else process.env.OFFRAMP_CACHE_DIR = before;
    fs.rmSync(cache, { recursive: true, force: true });
  });
}

async function serve(t: TestContext): Promise<RunningServer> {
  tempCache(t);
  // The server's defaults (exits on); the requests whose texts are compared exactly turn exits off for themselves.
  const config = ServeConfigSchema.parse({ model: MODEL(), tokenizer: TOKENIZER(), port: 0, maxRunning: 4 });
  const server = await startServer(config);
  t.after(() => server.stop(1000));
  await server.ready;
  return server;
}

const complete = (server: RunningServer, body: Record<string, unknown>): Promise<Response> =>
  fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

/** A stream's status, and (for a 200) its frames once it ends; resolves when the first frame is in. */
async function openStream(server: RunningServer, prompt: string): Promise<{ status: number; body?: unknown; frames: Promise<string[]> }> {
  const res = await complete(server, { prompt, temperature: 0, early_exit: 'lossless', stream: true });
  if (res.status !== 200) return { status: res.status, body: await res.json(), frames: Promise.resolve([]) };
  return { status: 200, ...(await sseFrames(res)) };
}

async function faultMidStream(t: TestContext, fault: Fault): Promise<void> {
  if (!requireSharedModels(t)) return;
  const server = await serve(t);
  const solo = async (): Promise<string> => {
    const res = await complete(server, { prompt: 'Once upon a time', max_tokens: 80, temperature: 0, early_exit: 'lossless' });
    assert.equal(res.status, 200);
    return ((await res.json()) as { choices: { text: string }[] }).choices[0]!.text;
  };
  const before = await solo();

  // Four streams hold the four slots ("Tom and his dog" runs to the end of the context); two more come
  // after them. The fault goes in at once: four streams of 505 tokens can end in a quarter of a second.
  const running = await Promise.all(Array.from({ length: 4 }, () => openStream(server, 'Tom and his dog')));
  const waiting = [openStream(server, 'Lily wanted to'), openStream(server, 'The sun was hot and')];
  server.engine.injectFault(fault);
  // The worker comes back within a second or so; /health must say so meanwhile.
  let sawRestarting = false;
  await until('/health says restarting', async () => {
    const res = await fetch(`${server.url}/health`);
    if (res.status === 503) sawRestarting = ((await res.json()) as { status: string }).status === 'restarting';
    return sawRestarting;
  });
  // Meanwhile new requests are told to come back.
  const refused = await complete(server, { prompt: 'x', max_tokens: 2 });
  if (server.engine.health === 'restarting') {
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('retry-after'), '1');
  }

  for (const stream of running) {
    const frames = await stream.frames;
    assert.equal(frames.at(-1), '[DONE]');
    const error = JSON.parse(frames.at(-2)!) as { error?: { message: string; type: string } };
    assert.equal(error.error?.type, 'server_error', frames.at(-2));
    assert.match(error.error.message, /restarting/);
  }
  // Whether the two later requests reached the failing worker (500) or came during the restart (503) is a race.
  for (const stream of await Promise.all(waiting)) {
    assert.ok(stream.status === 500 || stream.status === 503, JSON.stringify(stream.body));
    assert.match((stream.body as { error: { message: string } }).error.message, /restart/);
  }

  await until('/health is ready again', async () => (await fetch(`${server.url}/health`)).status === 200);
  assert.equal(server.engine.restarts, 1);
  assert.equal(await solo(), before, 'the new worker gives the same text');
  await until('the engine reports its slots', async () => (await metric(server.url, 'offramp:num_free_slots')) === 4);
  assert.equal(await metric(server.url, 'offramp:num_requests_running'), 0);
  assert.equal(await metric(server.url, 'offramp:num_requests_waiting'), 0);
  assert.equal(await metric(server.url, 'offramp:engine_restarts_total'), 1);
  assert.equal(server.app.state.inFlight, 0);
}

test('inference throws mid-stream: error frames and [DONE], /health restarting, then exact texts again', { timeout: 60_000 }, (t) =>
  faultMidStream(t, { kind: 'step' }),
);

test('the worker thread crashes mid-stream: the same recovery', { timeout: 60_000 }, (t) => faultMidStream(t, { kind: 'crash' }));

test('more failures than the restart policy allows leave the engine dead, and died says so', { timeout: 60_000 }, async (t) => {
  if (!requireSharedModels(t)) return;
  tempCache(t);
  const dir = await resolveModel(MODEL(), { tokenizer: TOKENIZER() });
  const lines: string[] = [];
  const engine = new WorkerEngine({ maxRestarts: 1, restartDelayMs: 10, log: (line) => lines.push(line) });
  t.after(() => engine.close());
  await engine.start(dir, { runtime: { device: 'cpu', threads: 1 }, engine: { maxRunning: 2, maxStepTokens: 64, maxContext: 64, earlyExit: EXITS_OFF } });
  const request = (id: string) => ({ id, promptTokens: [1, 403, 407, 261, 378], sampling: GREEDY, maxTokens: 8, stop: [], earlyExit: 'off' as const });
  const run = async (id: string): Promise<string> => {
    let text = '';
    for await (const event of engine.generate(request(id))) if (event.type === 'token') text += event.text;
    return text;
  };
  const golden = await run('a');

  engine.injectFault({ kind: 'crash' });
  await until('restarting', () => engine.health === 'restarting');
  await until('ready again', () => engine.health === 'ready');
  assert.equal(await run('b'), golden);
  assert.equal(engine.restarts, 1);

  engine.injectFault({ kind: 'crash' });
  const died = await engine.died;
  assert.ok(died instanceof EngineDeadError);
  assert.match(died.message, /failed 2 times/);
  assert.equal(engine.health, 'dead');
  assert.equal(engine.alive, false);
  await assert.rejects(run('c'), EngineDeadError);
  assert.ok(lines.some((l) => /restarted/.test(l)));
});
