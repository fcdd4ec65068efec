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
import type { EngineOptions } from './engine.js';
import { EngineDeadError, EngineError, EngineRestartingError } from './errors.js';
import type { EngineHealth, EngineStats, Fault, ForcedExits, FromWorkerMessage, ServedEngine, ToWorkerMessage, WorkerInit } from './messages.js';
import type { EngineEvent, GenerateRequest } from './types.js';

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

/** How long close() (or a restart) waits for a worker to release the model and end before terminating it. */
const CLOSE_TIMEOUT_MS = 5000;

/** What a request's listener hears: its events, or the error its generate() throws (a refusal). */
type Listener = (item: EngineEvent | EngineError) => void;

/** A started worker and a promise of its end. */
interface Thread {
  worker: Worker;
  exited: Promise<void>;
  /** It said `ready`: it serves now, and losing it means a restart. */
  ready: boolean;
}

/**
 * The engine's health, as one state with what each state holds: the worker
 * loading or serving (`thread`), the failed worker being waited for while it
 * releases its model (`failed`, never two models at once), why it died.
 */
type Phase =
  | { state: 'starting'; thread: Thread | null }
  | { state: 'ready'; thread: Thread }
  | { state: 'restarting'; failed: Thread | null; thread: Thread | null }
  | { state: 'dead'; error: EngineDeadError; thread: Thread | null }
  | { state: 'closed' };

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export class WorkerEngine implements ServedEngine {
  private init: WorkerInit | null = null;
  private phase: Phase = { state: 'starting', thread: null };
  private readonly listeners = new Map<string, Listener>();
  private latestStats: EngineStats | null = null;
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
    return this.phase.state !== 'dead';
  }

  get health(): EngineHealth {
    return this.phase.state === 'closed' ? 'dead' : this.phase.state;
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
    const { thread, ready } = this.spawn();
    this.phase = { state: 'starting', thread };
    try {
      await ready;
    } catch (error) {
      this.die(error as EngineDeadError);
      throw error;
    }
    if (this.phase.state === 'starting') this.phase = { state: 'ready', thread };
  }

  /**
   * Streams a request's events. A request the engine refuses (too long,
   * empty) throws RequestError from the first `next()`, as LocalEngine does;
   * while a worker restarts, EngineRestartingError; once dead, EngineDeadError.
   * Aborting `signal`, or leaving the loop early, ends the request at the
   * engine's next token boundary.
   */
  async *generate(request: GenerateRequest, signal?: AbortSignal): AsyncIterable<EngineEvent> {
    if (this.phase.state === 'dead') throw this.phase.error;
    if (this.phase.state === 'restarting') throw new EngineRestartingError('the engine is restarting after a failure; retry shortly');
    if (this.phase.state !== 'ready') throw new EngineDeadError('the engine has not been started');
    const queue = new AsyncQueue<EngineEvent | EngineError>();
    this.listeners.set(request.id, (item) => {
      queue.push(item);
      if (item instanceof EngineError || item.type !== 'token') {
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
      for await (const item of queue) {
        if (item instanceof EngineError) throw item;
        if (item.type !== 'token') done = true;
        yield item;
      }
    } finally {
      signal?.removeEventListener('abort', abort);
      // A consumer that stops reading early ends the request too.
      abort();
      this.listeners.delete(request.id);
    }
  }

  /**
   * Test and soak use only: makes the worker fail or slow down (see Fault)
   * so that recovery and disconnects can be exercised. Not reachable over
   * HTTP unless the server runs with `--debug-routes`.
   */
  injectFault(fault: Fault): void {
    this.post({ type: 'fault', fault });
  }

  /** Test use only: forces and freezes exits in the worker (see ForceExitsMessage). */
  forceExits(exits: ForcedExits): void {
    this.post({ type: 'force-exits', exits });
  }

  /** Soak use only: a full garbage collection in the worker, if it runs with --expose-gc. */
  collectGarbage(): void {
    this.post({ type: 'gc' });
  }

  /** Asks the worker to release the model and exit; terminates it if it takes too long. */
  async close(): Promise<void> {
    const phase = this.phase;
    if (phase.state === 'closed') return;
    this.phase = { state: 'closed' };
    if (phase.state === 'restarting' && phase.failed) await phase.failed.worker.terminate();
    const thread = phase.thread;
    if (!thread) return;
    // Nothing to release yet (or any more): a worker still loading, or a dead one, is just stopped.
    if (phase.state !== 'ready') return void (await thread.worker.terminate());
    thread.worker.postMessage({ type: 'close' } satisfies ToWorkerMessage);
    await this.reap(thread);
  }

  /** The worker that loads or serves now, if any. */
  private get current(): Thread | null {
    return this.phase.state === 'closed' ? null : this.phase.thread;
  }

  private post(message: ToWorkerMessage): void {
    if (this.phase.state === 'ready') this.phase.thread.worker.postMessage(message);
  }

  /** Starts a worker on `init`; `ready` resolves when it is, or rejects with EngineDeadError if it fails first. */
  private spawn(): { thread: Thread; ready: Promise<void> } {
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: this.init });
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    const thread: Thread = { worker, exited, ready: false };
    const ready = new Promise<void>((resolve, reject) => {
      const lost = (error: EngineDeadError): void => {
        if (!thread.ready) return reject(error);
        void this.recover(thread, error);
      };
      worker.on('message', (message: FromWorkerMessage) => {
        // A replaced worker's last words (stats, events) are nobody's business now.
        if (this.current !== thread) return;
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
            lost(new EngineDeadError(message.error.message, message.error.userFixable));
            return;
          case 'refused':
            this.listeners.get(message.requestId)?.(EngineError.fromData(message.error));
            return;
          case 'events':
            for (const event of message.events) this.listeners.get(event.requestId)?.(event);
        }
      });
      worker.on('error', (error) => lost(new EngineDeadError(`the engine worker crashed: ${error.message}`)));
      worker.on('exit', (code) => lost(new EngineDeadError(`the engine worker exited (code ${code})`)));
    });
    return { thread, ready };
  }

  /** A serving worker failed: fail what it held, then start another (or give up). */
  private async recover(thread: Thread, error: EngineDeadError): Promise<void> {
    if (this.phase.state !== 'ready' || this.phase.thread !== thread) return;
    this.phase = { state: 'restarting', failed: thread, thread: null };
    this.latestStats = null;
    this.failInFlight(`the engine failed and is restarting (${error.message}); retry the request`);
    const now = Date.now();
    this.failures = [...this.failures.filter((t) => now - t < this.policy.restartWindowMs), now];
    if (this.failures.length > this.policy.maxRestarts) {
      const seconds = this.policy.restartWindowMs / 1000;
      this.dieServing(
        new EngineDeadError(`the engine failed ${this.failures.length} times within ${seconds} s; not restarting (last: ${error.message})`, error.userFixable),
      );
      void this.reap(thread);
      return;
    }
    this.policy.log?.(`engine worker failed (${error.message}); restarting`);
    // The old worker releases its model after a caught failure; never hold two models at once.
    await this.reap(thread);
    if (this.phase.state !== 'restarting') return;
    this.phase = { state: 'restarting', failed: null, thread: null };
    await sleep(this.policy.restartDelayMs * 2 ** (this.failures.length - 1));
    if (this.phase.state !== 'restarting') return;
    const started = performance.now();
    const next = this.spawn();
    this.phase = { state: 'restarting', failed: null, thread: next.thread };
    try {
      await next.ready;
    } catch (restartError) {
      if (this.phase.state === 'restarting') this.dieServing(restartError as EngineDeadError);
      return;
    }
    if (this.phase.state !== 'restarting') return;
    this.phase = { state: 'ready', thread: next.thread };
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
    if (this.phase.state === 'dead' || this.phase.state === 'closed') return;
    this.phase = { state: 'dead', error, thread: this.current };
    this.latestStats = null;
    this.failInFlight(error.message);
  }

  /** Dies after having served: the server above should stop. */
  private dieServing(error: EngineDeadError): void {
    this.die(error);
    this.reportDeath(error);
  }
}
