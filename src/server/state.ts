/**
 * The server's lifecycle (loading → ready → draining) and the HTTP side's
 * count of requests in flight, which is what admission (429) and a clean
 * shutdown are decided on.
 *
 * @module
 */
import { setMaxListeners } from 'node:events';
import { ApiError } from './errors.js';
import { ChatPrompter, type PromptTokenizer } from './prompt.js';
import type { EarlyExitMode } from '../engine/index.js';

/** The model the server answers for. */
export interface ModelInfo {
  /** The server's early-exit mode: what a request that does not say gets. */
  earlyExit: EarlyExitMode;
  /** The name clients pass as `model`. */
  id: string;
  /** Positions per request, prompt plus completion (the engine's maxContext). */
  maxContext: number;
  tokenizer: PromptTokenizer;
  /** The most characters a token decodes to (maxCharsPerToken): bounds prompt text before tokenizing (default 32). */
  maxCharsPerToken?: number;
  /** Unix seconds, for /v1/models (default: when the server became ready). */
  created?: number;
  /** Blocks a ramp may follow (the manifest's candidates), for POST /debug/exits (default: none known, any accepted). */
  rampLayers?: readonly number[];
}

export type Phase = 'loading' | 'ready' | 'draining';

/** A request let in: report when its first engine event came, and when it is over. */
export interface Admission {
  /** Aborted when the shutdown grace period runs out. */
  readonly shutdownSignal: AbortSignal;
  started(): void;
  done(): void;
}

export interface AdmissionLimits {
  /** Requests the engine runs at once (its batch slots). */
  maxRunning: number;
  /** Requests allowed to wait beyond those; more get 429. */
  maxQueued: number;
  /** Sent as Retry-After with a 429. */
  retryAfterSeconds: number;
}

export class ServerState {
  private currentPhase: Phase = 'loading';
  private served: { model: ModelInfo; prompter: ChatPrompter; created: number } | null = null;
  private numInFlight = 0;
  private numStarted = 0;
  private readonly shutdown = new AbortController();
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly limits: AdmissionLimits) {
    // Every request in flight listens to the shutdown signal; no leak warning at 11.
    setMaxListeners(0, this.shutdown.signal);
  }

  get phase(): Phase {
    return this.currentPhase;
  }

  /** Accepted and not yet answered in full. */
  get inFlight(): number {
    return this.numInFlight;
  }

  /** In flight and past their first engine event. */
  get started(): number {
    return this.numStarted;
  }

  get model(): ModelInfo | null {
    return this.served?.model ?? null;
  }

  /** The model is loaded: start serving it. */
  setReady(model: ModelInfo): void {
    if (this.currentPhase === 'draining') return;
    this.served = { model, prompter: new ChatPrompter(model.tokenizer), created: model.created ?? Math.floor(Date.now() / 1000) };
    this.currentPhase = 'ready';
  }

  /** The model and its chat prompter, or the 503 a model route answers while there is none. */
  serving(): { model: ModelInfo; prompter: ChatPrompter; created: number } {
    if (this.currentPhase === 'draining') throw new ApiError(503, 'the server is shutting down', { code: 'shutting_down', retryAfter: 1 });
    if (!this.served) throw new ApiError(503, 'the model is still loading', { code: 'model_loading', retryAfter: 1 });
    return this.served;
  }

  /**
   * Lets a request in, or throws the 429 that keeps the queue bounded: the
   * engine runs `maxRunning` requests, and at most `maxQueued` more may wait.
   */
  admit(): Admission {
    this.serving();
    const waiting = this.numInFlight - this.numStarted;
    const freeSlots = Math.max(0, this.limits.maxRunning - this.numStarted);
    if (waiting >= freeSlots + this.limits.maxQueued) {
      throw new ApiError(429, `the server is busy: ${this.numInFlight} requests in flight and the queue (${this.limits.maxQueued}) is full; retry later`, {
        code: 'queue_full',
        retryAfter: this.limits.retryAfterSeconds,
      });
    }
    this.numInFlight += 1;
    let started = false;
    let done = false;
    return {
      shutdownSignal: this.shutdown.signal,
      started: () => {
        if (started || done) return;
        started = true;
        this.numStarted += 1;
      },
      done: () => {
        if (done) return;
        done = true;
        if (started) this.numStarted -= 1;
        this.numInFlight -= 1;
        if (this.numInFlight === 0) for (const wake of this.idleWaiters.splice(0)) wake();
      },
    };
  }

  /**
   * Stops taking requests (503) and waits for those in flight to finish. When
   * `graceMs` runs out, the rest are aborted (their streams end with an error
   * frame) and given `abortMs` to write it. Resolves with how many were cut.
   */
  async drain(graceMs: number, abortMs = 2000): Promise<number> {
    this.currentPhase = 'draining';
    if (await this.idle(graceMs)) return 0;
    const cut = this.numInFlight;
    this.shutdown.abort(new ApiError(503, 'the server is shutting down', { code: 'shutting_down' }));
    await this.idle(abortMs);
    return cut;
  }

  /** Resolves true when nothing is in flight, false if `timeoutMs` passes first. */
  private idle(timeoutMs: number): Promise<boolean> {
    if (this.numInFlight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== wake);
        resolve(false);
      }, timeoutMs);
      const wake = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.idleWaiters.push(wake);
    });
  }

  /** For a second signal during drain: skip what is left of the grace period. */
  abortNow(): void {
    this.currentPhase = 'draining';
    this.shutdown.abort(new ApiError(503, 'the server is shutting down', { code: 'shutting_down' }));
  }
}
