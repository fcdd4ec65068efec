/**
 * The engine seen from the main thread: an EngineClient whose engine runs
 * in a worker thread (worker.ts), so inference never blocks the HTTP loop.
 *
 * @example
 * const engine = new WorkerEngine();
 * await engine.start(dir, { runtime: { device: 'cpu', threads: 1 }, engine: { maxRunning: 16, maxStepTokens: 512, maxContext: 512 } });
 * for await (const event of engine.generate(request, signal)) …
 * await engine.close();
 *
 * @module
 */
import { Worker } from 'node:worker_threads';
import type { RuntimeOptions } from '../model/index.js';
import { AsyncQueue } from '../util/async-queue.js';
import { RequestError, type EngineOptions } from './engine.js';
import type { EngineStats, FromWorkerMessage, ToWorkerMessage, WorkerInit } from './messages.js';
import type { EngineClient, EngineEvent, GenerateRequest } from './types.js';

export interface WorkerEngineOptions {
  runtime: RuntimeOptions;
  engine: EngineOptions;
  /** How often the worker reports changed occupancy (default 50 ms). */
  statsIntervalMs?: number;
}

/** The worker could not start, or died; `name` is the worker-side error's class name. */
export class EngineDeadError extends Error {
  override name = 'EngineDeadError';
  constructor(
    message: string,
    /** The class name of the error inside the worker (ModelFormatError, DeviceError, …). */
    readonly causeName = 'Error',
  ) {
    super(message);
  }
}

/** How long close() waits for the worker to release the model before terminating it. */
const CLOSE_TIMEOUT_MS = 5000;

type Listener = (event: EngineEvent | { type: 'refused'; message: string }) => void;

export class WorkerEngine implements EngineClient {
  private worker: Worker | null = null;
  private readonly listeners = new Map<string, Listener>();
  private dead: EngineDeadError | null = null;
  private latestStats: EngineStats | null = null;
  private isReady = false;
  private closing = false;
  private reportDeath: (error: EngineDeadError) => void = () => {};
  /** Resolves if the worker dies while serving (not when close() ends it); the server should then stop. */
  readonly died = new Promise<EngineDeadError>((resolve) => (this.reportDeath = resolve));

  /** False once the worker has died (or been closed). */
  get alive(): boolean {
    return this.dead === null;
  }

  /** The engine's latest reported occupancy; null before it is ready. */
  get stats(): EngineStats | null {
    return this.latestStats;
  }

  /** Starts the worker, which loads the model from `dir`; resolves once it is ready to take requests. */
  start(dir: string, options: WorkerEngineOptions): Promise<void> {
    if (this.worker) throw new Error('WorkerEngine.start: already started');
    const init: WorkerInit = { dir, runtime: options.runtime, engine: options.engine, statsIntervalMs: options.statsIntervalMs ?? 50 };
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: init });
    this.worker = worker;
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      worker.on('message', (message: FromWorkerMessage) => {
        switch (message.type) {
          case 'ready':
            ready = true;
            this.isReady = true;
            this.latestStats = message.stats;
            resolve();
            return;
          case 'stats':
            this.latestStats = message.stats;
            return;
          case 'fatal':
            this.die(new EngineDeadError(message.message, message.name));
            if (!ready) reject(this.dead);
            return;
          case 'error':
            this.listeners.get(message.requestId)?.(message.refused ? { type: 'refused', message: message.message } : message);
            return;
          default:
            this.listeners.get(message.requestId)?.(message);
        }
      });
      worker.on('error', (error) => {
        this.die(new EngineDeadError(`the engine worker failed: ${error.message}`, error.name));
        if (!ready) reject(this.dead);
      });
      worker.on('exit', (code) => {
        this.die(new EngineDeadError(`the engine worker exited (code ${code})`));
        if (!ready) reject(this.dead);
      });
    });
  }

  /**
   * Streams a request's events. A request the engine refuses (too long,
   * empty) throws RequestError from the first `next()`, as LocalEngine does.
   * Aborting `signal`, or leaving the loop early, ends the request at the
   * engine's next token boundary.
   */
  async *generate(request: GenerateRequest, signal?: AbortSignal): AsyncIterable<EngineEvent> {
    if (this.dead) throw this.dead;
    if (!this.worker) throw new EngineDeadError('the engine has not been started');
    const queue = new AsyncQueue<EngineEvent | { type: 'refused'; message: string }>();
    this.listeners.set(request.id, (event) => {
      queue.push(event);
      if (event.type !== 'token') {
        this.listeners.delete(request.id);
        queue.end();
      }
    });
    let done = false;
    const abort = (): void => {
      if (!done) this.post({ type: 'abort', requestId: request.id });
    };
    signal?.addEventListener('abort', abort);
    try {
      this.post({ type: 'submit', request });
      if (signal?.aborted) abort();
      for await (const event of queue) {
        if (event.type === 'refused') throw new RequestError(event.message);
        if (event.type !== 'token') done = true;
        yield event;
      }
    } finally {
      signal?.removeEventListener('abort', abort);
      // A consumer that stops reading early ends the request too.
      abort();
      this.listeners.delete(request.id);
    }
  }

  /** Asks the worker to release the model and exit; terminates it if it takes too long. */
  async close(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    this.worker = null;
    this.closing = true;
    // Nothing to release yet (or any more): a worker still loading is just stopped.
    if (this.dead || !this.isReady) return void (await worker.terminate());
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.postMessage({ type: 'close' } satisfies ToWorkerMessage);
    const timer = setTimeout(() => void worker.terminate(), CLOSE_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  private post(message: ToWorkerMessage): void {
    this.worker?.postMessage(message);
  }

  /** Fails every request in flight; later generate() calls throw. */
  private die(error: EngineDeadError): void {
    if (this.dead) return;
    this.dead = error;
    this.latestStats = null;
    if (this.isReady && !this.closing) this.reportDeath(error);
    for (const [requestId, listener] of [...this.listeners]) listener({ type: 'error', requestId, message: error.message });
  }
}
