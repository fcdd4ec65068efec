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

/**
 * Context options for attention as offramp computes it, in float32.
 *
 * A float32 KV cache: llama.cpp's default F16 cache turns near-ties in
 * greedy text. And no flash attention: with it (node-llama-cpp's default,
 * "auto", turns it on for the CPU), llama.cpp casts each layer's whole F32
 * K and V views (at least 256 cells) to F16 at every step before its F16
 * flash kernel (llama-graph.cpp, build_attn_mha: "if (k->type ==
 * GGML_TYPE_F32) k = ggml_cast(ctx0, k, GGML_TYPE_F16)"). So the F32 cache
 * was attended in F16 anyway, and the casts cost more than half again the
 * rest of a token: on the stories110M shape at one thread, 39 ms of CPU a
 * token against 24 without flash attention (stories260K: 1.9x).
 */
export const FLOAT32_ATTENTION = {
  experimentalKvCacheKeyType: 'F32',
  experimentalKvCacheValueType: 'F32',
  flashAttention: false,
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
