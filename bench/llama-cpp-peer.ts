/**
 * The llama.cpp peer: node-llama-cpp (llama.cpp's engine through its Node
 * binding, prebuilt CPU binaries, never built here: see llama-cpp.ts)
 * generating from the same weights, exported by `exportGguf`, the way a
 * Node user serves several clients: in process, one `LlamaContext` with
 * `sequences` context sequences, one `LlamaCompletion` per request on a
 * sequence of its own.
 *
 * Concurrency: up to `sequences` requests run at once; the others wait in a
 * FIFO queue. node-llama-cpp batches the running sequences' evaluations:
 * each sequence queues its next tokens, and the context decodes everything
 * queued in one llama_decode on the next event-loop turn (at once when every
 * sequence has queued), so concurrent requests share each step's pass over
 * the weights as offramp's batched steps do. A sequence whose sampled token
 * comes back a turn late joins the next step's batch instead.
 *
 * Timing, as for the transformers.js peer (peer.ts, in-process.ts):
 * `onToken` fires once per generated token; its timestamps are the chunks.
 * TTFT runs from the request's due time (queueing included); tokenization
 * is inside the clock. Each request gets a fresh context sequence, so none
 * reuses an earlier one's prompt (offramp's engine does not cache prefixes
 * either).
 *
 * @module
 */
import { LlamaCompletion, type LlamaContext, type LlamaContextSequence, type LlamaModel, type Token } from 'node-llama-cpp';
import { renderPlainChat } from '../src/server/index.js';
import { RequestSlots, timedGeneration, type Generated } from './in-process.js';
import { FLOAT32_ATTENTION, loadLlamaCppModel } from './llama-cpp.js';
import { failedRecord, type RequestRecord, type ServerSnapshot, type Target } from './target.js';
import type { Work } from './workload.js';

export class LlamaCppTarget implements Target {
  /** One slot per context sequence: a request runs once a sequence is free. */
  private readonly slots: RequestSlots;

  private constructor(
    readonly id: string,
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
  ) {
    this.slots = new RequestSlots(context.totalSequences);
  }

  /**
   * Loads the GGUF `file` with one context of `sequences` sequences, each of
   * `contextSize` tokens, and `threads` CPU threads (0: llama.cpp's default).
   */
  static async load(id: string, file: string, contextSize: number, threads: number, sequences = 1): Promise<LlamaCppTarget> {
    const model = await loadLlamaCppModel(file);
    try {
      // llama.cpp's default (every core) spins its threads: on a shared 2-core machine that took 50 s for 20 tokens.
      const context = await model.createContext({ contextSize, sequences, ...FLOAT32_ATTENTION, ...(threads > 0 ? { threads } : {}) });
      return new LlamaCppTarget(id, model, context);
    } catch (error) {
      await model.dispose();
      throw error;
    }
  }

  /** How many requests run at once (the context's sequences). */
  get sequences(): number {
    return this.context.totalSequences;
  }

  send(work: Work, startMs: number, maxTokens: number, temperature: number): Promise<RequestRecord> {
    return this.slots.run(async () => {
      // A fresh sequence per request: nothing of an earlier request's prompt is reused.
      let sequence: LlamaContextSequence;
      try {
        sequence = this.context.getSequence();
      } catch (error) {
        return failedRecord(work, startMs, (error as Error).message);
      }
      try {
        return await timedGeneration(work, startMs, (onTokens) => this.generate(sequence, work, maxTokens, temperature, onTokens));
      } finally {
        // Awaited inside the slot, after the record's endMs: the context takes the sequence's id back only once
        // disposal gets its lock (after the decode in flight), and the request this slot goes to next needs it.
        await sequence.dispose();
      }
    });
  }

  /** Story text as is; chat in offramp's plain rendering, since the bench's models have no chat template. */
  private promptOf(work: Work): string {
    const { prompt } = work;
    return prompt.kind === 'story' ? prompt.prompt : renderPlainChat(prompt.messages);
  }

  private async generate(
    sequence: LlamaContextSequence,
    work: Work,
    maxTokens: number,
    temperature: number,
    onTokens: (numTokens: number) => void,
  ): Promise<Generated> {
    const completion = new LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
    try {
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
          onTokens(tokens.length);
        },
      });
      // The completion's own text drops the first token's leading space (" named" after a prompt
      // comes back as "named"); detokenizing after the prompt's tokens keeps it.
      return { text: this.model.detokenize(generated, false, promptTokens), finishReason: metadata.stopReason === 'eogToken' ? 'stop' : 'length' };
    } finally {
      completion.dispose({ disposeSequence: false });
    }
  }

  async snapshot(): Promise<ServerSnapshot | null> {
    return null;
  }

  async close(): Promise<void> {
    await this.slots.idle();
    await this.context.dispose();
    await this.model.dispose();
  }
}
