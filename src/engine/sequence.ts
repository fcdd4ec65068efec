/**
 * One request's state inside the engine, llama.cpp-slot style: its tokens,
 * how far each layer's KV cache has got, its slot, and its random stream.
 *
 * There is no prefill mode: `numComputed` (positions that have entered the
 * model) catches up with `tokens.length`, many positions at a time at first,
 * then one per step. With early exits, deeper layers may lag behind: a
 * position whose token left at a ramp has its deep layers deferred until the
 * next position that goes all the way (the catch-up pass).
 *
 * In lossless mode a ramp's token is a draft: it feeds the next position but
 * is not one of `tokens` (which hold only what the client may see) until the
 * deep blocks verify it; `tokenAt` reads past `tokens` into the drafts.
 *
 * @module
 */
import { ContextDraftGate } from '../exits/index.js';
import type { TextTokenizer } from '../model/index.js';
import { Rng } from '../util/index.js';
import { OutputProcessor } from './output.js';
import { drawKey } from './sampler.js';
import type { FinishReason, GenerateRequest, RampReading } from './types.js';

/** A position whose token was emitted from a ramp and whose deeper layers have not run yet. */
export interface DeferredPosition {
  position: number;
  /** Output of `layer` at this position: the input of the next layer to run. */
  hidden: Float32Array; // [dim]
  /** Deepest layer computed for this position. */
  layer: number;
  /** The ramp the token was emitted from. */
  exitLayer: number;
  /** Every active ramp's reading of this position so far (deeper ones are added during catch-up). */
  readings: RampReading[];
  /** Sequences decoded in the step it exited in: alone, its exit ended the step early (see exitSavingMs). */
  stepRows: number;
  /** Catch-up calls run apart from the batch for it, its share, in ms: what deferring it cost. */
  overheadMs: number;
}

export class Sequence {
  /** Prompt then generated tokens. */
  readonly tokens: number[];
  /** Positions computed per layer; every entry equals numComputed unless positions are deferred. */
  readonly layerLengths: Int32Array;
  /** Deferred positions, oldest first. */
  readonly deferred: DeferredPosition[] = [];
  /** Lossless mode: tokens ramps (or the context) drafted after `tokens`, oldest first, not yet verified (drafts[i] follows deferred[i]). */
  readonly drafts: number[] = [];
  /** Lossless mode: whether drafting from the sequence's own text still pays. */
  readonly contextGate = new ContextDraftGate();
  /** Lossless mode: the lookahead head's guess of the token after the last one `tokens` holds (−1: none); the next step drafts it. */
  lookahead = -1;
  slot = -1;
  /** Set when the engine applies the token that ends the request; it finishes it at the step boundary. */
  finishReason: FinishReason | null = null;
  /** The generated text released so far (held-back characters and stop strings). */
  readonly output: OutputProcessor;
  /** The request's seed, or a random one: with the position, it fixes every draw (see drawKey). */
  readonly seed: number;
  /** Set by abort(); honoured at the next step boundary. */
  abortRequested = false;

  constructor(
    readonly request: GenerateRequest,
    numLayers: number,
    tokenizer: TextTokenizer,
  ) {
    this.tokens = [...request.promptTokens];
    this.output = new OutputProcessor(tokenizer, request.promptTokens, request.stop);
    this.layerLengths = new Int32Array(numLayers);
    this.seed = request.seed ?? Rng.randomSeed();
  }

  /** The draw key of the token at `index` (prompt included): the same for a ramp and the full model. */
  drawKey(index: number): number {
    return drawKey(this.seed, index);
  }

  /** The token at `index`: a known one, or a draft past them. */
  tokenAt(index: number): number {
    return index < this.tokens.length ? this.tokens[index]! : this.drafts[index - this.tokens.length]!;
  }

  /** Known tokens and drafts: the positions the model may be fed. */
  get numFed(): number {
    return this.tokens.length + this.drafts.length;
  }

  /** Whether the request decodes in lossless mode (ramps draft, the full model verifies). */
  get lossless(): boolean {
    return this.request.earlyExit === 'lossless';
  }

  get id(): string {
    return this.request.id;
  }

  /** Positions that have entered the model (through block 0 at least). */
  get numComputed(): number {
    return this.layerLengths[0]!;
  }

  get numPromptTokens(): number {
    return this.request.promptTokens.length;
  }

  get numGenerated(): number {
    return this.tokens.length - this.request.promptTokens.length;
  }

  /** Positions still to run through the model. */
  get numPending(): number {
    return this.numFed - this.numComputed;
  }
}
