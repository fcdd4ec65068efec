/**
 * Single-stream greedy decoding speed of llama.cpp on a GGUF file, for
 * `npm run bench:decode`'s llama.cpp columns:
 *
 * - node-llama-cpp: llama.cpp's engine through its Node binding (prebuilt
 *   CPU binaries, never built here), a greedy `evaluate` loop over one
 *   context sequence; tokens/s from the first generated token to the last,
 *   as offramp's columns are measured.
 * - llama-bench: llama.cpp's own C benchmark (`-p 0 -n N`: N tokens decoded
 *   one at a time after an empty prompt), when a build folder holding it is
 *   given; see ../shared/peers/README.md to build one (about 10 minutes on
 *   2 cores; never in CI).
 *
 * @module
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { FLOAT32_ATTENTION, loadLlamaCppModel } from './llama-cpp.js';

/** Tokens/s of a greedy decode of `numTokens` after `prompt` (BOS added as the file says), excluding the first token. */
export async function nodeLlamaCppDecode(file: string, prompt: string, threads: number, numTokens: number): Promise<number> {
  const model = await loadLlamaCppModel(file);
  try {
    const promptTokens = model.tokenize(prompt);
    const bos = model.tokens.shouldPrependBosToken && model.tokens.bos !== null ? [model.tokens.bos] : [];
    const contextSize = Math.min(model.trainContextSize, bos.length + promptTokens.length + numTokens + 1);
    const context = await model.createContext({ contextSize, threads, ...FLOAT32_ATTENTION });
    try {
      const sequence = context.getSequence();
      let first = 0;
      let count = 0;
      for await (const _token of sequence.evaluate([...bos, ...promptTokens], { temperature: 0 })) {
        if (count++ === 0) first = performance.now();
        if (count === numTokens) break;
      }
      return ((count - 1) / (performance.now() - first)) * 1000;
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}

const LlamaBenchRowSchema = z.object({ n_gen: z.number(), avg_ts: z.number() });

/** llama-bench's decode tokens/s for `file`, run from the build folder `binDir`; one repetition per call (the caller repeats). */
export function llamaBenchDecode(binDir: string, file: string, threads: number, numTokens: number): number {
  const bin = path.join(binDir, 'llama-bench');
  if (!fs.existsSync(bin)) throw new Error(`no llama-bench in ${binDir}: build it with ../shared/peers/build-llama-cpp.sh (see ../shared/peers/README.md)`);
  const json = execFileSync(bin, ['-m', file, '-t', String(threads), '-p', '0', '-n', String(numTokens), '-r', '1', '-o', 'json'], { encoding: 'utf8' });
  const rows = z.array(LlamaBenchRowSchema).parse(JSON.parse(json));
  const decode = rows.find((r) => r.n_gen === numTokens);
  if (!decode) throw new Error(`llama-bench printed no ${numTokens}-token decode row`);
  return decode.avg_ts;
}
