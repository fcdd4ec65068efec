/**
 * The peer: transformers.js generating from the same weights, exported by
 * `exportHfOnnx`, the way a Node user runs it: in process, no HTTP, one
 * `generate()` at a time with a `TextStreamer`.
 *
 * Timing: the streamer's `token_callback_function` fires once per generated
 * token, synchronously inside generate()'s loop, right after the token is
 * sampled; its timestamps are the peer's "chunks" (one token each). TTFT
 * runs from the request's due time (queueing included) to the first one;
 * tokenization and the streamer's own text decoding are inside the clock, as
 * they are for a server. The model's EOS ends generation but is not counted
 * (offramp does not count it either).
 *
 * Concurrency: the peer serves one request at a time. Requests the load
 * generator sends meanwhile wait in a FIFO queue, so at concurrency > 1 (and
 * under Poisson arrivals) its numbers are those of sequential serving: the
 * throughput of one stream, with queueing in TTFT and e2e.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  AutoModelForCausalLM,
  AutoTokenizer,
  env,
  random,
  Tensor,
  TextStreamer,
  type PreTrainedModel,
  type PreTrainedTokenizer,
} from '@huggingface/transformers';
import { renderPlainChat } from '../src/server/index.js';
import { RequestSlots, timedGeneration, type Generated } from './in-process.js';
import type { RequestRecord, ServerSnapshot, Target } from './target.js';
import type { Work } from './workload.js';

// Everything comes from the exported folder; never reach for the hub.
env.allowRemoteModels = false;

/** Seeds transformers.js's global PRNG (sampling draws from it). The library types `random.seed` as `any`; it is bound `Random#seed`. */
const seedRandom = random.seed as InstanceType<typeof random.Random>['seed'];

export class PeerTarget implements Target {
  /** One slot: each request starts when the one before it has ended. */
  private readonly slots = new RequestSlots(1);

  private constructor(
    readonly id: string,
    private readonly model: PreTrainedModel,
    private readonly tokenizer: PreTrainedTokenizer,
    private readonly eosIds: Set<bigint>,
  ) {}

  /** Loads the exported folder `dir` with `threads` onnxruntime threads (0: its default). */
  static async load(id: string, dir: string, threads: number): Promise<PeerTarget> {
    const sessionOptions = threads > 0 ? { intraOpNumThreads: threads, interOpNumThreads: 1 } : {};
    const model = await AutoModelForCausalLM.from_pretrained(dir, { dtype: 'fp32', session_options: sessionOptions });
    const tokenizer = await AutoTokenizer.from_pretrained(dir);
    const generation = JSON.parse(fs.readFileSync(path.join(dir, 'generation_config.json'), 'utf8')) as { eos_token_id?: number | number[] | null };
    const eos = generation.eos_token_id ?? [];
    return new PeerTarget(id, model, tokenizer, new Set((Array.isArray(eos) ? eos : [eos]).map(BigInt)));
  }

  /** Prompt ids: story text with BOS; chat through the tokenizer's template, or offramp's plain one when it has none (stories). */
  private encode(work: Work): number[] {
    const { prompt } = work;
    if (prompt.kind === 'story') return this.tokenizer.encode(prompt.prompt);
    const template: unknown = this.tokenizer.chat_template;
    if (typeof template === 'string') {
      // The template writes the special tokens itself (offramp's ChatPrompter does the same).
      const text = this.tokenizer.apply_chat_template(prompt.messages, { add_generation_prompt: true, tokenize: false });
      return this.tokenizer.encode(String(text), { add_special_tokens: false });
    }
    return this.tokenizer.encode(renderPlainChat(prompt.messages));
  }

  send(work: Work, startMs: number, maxTokens: number, temperature: number): Promise<RequestRecord> {
    return this.slots.run(() => timedGeneration(work, startMs, (onTokens) => this.generate(work, maxTokens, temperature, onTokens)));
  }

  private async generate(work: Work, maxTokens: number, temperature: number, onTokens: (numTokens: number) => void): Promise<Generated> {
    let text = '';
    let eos = false;
    const ids = this.encode(work);
    const streamer = new TextStreamer(this.tokenizer, {
      skip_prompt: true,
      skip_special_tokens: true,
      callback_function: (piece: string) => void (text += piece),
      token_callback_function: (tokens: bigint[]) => {
        if (tokens.length === 1 && this.eosIds.has(tokens[0]!)) {
          eos = true;
          return;
        }
        onTokens(tokens.length);
      },
    });
    if (temperature > 0) seedRandom(work.seed);
    await this.model.generate({
      input_ids: new Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]),
      attention_mask: new Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length]),
      max_new_tokens: maxTokens,
      do_sample: temperature > 0,
      temperature: temperature > 0 ? temperature : 1,
      top_k: 0,
      streamer,
    });
    return { text, finishReason: eos ? 'stop' : 'length' };
  }

  async snapshot(): Promise<ServerSnapshot | null> {
    return null;
  }

  async close(): Promise<void> {
    await this.slots.idle();
    await this.model.dispose();
  }
}
