/**
 * Single-stream greedy decode loops: offramp's engine (engineDecode), and
 * bare loops with no engine around them, over the fused whole-model graph
 * (one call a token) or block by block (one call per block and one for the
 * head, as the engine's calls are when ramps are looked at).
 * bench/decode-variant.ts and bench/decode-profile.ts time them.
 *
 * @module
 */
import { argmax, EXITS_OFF, GREEDY, LocalEngine } from '../src/engine/index.js';
import { KvCache, type Model } from '../src/model/index.js';

export type DecodePath = 'fused' | 'blocks';
export const DECODE_PATHS: readonly DecodePath[] = ['fused', 'blocks'];

/** Decodes `numTokens` greedily after `promptTokens`; tokens/s excluding the first token (the prompt's call). */
export function bareDecode(model: Model, path: DecodePath, promptTokens: number[], numTokens: number): number {
  const { dim, vocabSize } = model.config;
  const context = Math.min(model.config.maxSeqLen, promptTokens.length + numTokens + 1);
  const kv = new KvCache(model.config, 1, context);
  const logits = new Float32Array(vocabSize);
  const pastLengths = new Int32Array(1);
  // Decoding reuses two hidden buffers (their onnxruntime tensors are cached per buffer); a prompt gets its own.
  const decodeBuffers = [new Float32Array(dim), new Float32Array(dim)] as const;
  const step = (tokens: number[], start: number): number => {
    pastLengths[0] = start;
    const rows = { firstSlot: 0, numRows: 1, seqLen: tokens.length, pastLengths };
    const positions = tokens.map((_, i) => start + i);
    if (path === 'fused') {
      model.runFused(model.embed(tokens, positions), rows, kv, logits);
      return argmax(logits);
    }
    let [hidden, next] = tokens.length === 1 ? decodeBuffers : [new Float32Array(tokens.length * dim), new Float32Array(tokens.length * dim)];
    hidden.set(model.embed(tokens, positions));
    for (let layer = 0; layer < model.config.numLayers; layer++) {
      model.runBlock(layer, hidden, next, rows, kv);
      [hidden, next] = [next, hidden];
    }
    model.runHead(tokens.length === 1 ? hidden : hidden.subarray((tokens.length - 1) * dim), 1, logits);
    return argmax(logits);
  };
  let token = step(promptTokens, 0);
  const first = performance.now();
  for (let i = 1; i < numTokens; i++) token = step([token], promptTokens.length + i - 1);
  return ((numTokens - 1) / (performance.now() - first)) * 1000;
}

/** Tokens/s of offramp's engine on `model` (its sessions as loaded), greedy, excluding the first token. */
export async function engineDecode(model: Model, promptTokens: number[], numTokens: number): Promise<number> {
  const maxContext = Math.min(model.config.maxSeqLen, promptTokens.length + numTokens + 1);
  const engine = new LocalEngine(model, { maxRunning: 1, maxStepTokens: maxContext, maxContext, earlyExit: EXITS_OFF });
  let first = 0;
  let count = 0;
  const request = { id: 'bench', promptTokens, sampling: GREEDY, maxTokens: numTokens, stop: [], earlyExit: 'off' as const };
  for await (const event of engine.generate(request)) {
    if (event.type === 'error') throw new Error(event.message);
    if (event.type !== 'token') continue;
    if (count++ === 0) first = performance.now();
  }
  return ((count - 1) / (performance.now() - first)) * 1000;
}
