/**
 * The loop that hosts an Engine, shared by LocalEngine (the calling thread)
 * and the worker thread (worker.ts): takes submits and aborts, steps while
 * there is work, and between steps yields to microtasks (where streams
 * read the step's events) and, at least once a millisecond, to the event
 * loop, which is when submits and aborts land.
 *
 * One failure policy: a step that throws leaves the engine's state (KV
 * cache, deferred positions, the exit controller) untrustworthy, so the
 * host runs no more steps, refuses new requests with EngineDeadError, and
 * reports the failure once through `onFatal`. What follows is the owner's:
 * LocalEngine fails the requests in flight; the worker tells the main
 * thread, which fails them and starts a fresh worker.
 *
 * @module
 */
import { setTimeout as sleep, setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Model } from '../model/index.js';
import { Engine, type EngineOptions } from './engine.js';
import { EngineDeadError } from './errors.js';
import type { EngineEvent, GenerateRequest } from './types.js';

export interface HostHooks {
  /** Every event of every request, in order. */
  onEvent: (event: EngineEvent) => void;
  /** After each step (the worker posts the step's events in one message). */
  afterStep?: () => void;
  /** A step threw: the host has stopped for good. */
  onFatal: (error: EngineDeadError) => void;
}

/** The longest the loop steps without a turn of the event loop. */
const EVENT_LOOP_MS = 1;

/**
 * Microtask turns between steps, for a reader of LocalEngine.generate (the
 * queue's promise, the async generator's yield*, its for await) to see the
 * step's events before the next step. With one turn it mostly read them
 * after the next step: 46% of in-process gaps between tokens were near zero
 * (exits off, stories260K); with two, 12 of 2,985; with three, none.
 */
const READER_TURNS = 3;

/** What an injected fault throws: stands for any exception out of Engine.step(). */
class InjectedFault extends Error {
  override name = 'InjectedFault';
}

export class EngineHost {
  readonly engine: Engine;
  /** Milliseconds spent in Engine.step() so far. */
  busyMs = 0;
  private looping = false;
  private failure: EngineDeadError | null = null;
  private faultPending = false;
  private stepDelayMs = 0;

  constructor(
    model: Model,
    options: EngineOptions,
    private readonly hooks: HostHooks,
  ) {
    this.engine = new Engine(model, options, hooks.onEvent);
  }

  /** Whether a step has failed (the host runs no more). */
  get failed(): boolean {
    return this.failure !== null;
  }

  /** Queues a request and starts the loop if idle. Throws RequestError (refused) or EngineDeadError (failed before). */
  submit(request: GenerateRequest): void {
    if (this.failure) throw this.failure;
    this.engine.add(request);
    void this.loop();
  }

  abort(requestId: string): void {
    this.engine.abort(requestId);
  }

  /** Test and soak use only: the next step throws, as a failing session.run would. */
  failNextStep(): void {
    this.faultPending = true;
  }

  /** Test use only: every step from now on takes `ms` longer (0 ends it), as on a slow device. */
  slowSteps(ms: number): void {
    this.stepDelayMs = ms;
  }

  /** Aborts every request; resolves once no step runs (aborts land at a step boundary) or the host has failed. */
  async drain(): Promise<void> {
    this.engine.abortAll();
    while (this.engine.hasWork && !this.failure) await new Promise((resolve) => setTimeout(resolve, 1));
  }

  private async loop(): Promise<void> {
    if (this.looping || this.failure) return;
    this.looping = true;
    let lastTurn = performance.now();
    try {
      while (this.engine.hasWork) {
        if (this.faultPending) {
          this.faultPending = false;
          throw new InjectedFault('injected fault (test only)');
        }
        const started = performance.now();
        this.engine.step();
        this.busyMs += performance.now() - started;
        this.hooks.afterStep?.();
        // Streams read a step's events in microtasks; submits, aborts and I/O wait for a turn of the
        // event loop, which cost 40 µs of a stories260K token (70-100 at stories110M): one per EVENT_LOOP_MS.
        if (this.stepDelayMs > 0) {
          await sleep(this.stepDelayMs);
          lastTurn = performance.now();
        } else if (performance.now() - lastTurn >= EVENT_LOOP_MS) {
          await yieldToEventLoop();
          lastTurn = performance.now();
        } else {
          for (let turn = 0; turn < READER_TURNS; turn++) await Promise.resolve();
        }
      }
    } catch (error) {
      this.failure = new EngineDeadError(`inference failed: ${error instanceof Error ? error.message : String(error)}`);
      this.hooks.onFatal(this.failure);
    } finally {
      this.looping = false;
    }
  }
}
