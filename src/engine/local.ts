/**
 * The engine in the calling thread: for `offramp generate`, tests and
 * benchmarks. The worker thread hosts the same loop (host.ts) for the server.
 *
 * @module
 */
import type { Model } from '../model/index.js';
import { AsyncQueue } from '../util/index.js';
import type { Engine, EngineOptions } from './engine.js';
import { EngineHost } from './host.js';
import type { EngineClient, EngineEvent, GenerateRequest } from './types.js';

export class LocalEngine implements EngineClient {
  private readonly host: EngineHost;
  private readonly listeners = new Map<string, (event: EngineEvent) => void>();

  constructor(model: Model, options: EngineOptions) {
    this.host = new EngineHost(model, options, {
      onEvent: (event) => this.listeners.get(event.requestId)?.(event),
      // Nothing here can be trusted any more: the requests in flight end with the error, new ones are refused.
      onFatal: (error) => this.host.engine.failAll(error.message),
    });
  }

  get engine(): Engine {
    return this.host.engine;
  }

  /** Adds a request whose events go to `listener`. Throws RequestError (refused) or EngineDeadError (a step failed before). */
  submit(request: GenerateRequest, listener: (event: EngineEvent) => void): void {
    this.listeners.set(request.id, (event) => {
      if (event.type !== 'token') this.listeners.delete(request.id);
      listener(event);
    });
    try {
      this.host.submit(request);
    } catch (error) {
      this.listeners.delete(request.id);
      throw error;
    }
  }

  abort(requestId: string): void {
    this.host.abort(requestId);
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
}
