/**
 * The engine in the calling thread: for `offramp generate`, tests, and the
 * worker thread that hosts it for the server.
 *
 * @module
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Model } from '../model/index.js';
import { AsyncQueue } from '../util/index.js';
import { Engine, RequestError, type EngineOptions } from './engine.js';
import type { EngineClient, EngineEvent, GenerateRequest } from './types.js';

export class LocalEngine implements EngineClient {
  readonly engine: Engine;
  private readonly listeners = new Map<string, (event: EngineEvent) => void>();
  private looping = false;

  constructor(model: Model, options: EngineOptions) {
    this.engine = new Engine(model, options, (event) => this.listeners.get(event.requestId)?.(event));
  }

  /** Adds a request whose events go to `listener`; starts the loop if idle. Throws RequestError. */
  submit(request: GenerateRequest, listener: (event: EngineEvent) => void): void {
    this.engine.add(request);
    this.listeners.set(request.id, (event) => {
      if (event.type !== 'token') this.listeners.delete(request.id);
      listener(event);
    });
    void this.loop();
  }

  abort(requestId: string): void {
    this.engine.abort(requestId);
  }

  async *generate(request: GenerateRequest, signal?: AbortSignal): AsyncIterable<EngineEvent> {
    const queue = new AsyncQueue<EngineEvent>();
    this.submit(request, (event) => {
      queue.push(event);
      if (event.type !== 'token') queue.end();
    });
    const onAbort = () => this.abort(request.id);
    signal?.addEventListener('abort', onAbort);
    try {
      yield* queue;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      // A consumer that stops reading early ends the request too.
      this.abort(request.id);
    }
  }

  private async loop(): Promise<void> {
    if (this.looping) return;
    this.looping = true;
    try {
      while (this.engine.hasWork) {
        try {
          this.engine.step();
        } catch (error) {
          this.engine.failAll(`inference failed: ${(error as Error).message}`);
        }
        // Let aborts and new requests in between steps.
        await yieldToEventLoop();
      }
    } finally {
      this.looping = false;
    }
  }
}

export { RequestError };
