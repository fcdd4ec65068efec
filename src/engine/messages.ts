/**
 * What the engine's worker thread and the HTTP side say to each other: a few
 * plain, structured-clone-safe message types, defined once for both.
 *
 * main → worker: `submit`, `abort`, `close`.
 * worker → main: `ready` (or `fatal`), then `token` / `finished` / `error`
 * per request, and `stats` whenever the engine's occupancy changes.
 *
 * @module
 */
import type { ControllerState } from '../exits/index.js';
import type { RuntimeOptions } from '../model/index.js';
import type { EngineOptions } from './engine.js';
import type { FinishedEvent, GenerateRequest, TokenEvent } from './types.js';

/** What the worker needs to start: `workerData`. */
export interface WorkerInit {
  /** A prepared model directory (resolveModel's result). */
  dir: string;
  runtime: RuntimeOptions;
  engine: EngineOptions;
  /** How often the worker checks whether its stats changed. */
  statsIntervalMs: number;
}

/** The engine's occupancy, as /metrics shows it. */
export interface EngineStats {
  /** Sequences holding a KV slot. */
  running: number;
  /** Sequences admitted by the engine but waiting for a slot. */
  waiting: number;
  freeSlots: number;
  /** The early-exit controller's state (GET /exits), or null with exits off. */
  exits: ControllerState | null;
}

// --- main → worker

export interface SubmitMessage {
  type: 'submit';
  request: GenerateRequest;
}

export interface AbortMessage {
  type: 'abort';
  requestId: string;
}

/** Release the model and exit. */
export interface CloseMessage {
  type: 'close';
}

export type ToWorkerMessage = SubmitMessage | AbortMessage | CloseMessage;

// --- worker → main

export type TokenMessage = TokenEvent;
export type FinishedMessage = FinishedEvent;

export interface ErrorMessage {
  type: 'error';
  requestId: string;
  message: string;
  /** True when the engine refused the request before running it (RequestError): the client's fault. */
  refused: boolean;
}

export interface ReadyMessage {
  type: 'ready';
  stats: EngineStats;
}

export interface StatsMessage {
  type: 'stats';
  stats: EngineStats;
}

/** The worker cannot go on (the model failed to load, or the loop died). */
export interface FatalMessage {
  type: 'fatal';
  /** The error's class name (ModelFormatError, DeviceError, …), so the main thread can tell user errors from bugs. */
  name: string;
  message: string;
}

export type FromWorkerMessage = TokenMessage | FinishedMessage | ErrorMessage | ReadyMessage | StatsMessage | FatalMessage;
