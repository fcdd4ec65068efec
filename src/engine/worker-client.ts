/**
 * The engine seen from the main thread: an EngineClient whose engine runs
 * in a worker thread (worker.ts), so inference never blocks the HTTP loop.
 *
 * It also supervises the worker. When the worker dies (an uncaught
 * exception) or its decode loop throws, every request in flight ends with an
 * `error` event, `health` turns `restarting` (generate() then throws
 * EngineRestartingError), and a fresh worker loads the same model. A restart
 * that fails, or more than `maxRestarts` failures within `restartWindowMs`,
 * leaves the engine `dead` for good: `died` resolves and the server should
 * stop (a supervisor above it decides what next).
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
import { AsyncQueue } from '../util/index.js';
import { RequestError, type EngineOptions } from './engine.js';
import type { EngineHealth, EngineStats, FaultKind, FromWorkerMessage, RequestEventMessage, ToWorkerMessage, WorkerInit } from './messages.js';
import type { EngineClient, EngineEvent, GenerateRequest } from './types.js';

export interface WorkerEngineOptions {
  runtime: RuntimeOptions;
  engine: EngineOptions;
  /** How often the worker reports changed occupancy (default 50 ms). */
  statsIntervalMs?: number;
}

/** How the worker is restarted after a failure. */
export interface RestartPolicy {
  /** Failures tolerated within `restartWindowMs`; one more and the engine stays dead (default 3). */
  maxRestarts?: number;
  restartWindowMs?: number;
  /** Wait before the first restart; doubles with each recent failure (default 100 ms). */
  restartDelayMs?: number;
  /** Where restarts are reported (default: nowhere). */
  log?: (line: string) => void;
}

/** The worker could not start, or died and could not be restarted; `name` is the worker-side error's class name. */
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

/** The worker failed and a new one is loading: retry shortly. */
export class EngineRestartingError extends Error {
  override name = 'EngineRestartingError';
}

/** How long close() (or a restart) waits for a worker to release the model and end before terminating it. */
const CLOSE_TIMEOUT_MS = 5000;

type Listener = (event: EngineEvent | { type: 'refused'; message: string }) => void;

/** A started worker and a promise of its end. */
interface Thread {
  worker: Worker;
  exited: Promise<void>;
  ready: boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export class WorkerEngine implements EngineClient {
  private init: WorkerInit | null = null;
  private thread: Thread | null = null;
  /** A failed worker being waited for while it releases its model. */
  private failedThread: Thread | null = null;
  private readonly listeners = new Map<string, Listener>();
  private state: EngineHealth = 'starting';
  private dead: EngineDeadError | null = null;
  private latestStats: EngineStats | null = null;
  private everReady = false;
  private closing = false;
  /** When recent failures happened (ms since epoch), for the crash-loop limit. */
  private failures: number[] = [];
  private numRestarts = 0;
  private readonly policy: Required<Omit<RestartPolicy, 'log'>> & Pick<RestartPolicy, 'log'>;
  private reportDeath: (error: EngineDeadError) => void = () => {};
  /** Resolves if the engine dies for good while serving (not when close() ends it); the server should then stop. */
  readonly died = new Promise<EngineDeadError>((resolve) => (this.reportDeath = resolve));

  constructor(policy: RestartPolicy = {}) {
    this.policy = { maxRestarts: 3, restartWindowMs: 60_000, restartDelayMs: 100, ...policy };
  }

  /** False once the engine is dead for good (it could not be restarted); true while it restarts. */
  get alive(): boolean {
    return this.dead === null;
  }

  get health(): EngineHealth {
    return this.state;
  }

  /** Workers started after a failure that came up ready. */
  get restarts(): number {
    return this.numRestarts;
  }

  /** The engine's latest reported occupancy; null before it is ready and while it restarts. */
  get stats(): EngineStats | null {
    return this.latestStats;
  }

  /** Starts the worker, which loads the model from `dir`; resolves once it is ready to take requests. */
  async start(dir: string, options: WorkerEngineOptions): Promise<void> {
    if (this.init) throw new Error('WorkerEngine.start: already started');
    this.init = { dir, runtime: options.runtime, engine: options.engine, statsIntervalMs: options.statsIntervalMs ?? 50 };
    try {
      await this.spawn();
    } catch (error) {
      this.die(error as EngineDeadError);
      throw error;
    }
    this.state = 'ready';
    this.everReady = true;
  }

  /**
   * Streams a request's events. A request the engine refuses (too long,
   * empty) throws RequestError from the first `next()`, as LocalEngine does;
   * while a worker restarts, EngineRestartingError; once dead, EngineDeadError.
   * Aborting `signal`, or leaving the loop early, ends the request at the
   * engine's next token boundary.
   */
  async *generate(request: GenerateRequest, signal?: AbortSignal): AsyncIterable<EngineEvent> {
    if (this.dead) throw this.dead;
    if (this.state === 'restarting') throw new EngineRestartingError('the engine is restarting after a failure; retry shortly');
    if (!this.thread?.ready) throw new EngineDeadError('the engine has not been started');
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

  /**
   * Test and soak use only: makes the worker fail (see FaultKind) so that
   * recovery can be exercised. Not reachable over HTTP unless the server
   * runs with `--debug-routes`.
   */
  injectFault(kind: FaultKind): void {
    this.post({ type: 'fault', kind });
  }

  /** Soak use only: a full garbage collection in the worker, if it runs with --expose-gc. */
  collectGarbage(): void {
    this.post({ type: 'gc' });
  }

  /** Asks the worker to release the model and exit; terminates it if it takes too long. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.failedThread) await this.failedThread.worker.terminate();
    const thread = this.thread;
    this.thread = null;
    if (!thread) return;
    // Nothing to release yet (or any more): a worker still loading is just stopped.
    if (this.dead || !thread.ready) return void (await thread.worker.terminate());
    thread.worker.postMessage({ type: 'close' } satisfies ToWorkerMessage);
    await this.reap(thread);
  }

  private post(message: ToWorkerMessage): void {
    if (this.thread?.ready) this.thread.worker.postMessage(message);
  }

  /** Starts a worker on `init`; resolves when it is ready, rejects with EngineDeadError if it fails first. */
  private spawn(): Promise<void> {
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: this.init });
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    const thread: Thread = { worker, exited, ready: false };
    this.thread = thread;
    return new Promise<void>((resolve, reject) => {
      const lost = (error: EngineDeadError): void => {
        if (!thread.ready) return reject(error);
        void this.recover(thread, error);
      };
      worker.on('message', (message: FromWorkerMessage) => {
        // A replaced worker's last words (stats, events) are nobody's business now.
        if (this.thread !== thread) return;
        switch (message.type) {
          case 'ready':
            thread.ready = true;
            this.latestStats = message.stats;
            resolve();
            return;
          case 'stats':
            this.latestStats = message.stats;
            return;
          case 'fatal':
            lost(new EngineDeadError(message.message, message.name));
            return;
          case 'error':
            this.deliver(message);
            return;
          case 'events':
            for (const event of message.events) this.deliver(event);
        }
      });
      worker.on('error', (error) => lost(new EngineDeadError(`the engine worker crashed: ${error.message}`, error.name)));
      worker.on('exit', (code) => lost(new EngineDeadError(`the engine worker exited (code ${code})`)));
    });
  }

  private deliver(event: RequestEventMessage): void {
    const listener = this.listeners.get(event.requestId);
    if (event.type === 'error') listener?.(event.refused ? { type: 'refused', message: event.message } : event);
    else listener?.(event);
  }

  /** A serving worker failed: fail what it held, then start another (or give up). */
  private async recover(thread: Thread, error: EngineDeadError): Promise<void> {
    if (this.thread !== thread || this.closing || this.dead) return;
    this.thread = null;
    this.latestStats = null;
    this.state = 'restarting';
    this.failInFlight(`the engine failed and is restarting (${error.message}); retry the request`);
    const now = Date.now();
    this.failures = [...this.failures.filter((t) => now - t < this.policy.restartWindowMs), now];
    if (this.failures.length > this.policy.maxRestarts) {
      const seconds = this.policy.restartWindowMs / 1000;
      this.die(new EngineDeadError(`the engine failed ${this.failures.length} times within ${seconds} s; not restarting (last: ${error.message})`, error.causeName));
      void this.reap(thread);
      return;
    }
    this.policy.log?.(`engine worker failed (${error.message}); restarting`);
    // The old worker releases its model after a caught failure; never hold two models at once.
    this.failedThread = thread;
    await this.reap(thread);
    this.failedThread = null;
    await sleep(this.policy.restartDelayMs * 2 ** (this.failures.length - 1));
    if (this.closing) return;
    const started = performance.now();
    try {
      await this.spawn();
    } catch (restartError) {
      if (!this.closing) this.die(restartError as EngineDeadError);
      return;
    }
    if (this.closing) return;
    this.state = 'ready';
    this.numRestarts += 1;
    this.policy.log?.(`engine worker restarted in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }

  /** Waits for a worker to end by itself, terminating it after CLOSE_TIMEOUT_MS. */
  private async reap(thread: Thread): Promise<void> {
    const timer = setTimeout(() => void thread.worker.terminate(), CLOSE_TIMEOUT_MS);
    await thread.exited;
    clearTimeout(timer);
  }

  private failInFlight(message: string): void {
    for (const [requestId, listener] of [...this.listeners]) listener({ type: 'error', requestId, message });
  }

  /** The engine cannot serve any more: fail everything in flight; later generate() calls throw. */
  private die(error: EngineDeadError): void {
    if (this.dead) return;
    this.dead = error;
    this.state = 'dead';
    this.latestStats = null;
    if (this.everReady && !this.closing) this.reportDeath(error);
    this.failInFlight(error.message);
  }
}
