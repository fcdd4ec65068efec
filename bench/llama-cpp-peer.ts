/**
 * The llama.cpp peer: node-llama-cpp (llama.cpp's engine through its Node
 * binding, prebuilt CPU binaries) generating from the same weights,
 * exported by `exportGguf`, the way a Node user runs it: in process, one
 * `LlamaCompletion` at a time on one context sequence.
 *
 * Never builds or downloads: `getLlama` runs with `build: 'never'` and no
 * GPU, so a machine without the prebuilt binary fails to load the peer
 * instead of compiling llama.cpp.
 *
 * Timing, as for the transformers.js peer (peer.ts): `onToken` fires once
 * per generated token; its timestamps are the chunks. TTFT runs from the
 * request's due time (queueing included); tokenization is inside the clock.
 * Each request gets a fresh context sequence, so none reuses an earlier
 * one's prompt (offramp's engine does not cache prefixes either).
 * Like the other peer it serves one request at a time, in a FIFO queue.
 *
 * @module
 */
import { getLlama, LlamaCompletion, LlamaLogLevel, type LlamaContext, type LlamaModel, type Token } from 'node-llama-cpp';
import { renderPlainChat } from '../src/server/index.js';
import { failedRecord, type RequestRecord, type ServerSnapshot, type Target } from './target.js';
import type { Work } from './workload.js';

export class LlamaCppTarget implements Target {
  /** The tail of the FIFO queue: each request starts when the one before it has ended. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly id: string,
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
  ) {}

  /** Loads the GGUF `file` with a context of `contextSize` tokens and `threads` CPU threads (0: llama.cpp's default). */
  static async load(id: string, file: string, contextSize: number, threads: number): Promise<LlamaCppTarget> {
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
    const model = await llama.loadModel({ modelPath: file });
    // llama.cpp's default (every core) spins its threads: on a shared 2-core machine that took 50 s for 20 tokens.
    // A float32 KV cache, as offramp keeps (llama.cpp's default F16 cache turns near-ties in greedy text).
    const kvCache = { experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' } as const;
    const context = await model.createContext({ contextSize, sequences: 1, ...kvCache, ...(threads > 0 ? { threads } : {}) });
    return new LlamaCppTarget(id, model, context);
  }

  send(work: Work, startMs: number, maxTokens: number, temperature: number): Promise<RequestRecord> {
    const run = this.queue.then(() => this.generate(work, startMs, maxTokens, temperature));
    this.queue = run;
    return run;
  }

  /** Story text as is; chat in offramp's plain rendering, since the bench's models have no chat template. */
  private promptOf(work: Work): string {
    const { prompt } = work;
    return prompt.kind === 'story' ? prompt.prompt : renderPlainChat(prompt.messages);
  }

  private async generate(work: Work, startMs: number, maxTokens: number, temperature: number): Promise<RequestRecord> {
    const record: RequestRecord = { ...failedRecord(work, startMs, ''), error: null, tokenSource: 'chunks' };
    // A fresh sequence per request: nothing of an earlier request's prompt is reused.
    const sequence = this.context.getSequence();
    try {
      const completion = new LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
      // Tokens, not text: given text, LlamaCompletion splits a leading word its own way ("The" as
      // "▁T" + "he" on stories260K, not "▁The" as llama.cpp's tokenizer and offramp do), which
      // changes the continuation. Given tokens, it still adds BOS as the GGUF says.
      const promptTokens = this.model.tokenize(this.promptOf(work));
      const generated: Token[] = [];
      const { metadata } = await completion.generateCompletionWithMeta(promptTokens, {
        maxTokens,
        temperature,
        seed: work.seed,
        // Plain sampling, as the other variants do: no repeat penalty, no top-k cut.
        repeatPenalty: false,
        topK: 0,
        onToken: (tokens) => {
          generated.push(...tokens);
          const now = performance.now();
          for (let i = 0; i < tokens.length; i++) {
            record.chunkMs.push(now);
            record.chunkExit.push(null);
          }
        },
      });
      completion.dispose({ disposeSequence: false });
      // The completion's own text drops the first token's leading space (" named" after a prompt
      // comes back as "named"); detokenizing after the prompt's tokens keeps it.
      record.text = this.model.detokenize(generated, false, promptTokens);
      record.finishReason = metadata.stopReason === 'eogToken' ? 'stop' : 'length';
    } catch (error) {
      return { ...record, endMs: performance.now(), error: (error as Error).message };
    } finally {
      // Not awaited: disposal is not part of the request's time (endMs is read below).
      void sequence.dispose();
    }
    record.endMs = performance.now();
    record.outputTokens = record.chunkMs.length;
    return record;
  }

  async snapshot(): Promise<ServerSnapshot | null> {
    return null;
  }

  async close(): Promise<void> {
    await this.queue.catch(() => {});
    await this.context.dispose();
    await this.model.dispose();
  }
}
