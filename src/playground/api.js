// @ts-check
/**
 * Talking to the offramp server: the models list, the controller state,
 * and streamed completions read with eventsource-parser. Failures become a
 * `Problem` whose message is written for a person, not a programmer.
 *
 * @module
 */
import { createParser } from 'eventsource-parser';

/** @typedef {{ id: string, max_model_len?: number }} Model */

/**
 * One streamed token, or the end of the reply.
 * @typedef {{ type: 'token', text: string, layer: number | null, confidence: number | null, verified: boolean }} TokenEvent
 * @typedef {{ type: 'finish', reason: string, completionTokens: number | null }} FinishEvent
 * @typedef {TokenEvent | FinishEvent} StreamEvent
 */

/**
 * GET /exits (the server's ControllerState), the fields the page reads.
 * @typedef {{ layer: number, threshold: number, exitRate: number, utilityMs: number | null }} RampState
 * @typedef {{ enabled: boolean, accuracy?: number, windowedAgreement?: number | null, fullModelRate?: number | null, tokens?: number, ramps?: RampState[] }} ExitsState
 */

/** The Bearer key for servers started with API keys; empty: none sent. */
let apiKey = '';

/**
 * Sets the key every later request sends (`Authorization: Bearer KEY`).
 * @param {string} key
 */
export function setApiKey(key) {
  apiKey = key.trim();
}

/** @param {Record<string, string>} [headers] */
function withAuth(headers = {}) {
  return apiKey ? { ...headers, authorization: `Bearer ${apiKey}` } : headers;
}

/** A failure to show as it is: `message` is plain words; `status` the HTTP status (0: no answer). */
export class Problem extends Error {
  /**
   * @param {string} message
   * @param {number} status
   */
  constructor(message, status) {
    super(message);
    this.name = 'Problem';
    this.status = status;
  }
}

/**
 * Plain words for an OpenAI-shaped error answer.
 * @param {number} status
 * @param {{ message?: string, code?: string | null }} error
 * @param {string | null} retryAfter the Retry-After header (seconds)
 */
export function describeError(status, error, retryAfter) {
  const detail = error.message ? ` (${error.message})` : '';
  if (status === 401) {
    return error.code === 'invalid_api_key' && error.message?.startsWith('Incorrect')
      ? 'The server did not accept this API key. Check the API key under Settings.'
      : 'This server needs an API key: enter it under Settings → API key.';
  }
  if (status === 429) {
    const wait = retryAfter ? ` Try again in ${retryAfter} s.` : ' Try again in a moment.';
    if (error.code === 'queue_timeout') return `The server is busy: this request waited too long for a free slot.${wait}`;
    return `The server is busy: too many requests at once.${wait}`;
  }
  if (error.code === 'context_length_exceeded') {
    return `Too long for this model: the prompt plus Max tokens do not fit in its context. Lower Max tokens or shorten the conversation.${detail}`;
  }
  if (status === 400) return `The server refused this request as invalid${detail}. Check the settings and try again.`;
  if (status === 404) return `Not found on this server${detail}.`;
  if (status === 413) return 'The request is too large for the server. Shorten the conversation.';
  if (status === 503) return `The server cannot answer right now: it is loading the model or shutting down. Try again shortly${detail}.`;
  return `The server failed (HTTP ${status})${detail}.`;
}

/**
 * A Problem from a non-2xx response.
 * @param {Response} res
 */
async function problemFrom(res) {
  /** @type {{ message?: string, code?: string | null }} */
  let error = {};
  try {
    const body = /** @type {{ error?: { message?: string, code?: string | null } }} */ (await res.json());
    error = body.error ?? {};
  } catch {
    // Not JSON (a proxy's page): the status alone has to do.
  }
  return new Problem(describeError(res.status, error, res.headers.get('retry-after')), res.status);
}

/**
 * fetch, with "no answer at all" turned into a Problem (aborts pass through).
 * @param {string} url
 * @param {RequestInit} [init]
 */
async function request(url, init) {
  try {
    return await fetch(url, init);
  } catch (error) {
    if (error instanceof DOMException && error.name === 'AbortError') throw error;
    throw new Problem('Could not reach the server. Is offramp still running?', 0);
  }
}

/** The served models (GET /v1/models). */
export async function listModels() {
  const res = await request('/v1/models', { headers: withAuth() });
  if (!res.ok) throw await problemFrom(res);
  const body = /** @type {{ data: Model[] }} */ (await res.json());
  return body.data;
}

/**
 * The exit controller's state (GET /exits).
 * @param {AbortSignal} [signal]
 * @returns {Promise<ExitsState>}
 */
export async function fetchExits(signal) {
  const res = await request('/exits', signal ? { signal, headers: withAuth() } : { headers: withAuth() });
  if (!res.ok) throw await problemFrom(res);
  return /** @type {ExitsState} */ (await res.json());
}

/**
 * One chunk's choice, as offramp streams it (chat `delta.content` or completion `text`, plus its extensions).
 * @typedef {{ delta?: { content?: string | null }, text?: string, finish_reason?: string | null, exit_layer?: number, exit_confidence?: number, exit_verified?: boolean }} Choice
 * @typedef {{ choices?: Choice[], usage?: { completion_tokens: number } | null, error?: { message?: string, code?: string | null } }} Chunk
 */

/**
 * POSTs a streamed request and yields its tokens, then one finish event.
 * Aborting `signal` ends the request (the server frees the slot) and makes
 * the iteration throw an AbortError.
 *
 * @param {'/v1/chat/completions' | '/v1/completions'} path
 * @param {Record<string, unknown>} body without `stream` (added here)
 * @param {AbortSignal} signal
 * @returns {AsyncGenerator<StreamEvent>}
 */
export async function* streamCompletion(path, body, signal) {
  const res = await request(path, {
    method: 'POST',
    headers: withAuth({ 'content-type': 'application/json' }),
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
    signal,
  });
  if (!res.ok) throw await problemFrom(res);
  if (!res.body) throw new Problem('The server answered without a stream.', res.status);

  /** @type {string[]} */
  const frames = [];
  const parser = createParser({ onEvent: (event) => void frames.push(event.data) });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  /** @type {string | null} */
  let finishReason = null;
  /** @type {number | null} */
  let completionTokens = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.feed(value);
      for (const data of frames.splice(0)) {
        if (data === '[DONE]') {
          if (finishReason === null) throw new Problem('The reply ended without finishing.', res.status);
          // The usage chunk (include_usage) comes between the last choice and [DONE], with the exact token count.
          yield { type: 'finish', reason: finishReason, completionTokens };
          return;
        }
        const chunk = /** @type {Chunk} */ (JSON.parse(data));
        // An error after the 200 went out arrives as a frame of its own.
        if (chunk.error) throw new Problem(`The reply was cut off: ${chunk.error.message ?? 'the server failed'}.`, res.status);
        if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
        const choice = chunk.choices?.[0];
        if (!choice) continue;
        const text = choice.delta?.content ?? choice.text ?? '';
        if (text)
          yield {
            type: 'token',
            text,
            layer: choice.exit_layer ?? null,
            confidence: choice.exit_confidence ?? null,
            verified: choice.exit_verified === true,
          };
        if (choice.finish_reason) finishReason = choice.finish_reason;
      }
    }
  } finally {
    // Ends the body when the reader stops early (a no-op once it is done or aborted).
    await reader.cancel().catch(() => {});
  }
  throw new Problem('The connection closed before the reply finished.', res.status);
}
