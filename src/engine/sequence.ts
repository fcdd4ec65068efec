/**
 * One request's state inside the engine, llama.cpp-slot style: its tokens,
 * how many of them the KV cache holds, its slot, and its random stream.
 *
 * There is no prefill mode: `numComputed` catches up with `tokens.length`,
 * many positions at a time at first, then one per step.
 *
 * @module
 */
import { Rng } from './sampler.js';
import type { FinishReason, GenerateRequest } from './types.js';

export type SequenceState = 'waiting' | 'running' | 'finished';

export class Sequence {
  /** Prompt then generated tokens. */
  readonly tokens: number[];
  /** Positions whose keys and values are in the cache. */
  numComputed = 0;
  slot = -1;
  state: SequenceState = 'waiting';
  finishReason: FinishReason | null = null;
  readonly rng: Rng;
  /** Set by abort(); honoured at the next step boundary. */
  abortRequested = false;

  constructor(readonly request: GenerateRequest) {
    this.tokens = [...request.promptTokens];
    this.rng = new Rng(request.seed ?? Rng.randomSeed());
  }

  get id(): string {
    return this.request.id;
  }

  get numPromptTokens(): number {
    return this.request.promptTokens.length;
  }

  get numGenerated(): number {
    return this.tokens.length - this.request.promptTokens.length;
  }

  /** Positions still to run through the model. */
  get numPending(): number {
    return this.tokens.length - this.numComputed;
  }
}
