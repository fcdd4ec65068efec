/**
 * In process, LocalEngine streams as it decodes: a reader of `generate`
 * sees each step's token before the next step runs (the host gives readers
 * the microtask turns they need between steps), so in-process latency
 * figures (bench/exits.ts) time tokens as they are made.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EXITS_OFF, GREEDY, LocalEngine } from '../src/engine/index.js';
import { importLlama2c } from '../src/model/llama2c.js';
import { compileAndLoad, PROMPT_TOKENS } from './helpers.js';
import { requireSharedModels, sharedModelPath } from './shared.js';

test("a reader of generate sees each step's token before the next step runs", async (t) => {
  if (!requireSharedModels(t)) return;
  const model = await compileAndLoad(t, importLlama2c(sharedModelPath('stories260K', 'stories260K.bin'), sharedModelPath('stories260K', 'tok512.bin')), {
    fused: true,
  });
  const engine = new LocalEngine(model, { maxRunning: 1, maxStepTokens: 512, maxContext: 128, earlyExit: EXITS_OFF });
  let steps = 0;
  const step = engine.engine.step.bind(engine.engine);
  engine.engine.step = () => {
    steps++;
    step();
  };
  const stepsWhenRead: number[] = [];
  const request = { id: 'r', promptTokens: PROMPT_TOKENS, sampling: GREEDY, maxTokens: 40, stop: [], earlyExit: 'off' as const };
  for await (const event of engine.generate(request)) if (event.type === 'token') stepsWhenRead.push(steps);
  // Greedy with exits off: the first step runs the prompt and makes the first token, each later step one more.
  assert.equal(stepsWhenRead.length, 40);
  assert.deepEqual(
    stepsWhenRead,
    stepsWhenRead.map((_, i) => i + 1),
  );
});
