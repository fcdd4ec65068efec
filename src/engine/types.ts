/**
 * The engine's vocabulary, shared by the engine, its worker thread and the
 * HTTP side: what a request asks for and what comes back.
 *
 * @module
 */
import type { SamplingParams } from './sampler.js';

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
}

/** Newly produced text of one request. */
export interface TokenEvent {
  type: 'token';
  requestId: RequestId;
  /** Text completed by these tokens (may be empty while a character or a possible stop string is held back). */
  text: string;
  tokenIds: number[];
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
