/**
 * Property-based fuzzing of the API (fast-check): generated bodies — near
 * valid requests with wrong or absurd fields, random JSON, random text with
 * lone surrogates, random bytes, truncated and deeply nested JSON, oversized
 * bodies — never get a 5xx, never hang, and leave the server healthy with
 * nothing in flight. First in-process with the fake engine (many cases),
 * then over loopback against the real server on stories260K (a bounded run).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { createParser } from 'eventsource-parser';
import fc from 'fast-check';
import { createApp } from '../src/server/app.js';
import { ServeConfigSchema, startServer } from '../src/server/index.js';
import { CharTokenizer, FakeEngine, fakeModel, tokens } from '../src/server/testing.js';
import { requireSharedModels, sharedModelPath } from './shared.js';

// --- generated requests

const surrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code));
const anyChar = fc.oneof({ weight: 8, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) }, { weight: 1, arbitrary: surrogate });
const text = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.string({ unit: anyChar, maxLength: 30 }),
  fc.constantFrom('Once upon a time', 'Tom and his dog', '', ' ', '\u0000', '<s>', '</s>', '\n\n', 'x'.repeat(300)),
);
const junk = fc.jsonValue({ maxDepth: 3 });

/** Absurd or wrongly typed values for any field. */
const absurd = fc.oneof(junk, fc.constantFrom(1e9, -1, 0, 2 ** 53, 1e300, -0.5, 2, 3, '', 'x'.repeat(1000), [], {}, null, true), text);
const validText = fc.oneof(fc.string({ minLength: 1, maxLength: 30 }), fc.constantFrom('Once upon a time', 'Tom and his dog', 'Lily', ' ', '\n'));

/** Valid optional parameters, each present or not. */
const validParams = {
  max_tokens: fc.integer({ min: 1, max: 32 }),
  temperature: fc.constantFrom(0, 0.7, 1, 2),
  top_p: fc.double({ min: 0.01, max: 1, noNaN: true }),
  top_k: fc.integer({ min: -1, max: 600 }),
  min_p: fc.double({ min: 0, max: 1, noNaN: true }),
  seed: fc.integer(),
  stop: fc.oneof(validText, fc.array(validText, { maxLength: 4 })),
  stream: fc.boolean(),
  stream_options: fc.record({ include_usage: fc.boolean() }),
  n: fc.constant(1),
  early_exit: fc.constantFrom(true, false, 'on', 'off', 'lossless'),
  user: fc.string({ maxLength: 10 }),
};
const validMessage = fc.record({
  role: fc.constantFrom('system', 'developer', 'user', 'assistant', 'tool'),
  content: fc.oneof(validText, fc.array(fc.record({ type: fc.constant('text'), text: validText }), { minLength: 1, maxLength: 2 })),
});
const validChat = fc.record({ ...validParams, messages: fc.array(validMessage, { minLength: 1, maxLength: 3 }) }, { requiredKeys: ['messages', 'max_tokens'] });
const validCompletion = fc.record(
  {
    ...validParams,
    prompt: fc.oneof(
      validText,
      fc.array(validText, { minLength: 1, maxLength: 1 }),
      fc.array(fc.integer({ min: 0, max: 511 }), { minLength: 1, maxLength: 8 }),
    ),
  },
  { requiredKeys: ['prompt', 'max_tokens'] },
);

const FIELDS = [...Object.keys(validParams), 'model', 'messages', 'prompt', 'logprobs', 'echo', 'best_of', 'suffix', 'max_completion_tokens', 'top_logprobs'];
/** A valid body with one to three fields replaced by absurd values (or removed). */
const mutate = (body: fc.Arbitrary<Record<string, unknown>>) =>
  fc
    .tuple(body, fc.array(fc.tuple(fc.oneof(fc.constantFrom(...FIELDS), fc.string({ maxLength: 8 })), fc.option(absurd)), { minLength: 1, maxLength: 3 }))
    .map(([valid, changes]) => {
      const out: Record<string, unknown> = { ...valid };
      for (const [key, value] of changes) {
        if (value === null) delete out[key];
        else out[key] = value;
      }
      return out;
    });
const message = fc.record(
  { role: fc.oneof(fc.constantFrom('user', 'wizard'), absurd), content: fc.oneof(text, absurd), name: fc.oneof(text, absurd) },
  { requiredKeys: [] },
);
const chatBody = fc.oneof(
  { weight: 3, arbitrary: validChat },
  { weight: 3, arbitrary: mutate(validChat) },
  { weight: 1, arbitrary: mutate(fc.record({ messages: fc.array(message, { maxLength: 3 }), max_tokens: fc.integer({ min: 1, max: 16 }) })) },
);
const completionBody = fc.oneof(
  { weight: 3, arbitrary: validCompletion },
  { weight: 3, arbitrary: mutate(validCompletion) },
  {
    weight: 1,
    arbitrary: mutate(
      fc.record({ prompt: fc.oneof(text, fc.array(fc.integer({ min: -5, max: 600 }), { maxLength: 8 }), absurd), max_tokens: fc.integer({ min: 1, max: 16 }) }),
    ),
  },
);

const CHAT = '/v1/chat/completions';
const COMPLETIONS = '/v1/completions';
/** The largest body the servers under test accept (set small so the fuzz reaches it). */
const MAX_BODY_BYTES = 64 * 1024;

interface Exchange {
  path: string;
  body: string | Uint8Array;
  contentType?: string;
}

const structured: fc.Arbitrary<Exchange> = fc.oneof(
  chatBody.map((body) => ({ path: CHAT, body: JSON.stringify(body) })),
  completionBody.map((body) => ({ path: COMPLETIONS, body: JSON.stringify(body) })),
);
const anyPath = fc.constantFrom(CHAT, COMPLETIONS);
const raw: fc.Arbitrary<Exchange> = fc.oneof(
  fc.record({ path: anyPath, body: fc.json({ maxDepth: 4 }) }),
  fc.record({ path: anyPath, body: fc.string({ unit: anyChar, maxLength: 200 }) }),
  fc.record({ path: anyPath, body: fc.uint8Array({ maxLength: 200 }) }),
  // A valid body cut short or with bytes spliced in.
  fc.tuple(structured, fc.nat(), fc.uint8Array({ maxLength: 4 })).map(([ex, at, bytes]) => {
    const valid = new TextEncoder().encode(ex.body as string);
    const cut = at % (valid.length + 1);
    return { path: ex.path, body: new Uint8Array([...valid.subarray(0, cut), ...bytes, ...valid.subarray(cut + (at % 3))]) };
  }),
  // Deep nesting: arrays, objects, or inside an otherwise valid body.
  fc.tuple(anyPath, fc.integer({ min: 1, max: 200_000 }), fc.constantFrom('[', '{"a":')).map(([p, depth, open]) => {
    const close = open === '[' ? ']' : '}';
    return { path: p, body: `{"prompt": "x", "messages": [], "extra": ${open.repeat(depth)}1${close.repeat(depth)}}` };
  }),
  // Oversized: just over the limit, or far over it.
  fc
    .tuple(anyPath, fc.constantFrom(MAX_BODY_BYTES + 1, MAX_BODY_BYTES * 3))
    .map(([p, size]) => ({ path: p, body: JSON.stringify({ prompt: 'y'.repeat(size) }) })),
);
const exchange: fc.Arbitrary<Exchange> = fc
  .tuple(fc.oneof({ weight: 3, arbitrary: structured }, { weight: 2, arbitrary: raw }), fc.constantFrom('application/json', 'text/plain', undefined))
  .map(([ex, contentType]) => (contentType ? { ...ex, contentType } : ex));

// --- checking answers

/** What every answer must satisfy: not a 5xx; a JSON error, a JSON completion, or a stream that ends in [DONE]. */
function checkAnswer(status: number, contentType: string, text: string): void {
  assert.ok(status < 500, `status ${status}: ${text.slice(0, 300)}`);
  if (status !== 200) {
    const body = JSON.parse(text) as { error: { message: unknown; type: unknown } };
    assert.equal(typeof body.error.message, 'string');
    assert.equal(typeof body.error.type, 'string');
    return;
  }
  if (contentType.startsWith('text/event-stream')) {
    const frames: string[] = [];
    const parser = createParser({ onEvent: (event) => frames.push(event.data) });
    parser.feed(text);
    assert.equal(frames.at(-1), '[DONE]', text.slice(-300));
    const chunks = frames.slice(0, -1).map((f) => JSON.parse(f) as { error?: unknown; choices?: { finish_reason?: string | null }[] });
    assert.ok(
      chunks.every((c) => c.error === undefined),
      `an error frame: ${text.slice(-300)}`,
    );
    assert.ok(
      chunks.some((c) => c.choices?.[0]?.finish_reason),
      'a finish_reason',
    );
    return;
  }
  const body = JSON.parse(text) as { choices: { finish_reason: string }[] };
  assert.ok(['stop', 'length'].includes(body.choices[0]!.finish_reason));
}

/** Rejects if `promise` takes longer than `ms`: a hung answer. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`hung: no complete answer to ${what} within ${ms} ms`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const describe = (ex: Exchange): string => `${ex.path} ${typeof ex.body === 'string' ? ex.body.slice(0, 200) : `<${ex.body.length} bytes>`}`;

test('fuzz, in-process with the fake engine: never a 5xx, never hung, nothing left in flight', { timeout: 120_000 }, async (t) => {
  const engine = new FakeEngine(tokens(['Hello', ',', ' world']));
  const { app, state } = createApp({
    engine,
    model: fakeModel(new CharTokenizer(), 256),
    options: { maxBodyBytes: MAX_BODY_BYTES, maxRunning: 4, maxQueued: 4 },
  });
  const statuses = new Map<number, number>();
  await fc.assert(
    fc.asyncProperty(exchange, async (ex) => {
      const headers: Record<string, string> = ex.contentType ? { 'content-type': ex.contentType } : {};
      const answer = async () => {
        const res = await app.request(ex.path, { method: 'POST', headers, body: ex.body as BodyInit });
        return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
      };
      const { status, type, text: body } = await within(answer(), 5000, describe(ex));
      checkAnswer(status, type, body);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }),
    { numRuns: 2000, seed: 42, plugins: [fc.interruptAfterTimeLimit(60_000)] },
  );
  t.diagnostic(`statuses: ${JSON.stringify([...statuses].sort())}`);
  // The generators must reach generation as well as every kind of refusal.
  assert.ok((statuses.get(200) ?? 0) >= 30 && (statuses.get(400) ?? 0) >= 100 && (statuses.get(413) ?? 0) >= 5, JSON.stringify([...statuses]));
  assert.equal(state.inFlight, 0);
  assert.equal((await app.request('/health')).status, 200);
});

test('fuzz, the real server on stories260K over loopback: never a 5xx, never hung, slots all free after', { timeout: 120_000 }, async (t: TestContext) => {
  if (!requireSharedModels(t)) return;
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'offramp-fuzz-test-'));
  process.env.OFFRAMP_CACHE_DIR = cache;
  const maxRunning = 4;
  const server = await startServer(
    ServeConfigSchema.parse({
      model: sharedModelPath('stories260K', 'stories260K.bin'),
      tokenizer: sharedModelPath('stories260K', 'tok512.bin'),
      port: 0,
      maxRunning,
      // Batches of up to 12 against 4 + 4 places: some get 429.
      maxQueued: 4,
      maxBodyBytes: MAX_BODY_BYTES,
    }),
  );
  t.after(async () => {
    await server.stop(1000);
    fs.rmSync(cache, { recursive: true, force: true });
  });
  assert.match(server.url, /^http:\/\/127\.0\.0\.1:/, 'loopback by default');
  await server.ready;
  const send = async (ex: Exchange) => {
    const headers: Record<string, string> = ex.contentType ? { 'content-type': ex.contentType } : {};
    // A failed fetch (connection closed, reset) fails the property as a 5xx would.
    const res = await fetch(`${server.url}${ex.path}`, { method: 'POST', headers, body: ex.body as BodyInit, signal: AbortSignal.timeout(30_000) });
    return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
  };
  const statuses = new Map<number, number>();
  // Several at once, so generated requests share batches and sometimes overflow the queue.
  await fc.assert(
    fc.asyncProperty(fc.array(exchange, { minLength: 1, maxLength: 12 }), async (batch) => {
      const answers = await Promise.all(batch.map((ex) => within(send(ex), 30_000, describe(ex))));
      for (const a of answers) {
        checkAnswer(a.status, a.type, a.text);
        statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
      }
    }),
    { numRuns: 150, seed: 7, plugins: [fc.interruptAfterTimeLimit(30_000)] },
  );
  t.diagnostic(`statuses: ${JSON.stringify([...statuses].sort())}`);
  assert.ok((statuses.get(200) ?? 0) >= 10 && (statuses.get(400) ?? 0) >= 20, JSON.stringify([...statuses]));
  assert.equal((await fetch(`${server.url}/health`)).status, 200);
  assert.equal(server.app.state.inFlight, 0);
  // The engine reports its occupancy every 50 ms; give the last report a moment.
  await new Promise((resolve) => setTimeout(resolve, 150));
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  const gauge = (name: string) =>
    Number(
      metrics
        .split('\n')
        .find((l) => l.startsWith(`${name} `))
        ?.split(' ')[1],
    );
  assert.equal(gauge('offramp:num_free_slots'), maxRunning);
  assert.equal(gauge('offramp:num_requests_running'), 0);
  assert.equal(gauge('offramp:num_requests_waiting'), 0);
});
