/**
 * End to end: the real server (worker thread, stories260K) on a free port,
 * driven by the official `openai` client. Greedy decoding, so every text is
 * exact and must not depend on what else is in the batch.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import OpenAI from 'openai';
import { ServeConfigSchema, startServer } from '../src/server/index.js';
import { metric, until } from './http.js';
import { requireSharedModels, sharedModelPath } from './shared.js';

const GOLDEN = () => fs.readFileSync(sharedModelPath('stories260K', 'golden-once-upon-a-time.txt'), 'utf8');

async function streamedText(stream: AsyncIterable<OpenAI.Completions.Completion>): Promise<{ text: string; finish: string | null }> {
  let text = '';
  let finish: string | null = null;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (!choice) continue;
    text += choice.text;
    finish = choice.finish_reason ?? finish;
  }
  return { text, finish };
}

test('the server on stories260K, driven by the openai client', { timeout: 120_000 }, async (t: TestContext) => {
  if (!requireSharedModels(t)) return;
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'offramp-server-test-'));
  process.env.OFFRAMP_CACHE_DIR = cache;
  const server = await startServer(
    ServeConfigSchema.parse({
      model: sharedModelPath('stories260K', 'stories260K.bin'),
      tokenizer: sharedModelPath('stories260K', 'tok512.bin'),
      port: 0,
      maxRunning: 16,
      maxQueued: 64,
      // Exactness checks below: exits change text until the controller has earned its thresholds.
      earlyExit: 'off',
    }),
  );
  t.after(async () => {
    await server.stop(1000);
    fs.rmSync(cache, { recursive: true, force: true });
  });
  // Listening before the model is ready: health says so.
  const early = await fetch(`${server.url}/health`);
  assert.ok(early.status === 503 || early.status === 200);
  await server.ready;
  assert.equal((await fetch(`${server.url}/health`)).status, 200);
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });

  await t.test('models list', async () => {
    const models = await client.models.list();
    assert.deepEqual(
      models.data.map((m) => m.id),
      ['stories260K'],
    );
  });

  await t.test('completions: greedy text matches the golden text, streamed or not, with usage', async () => {
    const whole = await client.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 60, temperature: 0 });
    const text = whole.choices[0]!.text;
    assert.ok(GOLDEN().startsWith(`Once upon a time${text}`), text);
    assert.equal(whole.choices[0]!.finish_reason, 'length');
    assert.deepEqual(whole.usage, { prompt_tokens: 5, completion_tokens: 60, total_tokens: 65 });

    const stream = await client.completions.create({
      model: 'stories260K',
      prompt: 'Once upon a time',
      max_tokens: 60,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let streamed = '';
    let usage: OpenAI.CompletionUsage | undefined;
    let finish: string | null = null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices) {
        streamed += choice.text;
        finish = choice.finish_reason ?? finish;
      }
    }
    assert.equal(streamed, text);
    assert.equal(finish, 'length');
    assert.deepEqual(usage, { prompt_tokens: 5, completion_tokens: 60, total_tokens: 65 });
  });

  await t.test('chat: role first, deltas add up to the non-streamed message, usage chunk last', async () => {
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Tell me a story about a cat.' }];
    const whole = await client.chat.completions.create({ model: 'stories260K', messages, max_tokens: 40, temperature: 0 });
    const content = whole.choices[0]!.message.content ?? '';
    assert.equal(whole.choices[0]!.message.role, 'assistant');
    assert.ok(content.length > 0);
    assert.equal(whole.usage?.completion_tokens, 40);

    const stream = await client.chat.completions.create({
      model: 'stories260K',
      messages,
      max_tokens: 40,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Chat.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.equal(chunks[0]!.choices[0]!.delta.role, 'assistant');
    assert.equal(new Set(chunks.map((c) => c.id)).size, 1);
    assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), content);
    assert.equal(chunks.at(-2)!.choices[0]!.finish_reason, 'length');
    assert.deepEqual(chunks.at(-1)!.choices, []);
    assert.deepEqual(chunks.at(-1)!.usage, whole.usage);
  });

  await t.test('stop sequences end the text before them, streamed or not', async () => {
    const whole = await client.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 60, temperature: 0, stop: ['Lily', 'ball'] });
    assert.equal(whole.choices[0]!.text, ', there was a little girl named ');
    assert.equal(whole.choices[0]!.finish_reason, 'stop');
    const streamed = await streamedText(
      await client.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 60, temperature: 0, stop: 'red', stream: true }),
    );
    assert.equal(streamed.text, ', there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, ');
    assert.equal(streamed.finish, 'stop');
  });

  await t.test('errors come back as the client’s typed errors', async () => {
    await assert.rejects(
      client.chat.completions.create({ model: 'stories260K', messages: [{ role: 'user', content: 'x' }], n: 2 }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === 'n',
    );
    await assert.rejects(
      client.completions.create({ model: 'stories260K', prompt: 'Once', max_tokens: 600 }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && e.code === 'context_length_exceeded',
    );
    await assert.rejects(client.completions.create({ model: 'gpt-4', prompt: 'x' }), (e: unknown) => e instanceof OpenAI.NotFoundError);
  });

  await t.test('32 concurrent greedy streams each equal their text when run alone', async () => {
    const names = ['Tom', 'Lily', 'Ben', 'Sue', 'Max', 'Mia', 'Sam', 'Anna'];
    const openings = ['Once upon a time', 'One day,', 'The sun was', 'In the park,'];
    const prompts = openings.flatMap((o) => names.map((n) => `${o} ${n}`));
    assert.equal(prompts.length, 32);
    const alone: string[] = [];
    for (const prompt of prompts) {
      const r = await client.completions.create({ model: 'stories260K', prompt, max_tokens: 48, temperature: 0 });
      alone.push(r.choices[0]!.text);
    }
    const together = await Promise.all(
      prompts.map(async (prompt) =>
        streamedText(await client.completions.create({ model: 'stories260K', prompt, max_tokens: 48, temperature: 0, stream: true })),
      ),
    );
    together.forEach((r, i) => assert.equal(r.text, alone[i], `prompt ${JSON.stringify(prompts[i])}`));
    assert.ok(new Set(alone).size > 16, 'the prompts lead to different texts');
  });

  await t.test('a client that disconnects mid-stream frees its slot; the requests beside it and a waiting one finish unchanged', async () => {
    // Greedy "Tom and his dog" runs to the end of the 512-position context (505 tokens).
    const opts = { model: 'stories260K', prompt: 'Tom and his dog', temperature: 0 } as const;
    // The leaver takes a slot and streams; 15 more requests fill the other slots; a 17th must wait.
    // The 15 are not streamed: this client shares the server's event loop, and 15 streams of chunks
    // would make it notice the hang-up later than the engine finishes the leaver's 505 tokens.
    // Even so, on a busy machine the engine could finish them before the hang-up lands: slowed steps make sure it cannot.
    server.engine.injectFault({ kind: 'slow', stepMs: 10 });
    const leaver = await client.completions.create({ ...opts, stream: true });
    const iterator = leaver[Symbol.asyncIterator]();
    await iterator.next();
    const others = Array.from({ length: 15 }, () => client.completions.create(opts));
    await until('16 run', async () => (await metric(server.url, 'offramp:num_requests_running')) === 16);
    const waitingPromise = client.completions.create({ ...opts, stream: true });
    leaver.controller.abort();
    await until(
      'the engine saw the hang-up',
      async () => (await metric(server.url, 'offramp:request_success_total{model_name="stories260K",finished_reason="abort"}')) === 1,
    );
    server.engine.injectFault({ kind: 'slow', stepMs: 0 });
    const waiting = await waitingPromise;
    let waitingText = '';
    for await (const chunk of waiting) waitingText += chunk.choices[0]?.text ?? '';

    const texts = (await Promise.all(others)).map((r) => r.choices[0]!);
    for (const choice of texts) {
      assert.equal(choice.finish_reason, 'length');
      assert.equal(choice.text, texts[0]!.text);
    }
    assert.ok(texts[0]!.text.length > 900, 'all 505 tokens');
    assert.equal(waitingText, texts[0]!.text);
    await until('the engine is idle', async () => (await metric(server.url, 'offramp:num_requests_running')) === 0);
    assert.equal(await metric(server.url, 'offramp:request_success_total{model_name="stories260K",finished_reason="abort"}'), 1);
    assert.equal(await metric(server.url, 'offramp:num_free_slots'), 16);
  });
});

test('with early exits on, /exits and /metrics show the controller, and chunks stay OpenAI-shaped', { timeout: 120_000 }, async (t: TestContext) => {
  if (!requireSharedModels(t)) return;
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'offramp-server-test-'));
  process.env.OFFRAMP_CACHE_DIR = cache;
  const server = await startServer(
    ServeConfigSchema.parse({ model: sharedModelPath('stories260K', 'stories260K.bin'), tokenizer: sharedModelPath('stories260K', 'tok512.bin'), port: 0 }),
  );
  t.after(async () => {
    await server.stop(1000);
    fs.rmSync(cache, { recursive: true, force: true });
  });
  await server.ready;
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused' });
  const prompts = ['Once upon a time', 'Tom and his dog', 'The sun was hot and', 'Lily wanted to'];
  const texts = await Promise.all(
    prompts.map(async (prompt) =>
      streamedText(await client.completions.create({ model: 'stories260K', prompt, max_tokens: 120, temperature: 0, stream: true })),
    ),
  );
  assert.ok(texts.every((r) => r.text.length > 0 && (r.finish === 'length' || r.finish === 'stop')));
  await until('the controller has feedback', async () => ((await (await fetch(`${server.url}/exits`)).json()) as { tokens: number }).tokens > 0);
  const exits = (await (await fetch(`${server.url}/exits`)).json()) as {
    enabled: boolean;
    accuracy: number;
    ramps: { layer: number; threshold: number }[];
    log: unknown[];
  };
  assert.equal(exits.enabled, true);
  assert.equal(exits.accuracy, 0.99);
  assert.ok(exits.log.length > 0, 'the start-up activation is logged');
  for (const ramp of exits.ramps) assert.ok(ramp.layer >= 0 && ramp.layer < 4 && ramp.threshold >= 0);
  assert.ok(!Number.isNaN(await metric(server.url, 'offramp:exit_windowed_agreement')));
  // Both read the engine's sampled state, and a new sample (a ramp dropped by the last records) may land between
  // two reads: the gauge must come to show what /exits shows.
  const activeRamps = async () => ((await (await fetch(`${server.url}/exits`)).json()) as { ramps: unknown[] }).ramps.length;
  await until('the gauge counts the ramps /exits shows', async () => (await metric(server.url, 'offramp:exit_active_ramps')) === (await activeRamps()));
  // A request may turn exits off for itself: then every token comes from the full model.
  const exact = await client.completions.create({
    model: 'stories260K',
    prompt: 'Once upon a time',
    max_tokens: 252,
    temperature: 0,
    early_exit: false,
  } as OpenAI.CompletionCreateParamsNonStreaming);
  assert.equal('Once upon a time' + exact.choices[0]!.text + '\n', GOLDEN());
  // A seeded request reproduces with exits on (it decodes lossless: ramps draft, the full model verifies): the same text twice, and exits off's text.
  const seeded = (extra: object) =>
    client.completions.create({
      model: 'stories260K',
      prompt: 'Tom and his dog',
      max_tokens: 100,
      temperature: 0.8,
      seed: 7,
      ...extra,
    } as OpenAI.CompletionCreateParamsNonStreaming);
  const [first, second, off] = await Promise.all([seeded({}), seeded({}), seeded({ early_exit: false })]);
  assert.equal(second.choices[0]!.text, first.choices[0]!.text);
  assert.equal(off.choices[0]!.text, first.choices[0]!.text);
});
