/**
 * The engine's vocabulary, shared by the engine, its worker thread and the
 * HTTP side: what a request asks for and what comes back.
 *
 * @module
 */
import type { SamplingParams, TokenLogprobs } from './sampler.js';

export type RequestId = string;

export type FinishReason = 'stop' | 'length' | 'abort' | 'error';

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
  /** Stream tokens from early-exit ramps when the controller allows (the server's default). */
  earlyExit: boolean;
  /**
   * Benchmarks only: the ramp layer each generated token must exit at (null: the full model),
   * replacing the controller's decisions. The oracle plan makes exits that change nothing.
   */
  exitPlan?: (number | null)[];
  /** Benchmarks and fixtures only: score every candidate ramp for every token, exit nowhere. */
  traceRamps?: boolean;
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
  /** Every candidate ramp's view of the token (traceRamps requests only). */
  trace?: { ramps: { layer: number; confidence: number; argmax: number }[]; finalArgmax: number };
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
