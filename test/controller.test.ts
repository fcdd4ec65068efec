/**
 * The exit controller end to end with nothing forced: stories260K with its
 * shipped trained ramps, greedy, one stream, every story opening of the
 * prompt set once, the controller opening and tuning ramps from the full
 * model's verdicts as it does in the server. Every streamed token is then
 * re-checked against one full forward pass over the same text.
 *
 * Two settings keep the controller's speed judgement from hiding its
 * accuracy behaviour, without switching any of it off:
 * - The model runs without its fused graph, as every model over 64 MiB
 *   does: a span is composed of the per-block calls, so reading a ramp
 *   adds no call but the ramp's own (Costs.splitMs is 0) and an exit skips
 *   the deep blocks' calls. With the fused graph, a step that reads a ramp
 *   makes two calls where the fused step makes one, and on this tiny model
 *   a call's fixed cost is most of a step: the controller charges ramps for
 *   that, rightly, and the share it exits then turns on timings near the
 *   edge of its judgements (on one machine, per pass of the prompts and
 *   from run to run, 25-45% of tokens at 0.9 and 0-23% at 0.99).
 * - The ramp budget is 1 (ramps may cost up to a whole step), so maxRamps,
 *   not a count derived from timings, caps the ramps. At the server's 0.2
 *   the budget comes to 1.1-1.2 ramps on stories260K, and a ramp timed
 *   10-20% dearer leaves none.
 * Ramps are still tuned and kept by measured time: one that does not pay
 * is dropped here as anywhere (at 0.9, those after blocks 2, 3 and 4).
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { argmax, EXITS_OFF, GREEDY, LocalEngine, type EarlyExitOptions, type GenerateRequest } from '../src/engine/index.js';
import { importLlama2c } from '../src/model/llama2c.js';
import { storyPrompts, type Model } from '../src/model/index.js';
import { compiledForward, compileAndLoad } from './helpers.js';
import { requireSharedModels, sharedModelPath } from './shared.js';

const MAX_TOKENS = 128;

/** What one request streamed: its tokens, where each left the model, and whether it ended on an end-of-text token. */
interface Streamed {
  tokens: number[];
  exitLayers: (number | null)[];
  endedOnEos: boolean;
}

/** One pass over the prompt set under the controller, and the re-check of every token it streamed. */
interface ControllerRun {
  /** Tokens decoded after each request's first (which the prompt pass decides and no ramp reads). */
  decoded: number;
  /** Of them, streamed from a ramp. */
  exited: number;
  /** Of them, not the full model's argmax on the same text (the re-check). */
  misses: number;
  /** Requests that ended on an end-of-text token, which the controller judged but the stream never shows. */
  endedOnEos: number;
  /** The controller's own count: tokens it got a verdict for, and misses among them. */
  controllerTokens: number;
  controllerMisses: number;
}

async function loadStories(t: TestContext): Promise<Model> {
  const ckpt = importLlama2c(sharedModelPath('stories260K', 'stories260K.bin'), sharedModelPath('stories260K', 'tok512.bin'));
  const model = await compileAndLoad(t, ckpt, { trainRamps: 'auto', fused: false });
  assert.ok(model.hasTrainedRamps, 'the shipped ramps match the shared checkpoint');
  return model;
}

async function stream(engine: LocalEngine, request: GenerateRequest): Promise<Streamed> {
  const streamed: Streamed = { tokens: [], exitLayers: [], endedOnEos: false };
  for await (const event of engine.generate(request)) {
    if (event.type === 'error') throw new Error(event.message);
    if (event.type === 'token') {
      streamed.tokens.push(...event.tokenIds);
      streamed.exitLayers.push(event.exitLayer);
    }
    // No stop strings: a request that stops ended on end of text.
    if (event.type === 'finished') streamed.endedOnEos = event.finishReason === 'stop';
  }
  return streamed;
}

/** Greedy decoding of every story opening, one at a time (an exit saves time only alone in its step), under the controller at `accuracy`. */
async function runController(model: Model, accuracy: number): Promise<ControllerRun> {
  const earlyExit: EarlyExitOptions = { ...EXITS_OFF, enabled: true, accuracy, rampBudget: 1 };
  const engine = new LocalEngine(model, { maxRunning: 1, maxStepTokens: 512, maxContext: model.config.maxSeqLen, earlyExit });
  const run: ControllerRun = { decoded: 0, exited: 0, misses: 0, endedOnEos: 0, controllerTokens: 0, controllerMisses: 0 };
  const { vocabSize } = model.config;
  for (const [i, prompt] of storyPrompts().entries()) {
    const promptTokens = model.tokenizer.encode(prompt);
    const request: GenerateRequest = { id: `c${i}`, promptTokens, sampling: GREEDY, maxTokens: MAX_TOKENS, stop: [], earlyExit: 'on' };
    const { tokens, exitLayers, endedOnEos } = await stream(engine, request);
    // The re-check: the full model's argmax at each position of the streamed text, from one pass over it.
    const { logits } = compiledForward(model, [...promptTokens, ...tokens]);
    for (let k = 1; k < tokens.length; k++) {
      const row = promptTokens.length + k - 1; // the position that predicts token k
      run.decoded++;
      if (exitLayers[k] !== null) run.exited++;
      if (argmax(logits.subarray(row * vocabSize, (row + 1) * vocabSize)) !== tokens[k]) run.misses++;
    }
    if (endedOnEos) run.endedOnEos++;
  }
  const state = engine.engine.controller!.state();
  run.controllerTokens = state.tokens;
  run.controllerMisses = Math.round(state.tokens * (1 - (state.cumulativeAgreement ?? 1)));
  return run;
}

/**
 * The lowest agreement over `n` tokens that still fits `target`: three
 * binomial standard deviations below it, where about one run in 700 would
 * fall by chance were tokens independent draws at exactly the target. They
 * are not (a looping text repeats its misses; the controller reacts to
 * them), so this sizes the noise rather than bounds it; the runs measured
 * sit well above it.
 */
function agreementFloor(target: number, n: number): number {
  return target - 3 * Math.sqrt((target * (1 - target)) / n);
}

/** The re-check and the controller count the same misses, but for an exited end-of-text token the stream never shows. */
function assertCountsAgree(run: ControllerRun): void {
  assert.equal(run.controllerTokens, run.decoded + run.endedOnEos, 'every decoded token, end of text included, got one verdict');
  assert.ok(
    Math.abs(run.controllerMisses - run.misses) <= run.endedOnEos,
    `the controller counted ${run.controllerMisses} misses, the re-check ${run.misses} (${run.endedOnEos} requests ended on end of text)`,
  );
}

const share = (run: ControllerRun) => run.exited / run.decoded;
const agreement = (run: ControllerRun) => 1 - run.misses / run.decoded;
const summary = (run: ControllerRun) =>
  `${run.exited} of ${run.decoded} tokens from ramps (${(100 * share(run)).toFixed(1)}%), agreement ${agreement(run).toFixed(4)} (${run.misses} misses)`;

test('at accuracy 0.9 the controller, nothing forced, streams a substantial share of tokens from ramps and holds 0.9', async (t) => {
  if (!requireSharedModels(t)) return;
  const model = await loadStories(t);
  const run = await runController(model, 0.9);
  t.diagnostic(summary(run));
  // Measured with the ramps shipped on 2026-12-06 (calibrated on stories the
  // model samples from nothing, their context counting what the text put
  // after its last tokens): 69.2-73.8% in six runs (agreement 0.919-0.936);
  // 68.9% (0.928) once their MLP was gated and started from the next block's
  // feed-forward layer; 55.4% with the ramps before. The ramp after block 1 carried most of it
  // then; left the only ramp (as the server's budget leaves it), it exited
  // 40-45%. The floor is half of that, so a machine whose timings drop the
  // other ramps sooner still passes, while a controller that keeps its ramps
  // shut over most of the run does not.
  assert.ok(share(run) >= 0.22, summary(run));
  assert.ok(agreement(run) >= agreementFloor(0.9, run.decoded), `${summary(run)}; the floor is ${agreementFloor(0.9, run.decoded).toFixed(4)}`);
  assertCountsAgree(run);
});

test('at accuracy 0.99 the same ramps exit only what 0.99 allows: agreement holds where 0.9 thresholds would break it', async (t) => {
  if (!requireSharedModels(t)) return;
  const model = await loadStories(t);
  const run = await runController(model, 0.99);
  t.diagnostic(summary(run));
  // Measured: 7-34% of about 2,235 tokens from ramps (the ramp after
  // block 1 pays only narrowly at this target, so timings decide how long
  // it stays), agreement 0.989-0.996 (9-24 misses) against a floor of
  // 0.984 (with the ramps before: 20-38%, 0.991-0.996). The contrast with
  // the test above: at 0.9 the controller lets 6-8% of tokens miss
  // (agreement 0.919-0.936), and one that ignored the target and exited as
  // it does there would fail this floor by a wide margin.
  assert.ok(agreement(run) >= agreementFloor(0.99, run.decoded), `${summary(run)}; the floor is ${agreementFloor(0.99, run.decoded).toFixed(4)}`);
  assertCountsAgree(run);
});
