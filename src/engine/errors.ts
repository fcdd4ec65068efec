/**
 * The engine's one error kind, from where it is thrown to the HTTP edge
 * (server/errors.ts `fromEngineError` turns it into a response, once).
 * It crosses the worker boundary as plain data (`EngineErrorData`) and is
 * rebuilt as the same class on the other side.
 *
 * @module
 */
import { DeviceError, ModelFormatError } from '../model/index.js';

/**
 * `refused`: the request cannot run as asked (too long, empty): the
 * client's to fix. `restarting`: the engine failed and a new one is
 * loading: retry shortly. `dead`: the engine cannot serve any more.
 */
export type EngineErrorKind = 'refused' | 'restarting' | 'dead';

/** An EngineError as it crosses the worker boundary. */
export interface EngineErrorData {
  kind: EngineErrorKind;
  message: string;
  userFixable: boolean;
}

export class EngineError extends Error {
  override name = 'EngineError';
  constructor(
    readonly kind: EngineErrorKind,
    message: string,
    /** The user can fix it (a refused request, a model that does not load, a wrong --device): main.ts prints one line. */
    readonly userFixable = kind === 'refused',
  ) {
    super(message);
  }

  toData(): EngineErrorData {
    return { kind: this.kind, message: this.message, userFixable: this.userFixable };
  }

  static fromData(data: EngineErrorData): EngineError {
    if (data.kind === 'refused') return new RequestError(data.message);
    if (data.kind === 'restarting') return new EngineRestartingError(data.message);
    return new EngineDeadError(data.message, data.userFixable);
  }
}

/** A request the engine refuses before it runs (too long, empty). */
export class RequestError extends EngineError {
  override name = 'RequestError';
  constructor(message: string) {
    super('refused', message);
  }
}

/** The worker failed and a new one is loading: retry shortly. */
export class EngineRestartingError extends EngineError {
  override name = 'EngineRestartingError';
  constructor(message: string) {
    super('restarting', message);
  }
}

/** The engine could not start, or died and could not be restarted. */
export class EngineDeadError extends EngineError {
  override name = 'EngineDeadError';
  constructor(message: string, userFixable = false) {
    super('dead', message, userFixable);
  }
}

/** Whether a model load failed for a reason the user can fix (a bad model directory, a wrong --device). */
export function isUserFixableLoadError(error: unknown): boolean {
  return error instanceof ModelFormatError || error instanceof DeviceError;
}

/** Why a request cannot run: no prompt, a prompt that fills the context, or a completion that does not fit after it. */
export type RequestProblem = 'empty' | 'prompt fills the context' | 'completion does not fit';

/**
 * Why a request of `numPromptTokens` that asks for `maxTokens` more cannot
 * run in a context of `maxContext` positions, or null when it can: the one
 * check both the engine and the server make (the server first, to name the
 * field at fault).
 */
export function requestProblem(numPromptTokens: number, maxTokens: number, maxContext: number): RequestProblem | null {
  if (numPromptTokens === 0) return 'empty';
  if (numPromptTokens >= maxContext) return 'prompt fills the context';
  if (numPromptTokens + maxTokens > maxContext) return 'completion does not fit';
  return null;
}
