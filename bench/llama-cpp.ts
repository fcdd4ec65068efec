/**
 * node-llama-cpp as both of the bench's llama.cpp measures load it: the
 * peer (llama-cpp-peer.ts) and the decode column (llama-cpp-decode.ts).
 *
 * Never builds or downloads: `getLlama` runs with `build: 'never'` and no
 * GPU, so a machine without the prebuilt binary fails to load the peer
 * instead of compiling llama.cpp.
 *
 * @module
 */
import { getLlama, LlamaLogLevel, type LlamaModel } from 'node-llama-cpp';

/** Context options for attention as offramp computes it: a float32 KV cache (llama.cpp's default F16 cache turns near-ties in greedy text). */
export const FLOAT32_ATTENTION = {
  experimentalKvCacheKeyType: 'F32',
  experimentalKvCacheValueType: 'F32',
} as const;

/** node-llama-cpp has no prebuilt llama.cpp binary that loads on this machine (and the bench builds none). */
export class LlamaCppUnavailableError extends Error {}

/** Loads the GGUF `file` with node-llama-cpp's prebuilt CPU binary (mmapped, as llama.cpp does by default). */
export async function loadLlamaCppModel(file: string): Promise<LlamaModel> {
  let llama;
  try {
    llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
  } catch (error) {
    throw new LlamaCppUnavailableError(
      `node-llama-cpp has no prebuilt llama.cpp binary that loads here (${(error as Error).message}), and the bench never builds one: ` +
        'install the dev dependencies with `npm ci` on linux-x64 (they include @node-llama-cpp/linux-x64), or leave llama.cpp out of the run',
    );
  }
  return await llama.loadModel({ modelPath: file });
}
