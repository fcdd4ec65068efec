/**
 * Runs one admitted request on the engine and answers it: one JSON body, or
 * an SSE stream of chunks ending in `data: [DONE]`.
 *
 * The first engine event is awaited before any header goes out, so a
 * request the engine refuses is still a plain JSON 4xx (as llama.cpp's
 * server does). After that the status is 200, and a failure can only be an
 * `error` frame in the stream.
 *
 * Waiting for that first event is bounded by the queue timeout: a request
 * that gets no slot (or whose prompt has not run) in time is withdrawn from
 * the engine and answered 429 `queue_timeout` with Retry-After. 429, not
 * 503, because it is the same condition as a full queue (the server is
 * overloaded and the client should back off and retry), found out later;
 * a 5xx from this server always means something failed.
 *
 * @module
 */
import type { Context } from 'hono';
import type { EngineClient, EngineEvent, GenerateRequest } from '../engine/index.js';
import { ApiError, fromEngineError } from './errors.js';
import { completeResponse, contentChunk, roleChunk, usageChunk, type ResponseMeta } from './format.js';
import { SSE_HEADERS, SseStream } from './sse.js';
import type { RequestTimer } from './metrics.js';
import type { Admission } from './state.js';

export interface Job {
  meta: ResponseMeta;
  request: GenerateRequest;
  stream: boolean;
  /** Longest wait for the first engine event; 0: no limit. */
  queueTimeoutMs: number;
  /** Retry-After (seconds) on a queue timeout. */
  retryAfterSeconds: number;
}

/** The error for an event stream that failed (or was cut by shutdown) rather than finishing. */
function failure(event: EngineEvent | undefined, admission: Admission): ApiError {
  if (admission.shutdownSignal.aborted) return new ApiError(503, 'the server shut down before this request finished', { code: 'shutting_down' });
  if (event?.type === 'error') return new ApiError(500, `generation failed: ${event.message}`, { code: 'engine_error' });
  return new ApiError(500, 'generation ended without finishing', { code: 'engine_error' });
}

/** The first engine event, or `timedOut` if none comes within `timeoutMs` (0: wait for ever). */
async function firstEvent(events: AsyncIterator<EngineEvent>, timeoutMs: number): Promise<IteratorResult<EngineEvent> | 'timedOut'> {
  const next = events.next();
  if (timeoutMs <= 0) return next;
  // The race's loser still settles later; nobody may be left holding an unobserved rejection.
  next.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timedOut'>((resolve) => (timer = setTimeout(() => resolve('timedOut'), timeoutMs)));
  try {
    return await Promise.race([next, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Answers `job` from `engine`. Takes ownership of `admission` (calls done()
 * when the answer is over, however it ends).
 */
export async function respond(c: Context, engine: EngineClient, job: Job, admission: Admission, timer: RequestTimer): Promise<Response> {
  const { meta, request } = job;
  // Ends the engine request: client gone (before or during the stream), or shutdown grace over.
  const controller = new AbortController();
  const abort = (): void => controller.abort();
  const clientSignal = c.req.raw.signal;
  clientSignal.addEventListener('abort', abort);
  admission.shutdownSignal.addEventListener('abort', abort);
  const cleanup = (): void => {
    clientSignal.removeEventListener('abort', abort);
    admission.shutdownSignal.removeEventListener('abort', abort);
    admission.done();
  };

  const events = engine.generate(request, controller.signal)[Symbol.asyncIterator]();
  let next: IteratorResult<EngineEvent>;
  try {
    const first = await firstEvent(events, job.queueTimeoutMs);
    if (first === 'timedOut') {
      // Withdraw it: the engine drops it from its queue (or its slot) at the next step boundary.
      controller.abort();
      cleanup();
      void events.return?.()?.catch(() => {});
      const seconds = job.queueTimeoutMs / 1000;
      throw new ApiError(429, `the request waited ${seconds} s in the queue without starting (the server is overloaded); retry later`, {
        code: 'queue_timeout',
        retryAfter: job.retryAfterSeconds,
      });
    }
    next = first;
  } catch (error) {
    if (error instanceof ApiError) throw error;
    cleanup();
    throw fromEngineError(error);
  }
  const first = next.done ? undefined : next.value;
  if (!first || first.type === 'error' || (first.type === 'finished' && first.finishReason === 'abort')) {
    // Aborted before its first token: the client left while waiting, or shutdown cut it.
    if (first?.type === 'finished') timer.finish(first.finishReason, first.usage);
    cleanup();
    await events.return?.();
    throw failure(first, admission);
  }
  admission.started();

  if (!job.stream) {
    try {
      let text = '';
      for (; !next.done; next = await events.next()) {
        const event = next.value;
        if (event.type === 'token') {
          timer.token(event.exitLayer);
          text += event.text;
        } else if (event.type === 'finished' && (event.finishReason === 'stop' || event.finishReason === 'length')) {
          timer.finish(event.finishReason, event.usage);
          return c.json(completeResponse(meta, text + event.text, event.finishReason, event.usage));
        } else {
          throw failure(event, admission);
        }
      }
      throw failure(undefined, admission);
    } finally {
      cleanup();
      await events.return?.();
    }
  }

  const sse = new SseStream(abort);
  // streamEvents logs what fails inside the stream; this catches only what could fail after it (ending the iterator).
  void streamEvents(sse, next, events, meta, admission, timer, cleanup).catch((error) => console.error('offramp: stream cleanup failed:', error));
  return c.body(sse.body, 200, SSE_HEADERS);
}

/** Writes the events from `first` on as SSE frames, ending with [DONE]. */
async function streamEvents(
  sse: SseStream,
  first: IteratorResult<EngineEvent>,
  events: AsyncIterator<EngineEvent>,
  meta: ResponseMeta,
  admission: Admission,
  timer: RequestTimer,
  cleanup: () => void,
): Promise<void> {
  try {
    const role = roleChunk(meta);
    if (role) sse.send(role);
    for (let next = first; !next.done; next = await events.next()) {
      const event = next.value;
      if (event.type === 'token') {
        timer.token(event.exitLayer);
        if (event.text) sse.send(contentChunk(meta, event.text, null, event));
        continue;
      }
      if (event.type === 'finished' && (event.finishReason === 'stop' || event.finishReason === 'length')) {
        timer.finish(event.finishReason, event.usage);
        const held = event.text ? [contentChunk(meta, event.text)] : [];
        const usage = meta.includeUsage ? [usageChunk(meta, event.usage)] : [];
        sse.send(...held, contentChunk(meta, '', event.finishReason), ...usage);
      } else {
        // Aborted (the client left, or the shutdown grace ran out) or failed.
        if (event.type === 'finished') timer.finish(event.finishReason, event.usage);
        // Whoever is still listening learns why the stream ends early (OpenAI clients raise it).
        if (event.type === 'error' || admission.shutdownSignal.aborted) sse.send(failure(event, admission).body);
      }
      break;
    }
    sse.done();
  } catch (error) {
    console.error('offramp: stream failed:', error);
    sse.send(new ApiError(500, 'the stream failed').body);
    sse.close();
  } finally {
    cleanup();
    await events.return?.();
  }
}
