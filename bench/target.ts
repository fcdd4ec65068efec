/**
 * What the load generator drives: a Target answers one Work item at a time
 * per call and reports what the client saw. Offramp over HTTP and the
 * in-process transformers.js peer both implement it.
 *
 * @module
 */
import type { Work } from './workload.js';

/** One request as the client saw it. Times are performance.now() milliseconds. */
export interface RequestRecord {
  index: number;
  promptId: string;
  /** When the request was due: closed loop, when it was sent; open loop, its scheduled arrival (so a late send counts). */
  startMs: number;
  /** How late the load generator handed it over (open loop: a busy event loop delays sends; closed loop: ~0). Set by load.ts. */
  sendLagMs: number;
  /** Arrival of each content chunk (non-empty text). */
  chunkMs: number[];
  /** Each content chunk's `exit_layer` extension; null: the full model produced it. */
  chunkExit: (number | null)[];
  /** End of the response (the stream's `[DONE]`, or the peer's generate() returning). */
  endMs: number;
  /** Tokens generated (the usage chunk's completion_tokens; the number of content chunks when a server sends no usage). */
  outputTokens: number;
  tokenSource: 'usage' | 'chunks';
  finishReason: string | null;
  text: string;
  /** Why the request failed; null when it finished. */
  error: string | null;
}

/** Server-side figures that a point can be checked against (offramp only). */
export interface ServerSnapshot {
  /** Prometheus text of GET /metrics. */
  metrics: string;
  /** GET /exits; null when the server has no exit controller (exits off, or not offramp). */
  exits: ExitsSnapshot | null;
}

/** The part of GET /exits the bench reads. */
export interface ExitsSnapshot {
  tokens: number;
  windowedAgreement: number | null;
  cumulativeAgreement: number | null;
  ramps: { layer: number; threshold: number; exitRate: number }[];
}

export interface Target {
  /** Column name in the report, e.g. `exits-on@0.99`. */
  readonly id: string;
  send(work: Work, startMs: number, maxTokens: number, temperature: number): Promise<RequestRecord>;
  /** Null for targets without /metrics (the peer). */
  snapshot(): Promise<ServerSnapshot | null>;
  close(): Promise<void>;
}

/** A record for a request that failed before any answer. */
export function failedRecord(work: Work, startMs: number, error: string): RequestRecord {
  return {
    index: work.index,
    promptId: work.prompt.id,
    startMs,
    sendLagMs: 0,
    chunkMs: [],
    chunkExit: [],
    endMs: performance.now(),
    outputTokens: 0,
    tokenSource: 'chunks',
    finishReason: null,
    text: '',
    error,
  };
}
