/**
 * Single-stream greedy decoding speed of llama.cpp on a GGUF file, for
 * `npm run bench:decode`'s llama.cpp columns:
 *
 * - node-llama-cpp: llama.cpp's engine through its Node binding (prebuilt
 *   CPU binaries, never built here), a greedy `evaluate` loop over one
 *   context sequence; tokens/s from the first generated token to the last,
 *   as offramp's columns are measured. Each measurement runs in a Node
 *   process of its own (node-llama-cpp-decode.ts), as a user of either
 *   library would run it: once node-llama-cpp had decoded in the bench's
 *   process, offramp's engine there decoded stories110M int8 on two threads
 *   at 0.85 of the bare fused loop instead of 0.93 (six alternating runs each).
 * - llama-bench: llama.cpp's own C benchmark (`-p 0 -n N`: N tokens decoded
 *   one at a time after an empty prompt), when built: in the folder named,
 *   or in /tmp/llama.cpp-peer where ../shared/peers/README.md builds it
 *   (about 10 minutes on 2 cores; never in CI).
 *
 * @module
 */
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { z } from 'zod';
import { FLOAT32_ATTENTION, loadLlamaCppModel } from './llama-cpp.js';
import { combinedRate } from './stats.js';

const NodeLlamaCppResultSchema = z.object({ tokensPerSecond: z.number() });

/** What node-llama-cpp-decode.ts prints: the result as the last line of its output. */
export function printNodeLlamaCppResult(tokensPerSecond: number): void {
  process.stdout.write(`\n${JSON.stringify({ tokensPerSecond })}\n`);
}

/** Tokens/s of `requests` greedy decodes of `numTokens` after `prompt` through node-llama-cpp, over all of them, in a Node process of its own. */
export async function nodeLlamaCppDecode(file: string, prompt: string, threads: number, numTokens: number, requests = 1): Promise<number> {
  const child = fileURLToPath(new URL('./node-llama-cpp-decode.js', import.meta.url));
  const args = [child, file, prompt, String(threads), String(numTokens), String(requests)];
  const { stdout } = await promisify(execFile)(process.execPath, args, { encoding: 'utf8' });
  const last = stdout.trim().split('\n').at(-1) ?? '';
  return NodeLlamaCppResultSchema.parse(JSON.parse(last)).tokensPerSecond;
}

/**
 * Tokens/s of `requests` greedy decodes of `numTokens` after `prompt` (BOS
 * added as the file says), each excluding its first token, over all of
 * them, in this process; each decode in a fresh context.
 */
export async function nodeLlamaCppDecodeHere(file: string, prompt: string, threads: number, numTokens: number, requests = 1): Promise<number> {
  const model = await loadLlamaCppModel(file);
  try {
    const promptTokens = model.tokenize(prompt);
    const bos = model.tokens.shouldPrependBosToken && model.tokens.bos !== null ? [model.tokens.bos] : [];
    const contextSize = Math.min(model.trainContextSize, bos.length + promptTokens.length + numTokens + 1);
    const rates: number[] = [];
    for (let r = 0; r < requests; r++) {
      const context = await model.createContext({ contextSize, threads, ...FLOAT32_ATTENTION });
      try {
        const sequence = context.getSequence();
        let first = 0;
        let count = 0;
        for await (const _token of sequence.evaluate([...bos, ...promptTokens], { temperature: 0 })) {
          if (count++ === 0) first = performance.now();
          if (count === numTokens) break;
        }
        rates.push(((count - 1) / (performance.now() - first)) * 1000);
      } finally {
        await context.dispose();
      }
    }
    return combinedRate(rates);
  } finally {
    await model.dispose();
  }
}

/** The OUT folder ../shared/peers/README.md builds llama.cpp's tools into; looked in when no folder is named. */
export const DEFAULT_LLAMA_CPP_OUT = '/tmp/llama.cpp-peer';

/**
 * The folder holding llama-bench: `dir` itself, or the build folder inside it
 * when `dir` is build-llama-cpp.sh's OUT (`llama.cpp/build/bin`); without
 * `dir`, the same inside DEFAULT_LLAMA_CPP_OUT, or null when nothing is built
 * there. A named folder without llama-bench is an error.
 */
export function findLlamaBench(dir: string | undefined): string | null {
  const candidates = (base: string) => [base, path.join(base, 'llama.cpp', 'build', 'bin')];
  const found = candidates(dir ?? DEFAULT_LLAMA_CPP_OUT).find((d) => fs.existsSync(path.join(d, 'llama-bench')));
  if (found || dir === undefined) return found ?? null;
  throw new Error(
    `no llama-bench in ${dir} or ${candidates(dir)[1]}: build it with \`../shared/peers/build-llama-cpp.sh ${dir}\` (about 10 minutes on 2 cores; see ../shared/peers/README.md), or leave the column out by naming no folder`,
  );
}

const LlamaBenchRowSchema = z.object({ n_gen: z.number(), samples_ns: z.array(z.number()).min(1) });

/**
 * llama-bench's decode tokens/s for `file`, run from the folder `binDir`
 * (findLlamaBench), over `requests` repetitions of its decode (`-r`; its
 * own warm-up run before them is not timed). Flash
 * attention off, as in the node-llama-cpp column (FLOAT32_ATTENTION); the KV
 * cache stays F16, since llama-bench takes no F32 cache type (`-ctk` knows
 * f16, bf16 and quantized types only). At these lengths the cache is a small
 * part of a token's memory traffic (about 2% on the stories110M shape).
 * `mmap` false reads the weights into memory of its own (`--load-mode
 * none`, which replaced `--mmap 0`; the tables keep the old name) instead
 * of mapping the file (`--load-mode mmap`): faster on this machine (its
 * allocations get huge pages where the process asks for them; file pages
 * do not).
 */
export function llamaBenchDecode(binDir: string, file: string, threads: number, numTokens: number, { mmap = true, requests = 1 } = {}): number {
  const bin = path.join(binDir, 'llama-bench');
  const args = ['-m', file, '-t', String(threads), '-p', '0', '-n', String(numTokens), '-r', String(requests)];
  args.push('-fa', 'off', '-lm', mmap ? 'mmap' : 'none', '-o', 'json');
  const json = execFileSync(bin, args, { encoding: 'utf8' });
  const rows = z.array(LlamaBenchRowSchema).parse(JSON.parse(json));
  const decode = rows.find((r) => r.n_gen === numTokens);
  if (!decode) throw new Error(`llama-bench printed no ${numTokens}-token decode row`);
  return (decode.n_gen * decode.samples_ns.length * 1e9) / decode.samples_ns.reduce((s, ns) => s + ns, 0);
}
