/**
 * The engine's worker thread: loads the model, runs the decode loop, and
 * relays the engine's events to the main thread as messages (see
 * messages.ts).
 *
 * onnxruntime-node runs each session synchronously on the calling thread, so
 * inference lives here and the HTTP event loop never waits on it. Between
 * engine steps the loop yields, which is when submits and aborts land.
 *
 * If a step throws, the engine's state (KV cache, deferred positions, the
 * exit controller) can no longer be trusted: the worker reports `fatal`,
 * takes no more work, releases the model and ends; WorkerEngine fails the
 * requests in flight and starts a fresh worker.
 *
 * Started by WorkerEngine (worker-client.ts); not meant to be run directly.
 *
 * @module
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { parentPort, workerData } from 'node:worker_threads';
import { Model } from '../model/index.js';
import { Engine, RequestError } from './engine.js';
import type { EngineStats, FaultKind, FromWorkerMessage, RequestEventMessage, ToWorkerMessage, WorkerInit } from './messages.js';

if (!parentPort) throw new Error('worker.ts runs as a worker thread (see WorkerEngine)');
const port = parentPort;
const init = workerData as WorkerInit;

const post = (message: FromWorkerMessage): void => port.postMessage(message);

/** The engine's occupancy now; `busyMs`: time spent in Engine.step() so far. */
function statsOf(engine: Engine, busyMs: number): EngineStats {
  const { numRunning, numWaiting } = engine;
  const exits = engine.controller?.state() ?? null;
  return { running: numRunning, waiting: numWaiting, freeSlots: init.engine.maxRunning - numRunning, busySeconds: busyMs / 1000, exits };
}

/** What an injected `step` fault throws: stands for any exception out of Engine.step(). */
class InjectedFault extends Error {
  override name = 'InjectedFault';
}

async function main(): Promise<void> {
  /** Requests submitted and not yet finished, so `close` can abort them. */
  const live = new Set<string>();
  /**
   * A step's request events go out as one message: a message per token cost
   * the worker and the HTTP thread each a few microseconds per token, which
   * at 16 streams is more than the batched step itself costs per token.
   */
  const outbox: RequestEventMessage[] = [];
  const flush = (): void => {
    if (outbox.length > 0) post({ type: 'events', events: outbox.splice(0) });
  };
  let model: Model;
  let engine: Engine;
  try {
    model = await Model.load(init.dir, init.runtime);
    engine = new Engine(model, init.engine, (event) => {
      if (event.type !== 'token') live.delete(event.requestId);
      outbox.push(event.type === 'error' ? { ...event, refused: false } : event);
      // A token from a ramp leaves at once: streaming it before the deep blocks run is the point of exiting.
      if (event.type === 'token' && event.exitLayer !== null) flush();
    });
  } catch (error) {
    const { name, message } = error as Error;
    post({ type: 'fatal', name, message });
    port.close();
    return;
  }
  let busyMs = 0;
  let last = statsOf(engine, busyMs);
  post({ type: 'ready', stats: last });

  // Occupancy is sampled rather than pushed per step: a step is often shorter
  // than a millisecond, and the gauges only need to be fresh for a scrape.
  const statsTimer = setInterval(() => {
    const now = statsOf(engine, busyMs);
    if (now.running === last.running && now.waiting === last.waiting && now.busySeconds === last.busySeconds && now.exits?.tokens === last.exits?.tokens) return;
    last = now;
    post({ type: 'stats', stats: now });
  }, init.statsIntervalMs);

  let looping = false;
  /** Set once a step failed: nothing more runs here. */
  let failed = false;
  let pendingFault: FaultKind | null = null;

  /** A step threw: report it, stop, release the model and let the thread end. */
  const fail = async (error: Error): Promise<void> => {
    failed = true;
    clearInterval(statsTimer);
    post({ type: 'fatal', name: error.name, message: `inference failed: ${error.message}` });
    try {
      await model.release();
    } finally {
      port.close();
    }
  };

  // The decode loop: runs while there is work, yielding between steps.
  const loop = async (): Promise<void> => {
    if (looping || failed) return;
    looping = true;
    try {
      while (engine.hasWork) {
        if (pendingFault === 'step') {
          pendingFault = null;
          throw new InjectedFault('injected fault (test only)');
        }
        const started = performance.now();
        engine.step();
        busyMs += performance.now() - started;
        flush();
        await yieldToEventLoop();
      }
    } catch (error) {
      await fail(error instanceof Error ? error : new Error(String(error)));
    } finally {
      looping = false;
    }
  };

  const close = async (): Promise<void> => {
    clearInterval(statsTimer);
    if (failed) return;
    for (const id of live) engine.abort(id);
    // Aborts take effect at the next step boundary; release sessions only when no step runs.
    while (engine.hasWork && !failed) await new Promise((resolve) => setTimeout(resolve, 1));
    if (failed) return;
    await model.release();
    port.close();
  };

  port.on('message', (message: ToWorkerMessage) => {
    if (failed) return; // the main side has failed these requests already
    switch (message.type) {
      case 'submit': {
        const { request } = message;
        try {
          engine.add(request);
          live.add(request.id);
          void loop();
        } catch (error) {
          const refused = error instanceof RequestError;
          post({ type: 'error', requestId: request.id, message: (error as Error).message, refused });
        }
        return;
      }
      case 'abort':
        engine.abort(message.requestId);
        return;
      case 'close':
        void close();
        return;
      case 'gc':
        (globalThis as { gc?: () => void }).gc?.();
        return;
      case 'fault':
        if (message.kind === 'step') pendingFault = 'step';
        // Outside any try: the thread dies of an uncaught exception, as with a bug in a callback.
        else
          setImmediate(() => {
            throw new InjectedFault('injected crash (test only)');
          });
        return;
    }
  });
}

await main();
