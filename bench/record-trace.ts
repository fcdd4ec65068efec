/**
 * Records an exit trace (src/exits/trace.ts) from a model: every candidate
 * ramp's confidence and argmax, and the full model's argmax, for every token
 * generated greedily from the prompt set's story openings. The controller's
 * tests replay such traces without a model.
 *
 *   npm run build && node dist/bench/record-trace.js [--model M] [--max-tokens 128] [--out test/fixtures/stories260K.trace.jsonl]
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { EXITS_OFF, GREEDY, LocalEngine } from '../src/engine/index.js';
import { CONFIDENCE_KINDS, TraceWriter } from '../src/exits/index.js';
import { z } from 'zod';
import { KvCache, Model, resolveModel } from '../src/model/index.js';
import { PROJECT_ROOT } from '../src/util/index.js';
import { storyPrompts } from './prompts.js';

const SHARED = path.join(PROJECT_ROOT, '..', 'shared', 'models', 'stories260K');
const { values } = parseArgs({
  options: {
    model: { type: 'string', default: path.join(SHARED, 'stories260K.bin') },
    tokenizer: { type: 'string', default: path.join(SHARED, 'tok512.bin') },
    'max-tokens': { type: 'string', default: '128' },
    confidence: { type: 'string', default: 'margin' },
    out: { type: 'string', default: path.join(PROJECT_ROOT, 'test', 'fixtures', 'stories260K.trace.jsonl') },
  },
});

const confidence = z.enum(CONFIDENCE_KINDS).parse(values.confidence);
const model = await Model.load(await resolveModel(values.model, { tokenizer: values.tokenizer }), { device: 'cpu', threads: 1 });

/** Milliseconds of one block call and one ramp call (trained, or the plain head) for a single decoding row. */
function measureCosts(): { blockMs: number[]; rampMs: number } {
  const { dim, numLayers } = model.config;
  const kv = new KvCache(model.config, 1, 64);
  const input = new Float32Array(dim);
  const output = new Float32Array(dim);
  const logits = new Float32Array(model.rampWidth);
  const time = (fn: () => void) => {
    for (let i = 0; i < 50; i++) fn();
    const started = performance.now();
    for (let i = 0; i < 500; i++) fn();
    return (performance.now() - started) / 500;
  };
  const blockMs = Array.from({ length: numLayers }, (_, layer) =>
    time(() => model.runBlock(layer, input, output, { firstSlot: 0, numRows: 1, seqLen: 1, pastLengths: [10] }, kv)),
  );
  return { blockMs, rampMs: time(() => model.runRamp(model.manifest.rampCandidates[0]!, input, 1, logits)) };
}

const writer = new TraceWriter(values.out, {
  format: 'offramp-exit-trace/1',
  model: model.name,
  numLayers: model.config.numLayers,
  candidateLayers: model.manifest.rampCandidates,
  costs: measureCosts(),
  confidence,
});
const engine = new LocalEngine(model, { maxRunning: 1, maxStepTokens: 512, maxContext: model.config.maxSeqLen, earlyExit: { ...EXITS_OFF, confidence } });
let count = 0;
for (const prompt of storyPrompts()) {
  const promptTokens = model.tokenizer.encode(prompt);
  const request = {
    id: 'trace',
    promptTokens,
    sampling: GREEDY,
    maxTokens: Number(values['max-tokens']),
    stop: [],
    earlyExit: 'off' as const,
    exitOverride: { kind: 'trace' as const },
  };
  for await (const event of engine.generate(request)) {
    if (event.type === 'error') throw new Error(event.message);
    if (event.type === 'token' && event.trace) {
      // Four decimals keep the fixture small and lose nothing a threshold step (0.001) can see.
      // Greedy: the token each ramp would stream is its argmax, as the fixture format names it.
      const ramps = event.trace.ramps.map((r) => ({ layer: r.layer, argmax: r.token, confidence: Math.round(r.confidence * 1e4) / 1e4 }));
      writer.write({ ramps, final: event.trace.finalToken });
      count++;
    }
  }
}
writer.close();
process.stderr.write(`record-trace: ${count} tokens to ${values.out}\n`);
