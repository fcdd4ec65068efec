/**
 * The engine's vocabulary, shared by the engine, its worker thread and the
 * HTTP side: what a request asks for and what comes back.
 *
 * @module
 */
import type { SamplingParams, TokenLogprobs } from './sampler.js';

export type RequestId = string;

export type EarlyExitMode = 'off' | 'on' | 'lossless';

export type FinishReason = 'stop' | 'length' | 'abort' | 'error';

/**
 * Exits a benchmark or fixture forces, replacing the controller's decisions:
 * `plan`: the ramp layer each generated token must exit at (null: the full
 * model; the oracle plan makes exits that change nothing); `trace`: score
 * every candidate ramp for every token, exit nowhere, and send the readings
 * with each token.
 */
export type ExitOverride = { kind: 'plan'; layers: (number | null)[] } | { kind: 'trace' };

/** What one ramp read for one position's next token (the engine's view; the controller gets a TokenRecord). */
export interface RampReading {
  layer: number;
  confidence: number;
  /** The token the ramp would stream there: its argmax when greedy, its coupled draw when sampling. */
  token: number;
}

/** A generation request, already tokenized and validated. */
export interface GenerateRequest {
  id: RequestId;
  promptTokens: number[];
  sampling: SamplingParams;
  /** Fixed seed for reproducible sampling; random when absent. */
  seed?: number;
  maxTokens: number;
  /** Strings that end generation; matched across token boundaries and never streamed. */
  stop: string[];
  /**
   * `on`: stream tokens from early-exit ramps when the controller allows (the
   * server's default); `lossless`: ramps draft, the full model verifies, the
   * text is exactly the full model's; `off`: the full model only.
   */
  earlyExit: EarlyExitMode;
  /** Benchmarks and fixtures only: exits decided by the request instead of the controller (see ExitOverride). */
  exitOverride?: ExitOverride;
  /** Return each token's log-probability and this many alternatives (OpenAI's logprobs / top_logprobs). */
  logprobs?: number;
}

/** Newly produced text of one request. */
export interface TokenEvent {
  type: 'token';
  requestId: RequestId;
  /** Text completed by these tokens (may be empty while a character or a possible stop string is held back). */
  text: string;
  tokenIds: number[];
  /** The block whose ramp emitted the token, or null for the full model. */
  exitLayer: number | null;
  /** The ramp's confidence when it exited; null for the full model. */
  confidence: number | null;
  /** Lossless mode: the ramp `exitLayer` (null: the text's own earlier continuation) drafted the token and the full model verified it (it is the full model's). */
  verified?: true;
  /** Every candidate ramp's reading of the token (`trace` overrides only). */
  trace?: { ramps: RampReading[]; finalToken: number };
  /** When the request asked for logprobs: from the distribution the token was sampled from (ramp or full model). */
  logprobs?: TokenLogprobs;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

export interface FinishedEvent {
  type: 'finished';
  requestId: RequestId;
  finishReason: FinishReason;
  /** Text released at the end (held-back characters). */
  text: string;
  usage: Usage;
}

/** The request failed inside the engine; `message` is safe to show the client. */
export interface ErrorEvent {
  type: 'error';
  requestId: RequestId;
  message: string;
}

export type EngineEvent = TokenEvent | FinishedEvent | ErrorEvent;

/** What the serving side needs from an engine, in-process or in a worker thread. */
export interface EngineClient {
  /** Streams a request's events; aborting `signal` frees its slot at the next token boundary. */
  generate(request: GenerateRequest, signal?: AbortSignal): AsyncIterable<EngineEvent>;
}
