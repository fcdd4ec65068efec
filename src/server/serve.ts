/**
 * `offramp serve`: listen at once (health answers 503 while loading),
 * resolve the model and load its tokenizer here, load the model itself in
 * the engine's worker thread, then serve until SIGTERM/SIGINT.
 *
 * Shutdown: stop taking requests (503), let in-flight streams finish (with
 * their finish_reason and [DONE]) for up to the grace period, cut the rest,
 * then close the socket and the worker so Node exits by itself. A second
 * signal skips what is left of the grace period.
 *
 * Faults: when the engine worker fails, the requests in flight end with an
 * error, /health answers 503 `restarting`, and a new worker loads the model
 * (WorkerEngine). Only if that fails does the server stop, with an error.
 *
 * @module
 */
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import { hugePagesOn, onGlibc, UsageError } from '../util/index.js';
import { WorkerEngine } from '../engine/index.js';
import { describeRamps, KvCache, readManifest, TextTokenizer, weightsLabel } from '../model/index.js';
import { createApp, type ServerApp } from './app.js';
import { parseServeArgs, SERVE_USAGE, ServeConfigError, type ServeConfig } from './config.js';
import { maxCharsPerToken } from './prompt.js';
import { resolveModelInWorker } from './resolve-worker.js';
import type { ModelInfo } from './state.js';

export interface RunningServer {
  /** `http://host:port`, with the port actually bound. */
  url: string;
  port: number;
  app: ServerApp;
  /** Resolves once the model is loaded and served; rejects when loading fails. */
  ready: Promise<void>;
  /** The engine: its health and restarts, and injectFault() for tests. */
  engine: WorkerEngine;
  /** Resolves if the engine dies for good while serving (a restart failed; the server then answers 503 and should be stopped). */
  died: Promise<Error>;
  /**
   * Stops taking requests, waits up to `graceMs` (default: the config's) for
   * those in flight, cuts the rest, closes the socket and the worker.
   * Idempotent; resolves when everything is closed.
   */
  stop(graceMs?: number): Promise<void>;
}

/** The name clients use for a model source: a registry name, hf:ORG/NAME's ORG/NAME, or a path's base name. */
export function defaultModelName(source: string): string {
  if (source.startsWith('hf:')) return source.slice(3);
  return path.basename(source.replace(/[/\\]+$/, '')).replace(/\.bin$/, '') || source;
}

function listen(server: ServerType): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => reject(error);
    server.once('error', onError);
    server.once('listening', () => {
      server.off('error', onError);
      resolve(server.address() as AddressInfo);
    });
  });
}

/** Resolves the model here, loads it in the worker, and returns what the routes need. */
async function loadModel(config: ServeConfig, engine: WorkerEngine, log: (line: string) => void, signal: AbortSignal): Promise<ModelInfo> {
  const dir = await resolveModelInWorker({ source: config.model, tokenizer: config.tokenizer, quantization: config.quantize }, log, signal);
  const manifest = readManifest(dir);
  const { maxSeqLen } = manifest.config;
  if (config.maxContext !== undefined && config.maxContext > maxSeqLen) {
    throw new UsageError(`--max-context: ${config.maxContext} exceeds the model's ${maxSeqLen} positions`);
  }
  const maxContext = config.maxContext ?? maxSeqLen;
  const tokenizer = await TextTokenizer.load(dir);
  const started = performance.now();
  await engine.start(dir, {
    runtime: { device: config.device, threads: config.threads },
    engine: {
      maxRunning: config.maxRunning,
      maxStepTokens: Math.max(config.maxStepTokens, config.maxRunning),
      maxContext,
      earlyExit: {
        enabled: config.earlyExit !== 'off',
        accuracy: config.accuracy,
        rampBudget: config.rampBudget,
        confidence: config.confidence,
        maxDeferred: config.maxDeferred,
      },
    },
  });
  const weights = weightsLabel(manifest.quantization);
  const kvMiB = KvCache.byteLengthFor(manifest.config, config.maxRunning, maxContext) / 2 ** 20;
  log(
    `model ${dir} loaded in ${((performance.now() - started) / 1000).toFixed(1)} s (${weights} weights, context ${maxContext}, ${config.maxRunning} slots, KV cache ${kvMiB.toFixed(0)} MiB); ${describeRamps(manifest)}`,
  );
  return {
    id: config.servedModelName ?? defaultModelName(config.model),
    earlyExit: config.earlyExit,
    maxContext,
    tokenizer,
    rampLayers: manifest.rampCandidates,
    maxCharsPerToken: maxCharsPerToken(tokenizer),
  };
}

/** Starts listening now and loading the model in the background (see `ready`). */
export async function startServer(config: ServeConfig, log: (line: string) => void = () => {}): Promise<RunningServer> {
  const engine = new WorkerEngine({ log });
  const served = createApp({
    engine,
    model: null,
    options: {
      maxRunning: config.maxRunning,
      maxQueued: config.maxQueued,
      maxBodyBytes: config.maxBodyBytes,
      queueTimeoutMs: config.queueTimeoutSeconds * 1000,
      apiKeys: config.apiKeys,
      corsOrigins: config.corsOrigins,
      debugRoutes: config.debugRoutes,
    },
  });
  const server = serve({ fetch: served.app.fetch, port: config.port, hostname: config.host });
  const address = await listen(server);
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;

  const loading = new AbortController();
  const ready = loadModel(config, engine, log, loading.signal).then((model) => served.state.setReady(model));
  ready.catch(() => {}); // the caller decides; an unobserved rejection must not end the process

  let stopping: Promise<void> | null = null;
  const stop = (graceMs = config.shutdownGraceSeconds * 1000): Promise<void> => {
    stopping ??= (async () => {
      loading.abort();
      const cut = await served.state.drain(graceMs);
      if (cut > 0) log(`shutdown: ${cut} request(s) did not finish within the grace period and were cut`);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // close() ends idle keep-alive sockets; a client that holds one open anyway is cut after a moment.
      const force = setTimeout(() => {
        if ('closeAllConnections' in server) server.closeAllConnections();
      }, 1000);
      await closed;
      clearTimeout(force);
      await engine.close();
    })();
    return stopping;
  };
  return { url, port: address.port, app: served, ready, engine, died: engine.died, stop };
}

/**
 * `offramp serve [flags]`: runs until SIGTERM or SIGINT, then shuts down
 * cleanly and resolves (it never calls process.exit).
 */
export async function serveCommand(args: string[]): Promise<void> {
  let config: ServeConfig;
  let help: boolean;
  try {
    ({ config, help } = parseServeArgs(args));
  } catch (error) {
    if (error instanceof ServeConfigError) throw new UsageError(error.message);
    throw error;
  }
  if (help) return void process.stdout.write(`${SERVE_USAGE}\n`);

  const log = (line: string): void => void process.stderr.write(`offramp: ${line}\n`);
  const running = await startServer(config, log);
  log(`listening on ${running.url} (loading ${config.model})`);
  const loopback = config.host === 'localhost' || config.host === '::1' || config.host.startsWith('127.');
  if (!loopback && config.apiKeys.length === 0) log(`warning: listening on ${config.host} without --api-key: anyone who can reach it may use it`);
  if (config.apiKeys.length > 0) log(`API keys required (${config.apiKeys.length} accepted); /health is public`);
  if (onGlibc()) {
    const tunables = `GLIBC_TUNABLES=${process.env.GLIBC_TUNABLES ?? ''}`;
    log(hugePagesOn(process.env) ? `huge pages for the weights: on (${tunables})` : `huge pages for the weights: off (${tunables}; README, "Decoding speed")`);
  }
  if (config.debugRoutes) log('debug routes on: POST /debug/fault can crash or slow the engine, POST /debug/gc collects garbage (test use only)');

  let signals = 0;
  let onSignal: (signal: NodeJS.Signals) => void = () => {};
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    onSignal = (signal) => {
      signals += 1;
      if (signals === 1) return resolve(signal);
      log(`${signal} again: cutting the requests still in flight`);
      running.app.state.abortNow();
    };
  });
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    const first = await Promise.race([running.ready.then(() => null), signalled]);
    if (first === null) {
      log(`ready: ${running.url}/v1 serves ${running.app.state.model?.id}`);
      const end = await Promise.race([signalled, running.died]);
      // The engine could not be restarted: stop, and let the exit status tell a supervisor to restart us.
      if (end instanceof Error) throw end;
      log(`${end}: finishing ${running.app.state.inFlight} request(s) in flight (grace ${config.shutdownGraceSeconds} s)`);
    }
  } finally {
    await running.stop();
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
  log('stopped');
}
