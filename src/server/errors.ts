/**
 * OpenAI-shaped errors: one ApiError carries the status and the body's
 * fields; one toErrorResponse() builds the response for every failure.
 *
 * @module
 */
import type { z } from 'zod';
import { EngineError } from '../engine/index.js';

/** OpenAI's error body. */
export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** The `type` OpenAI (and vLLM) use for each status. */
const TYPE_BY_STATUS: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'invalid_request_error',
  404: 'invalid_request_error',
  413: 'invalid_request_error',
  429: 'rate_limit_exceeded',
  500: 'server_error',
  503: 'service_unavailable',
};

export interface ApiErrorFields {
  /** The request field at fault (`messages[0].content`), as OpenAI's `param`. */
  param?: string | null;
  /** A machine-readable reason (`context_length_exceeded`, `model_not_found`). */
  code?: string | null;
  /** Overrides the type derived from the status. */
  type?: string;
  /** Seconds, for 429 and 503: sent as Retry-After. */
  retryAfter?: number;
  /** More response headers (WWW-Authenticate on a 401). */
  headers?: Record<string, string>;
}

/** A failure with an HTTP status that the client is told about as it is. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: 400 | 401 | 404 | 413 | 429 | 500 | 503,
    message: string,
    readonly fields: ApiErrorFields = {},
  ) {
    super(message);
  }

  get body(): ErrorBody {
    const { param = null, code = null, type = TYPE_BY_STATUS[this.status] ?? 'server_error' } = this.fields;
    return { error: { message: this.message, type, param, code } };
  }
}

/** The response for any error: an ApiError as it is, anything else as a 500 that hides internals. */
export function toErrorResponse(error: unknown): Response {
  const apiError = error instanceof ApiError ? error : new ApiError(500, 'internal server error');
  if (!(error instanceof ApiError)) console.error('offramp: unexpected error:', error);
  const headers: Record<string, string> = { ...apiError.fields.headers, 'content-type': 'application/json' };
  if (apiError.fields.retryAfter !== undefined) headers['retry-after'] = String(apiError.fields.retryAfter);
  return new Response(JSON.stringify(apiError.body), { status: apiError.status, headers });
}

/**
 * The engine's refusal or unavailability as the client's answer: the one
 * place an engine error becomes HTTP. A refusal (too long, empty) is the
 * client's to fix; anything else means the engine cannot take requests now.
 */
export function fromEngineError(error: unknown): ApiError {
  if (error instanceof EngineError && error.kind === 'refused') return new ApiError(400, error.message, { code: 'invalid_request' });
  const message = error instanceof Error ? error.message : String(error);
  return new ApiError(503, `the engine is unavailable: ${message}`, { code: 'engine_unavailable', retryAfter: 1 });
}

/** `messages[0].content` for zod's path `['messages', 0, 'content']`. */
function formatPath(path: readonly PropertyKey[]): string | null {
  let out = '';
  for (const key of path) out += typeof key === 'number' ? `[${key}]` : `${out ? '.' : ''}${String(key)}`;
  return out || null;
}

/** A 400 naming the first invalid field of a body that failed its schema. */
export function fromZodError(error: z.ZodError): ApiError {
  const issue = error.issues[0];
  if (!issue) return new ApiError(400, 'invalid request body');
  const param = formatPath(issue.path);
  const missing = issue.code === 'invalid_type' && issue.message.endsWith('received undefined');
  const message = missing ? 'is required' : issue.message;
  return new ApiError(400, param ? `${param}: ${message}` : message, { param, code: missing ? 'missing_required_parameter' : 'invalid_value' });
}
