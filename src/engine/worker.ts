/**
 * The engine's worker thread: loads the model, runs the host loop (host.ts),
 * and relays the engine's events to the main thread as messages (see
 * messages.ts).
 *
 * onnxruntime-node runs each session synchronously on the calling thread, so
 * inference lives here and the HTTP event loop never waits on it.
 *
 * If a step throws, the host stops; the worker reports `fatal`, takes no
 * more work, releases the model and ends; WorkerEngine fails the requests
 * in flight and starts a fresh worker.
 *
 * Started by WorkerEngine (worker-client.ts); not meant to be run directly.
 *
 * @module
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Model } from '../model/index.js';
import { EngineDeadError, EngineError, isUserFixableLoadError } from './errors.js';
import { EngineHost } from './host.js';
import type { EngineStats, FromWorkerMessage, ToWorkerMessage, WorkerInit } from './messages.js';
import type { EngineEvent } from './types.js';

if (!parentPort) throw new Error('worker.ts runs as a worker thread (see WorkerEngine)');
const port = parentPort;
const init = workerData as WorkerInit;

const post = (message: FromWorkerMessage): void => port.postMessage(message);

/** The engine's occupancy now. */
function statsOf(host: EngineHost): EngineStats {
  const { numRunning, numWaiting, controller, drafts } = host.engine;
  return {
    running: numRunning,
    waiting: numWaiting,
    freeSlots: init.engine.maxRunning - numRunning,
    busySeconds: host.busyMs / 1000,
    exits: controller?.state() ?? null,
    lossless: drafts?.state() ?? null,
  };
}

/** What an injected `crash` throws, outside any handler. */
class InjectedCrash extends Error {
  override name = 'InjectedCrash';
}

async function main(): Promise<void> {
  /**
   * A step's request events go out as one message: a message per token cost
   * the worker and the HTTP thread each a few microseconds per token, which
   * at 16 streams is more than the batched step itself costs per token.
   */
  const outbox: EngineEvent[] = [];
  const flush = (): void => {
    if (outbox.length > 0) post({ type: 'events', events: outbox.splice(0) });
  };
  let model: Model;
  try {
    model = await Model.load(init.dir, init.runtime);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    post({ type: 'fatal', error: new EngineDeadError(message, isUserFixableLoadError(error)).toData() });
    port.close();
    return;
  }

  const host = new EngineHost(model, init.engine, {
    onEvent: (event) => {
      outbox.push(event);
      // A token from a ramp leaves at once: streaming it before the deep blocks run is the point of exiting.
      if (event.type === 'token' && event.exitLayer !== null) flush();
    },
    afterStep: flush,
    // Report, stop, release the model and let the thread end.
    // Runs only from a step, which a message starts: statsTimer is set by then.
    onFatal: (error) => {
      clearInterval(statsTimer);
      post({ type: 'fatal', error: error.toData() });
      try {
        model.release();
      } finally {
        port.close();
      }
    },
  });
  let last = statsOf(host);
  post({ type: 'ready', stats: last });

  // Occupancy is sampled rather than pushed per step: a step is often shorter
  // than a millisecond, and the gauges only need to be fresh for a scrape.
  const statsTimer = setInterval(() => {
    const now = statsOf(host);
    if (
      now.running === last.running &&
      now.waiting === last.waiting &&
      now.busySeconds === last.busySeconds &&
      now.exits?.tokens === last.exits?.tokens &&
      now.lossless?.tokens === last.lossless?.tokens
    )
      return;
    last = now;
    post({ type: 'stats', stats: now });
  }, init.statsIntervalMs);

  const close = async (): Promise<void> => {
    clearInterval(statsTimer);
    // Aborts take effect at the next step boundary; release sessions only when no step runs.
    await host.drain();
    if (host.failed) return;
    model.release();
    port.close();
  };

  port.on('message', (message: ToWorkerMessage) => {
    if (host.failed) return; // the main side has failed these requests already
    switch (message.type) {
      case 'submit':
        try {
          host.submit(message.request);
        } catch (error) {
          if (!(error instanceof EngineError)) throw error;
          post({ type: 'refused', requestId: message.request.id, error: error.toData() });
        }
        return;
      case 'abort':
        host.abort(message.requestId);
        return;
      case 'close':
        void close();
        return;
      case 'force-exits': {
        const { controller, drafts } = host.engine;
        try {
          if (message.exits.ramps) controller?.setThresholds(message.exits.ramps, { freeze: true });
          if (message.exits.draft !== undefined) drafts?.setPlan(message.exits.draft, { freeze: true });
        } catch (error) {
          // A layer that is not a candidate: a test's mistake, said on stderr; the engine goes on.
          if (!(error instanceof RangeError)) throw error;
          console.error(`force-exits: ${error.message}`);
        }
        return;
      }
      case 'gc':
        (globalThis as { gc?: () => void }).gc?.();
        return;
      case 'fault': {
        const { fault } = message;
        if (fault.kind === 'step') host.failNextStep();
        else if (fault.kind === 'slow') host.slowSteps(fault.stepMs);
        // Outside any try: the thread dies of an uncaught exception, as with a bug in a callback.
        else
          setImmediate(() => {
            throw new InjectedCrash('injected crash (test only)');
          });
        return;
      }
    }
  });
}

await main();
