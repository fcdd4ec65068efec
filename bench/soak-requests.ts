/**
 * The soak's HTTP side: one request sent and its answer taken apart (status,
 * JSON body or SSE frames, text, how it ended), and the catalogue of
 * malformed requests with the status each must get.
 *
 * @module
 */
import { createParser } from 'eventsource-parser';

/** A generation request the soak knows the answer to. */
export interface SoakCase {
  id: string;
  path: '/v1/completions' | '/v1/chat/completions';
  /** The body without `stream`. */
  body: Record<string, unknown>;
}

/** How one exchange ended, as the client saw it. */
export interface Outcome {
  /** 0 when no response came (the request failed or was aborted). */
  status: number;
  /** ms (performance.now()) when the status, and when the last byte, arrived. */
  statusAtMs: number;
  endAtMs: number;
  /** The generated text (concatenated deltas for a stream). */
  text: string;
  /** stop | length from the answer; null if none came. */
  finishReason: string | null;
  /** Streams: the last frame was [DONE]. */
  done: boolean;
  /** An error object in the JSON body or in an SSE frame. */
  error: { message: string; code: string | null } | null;
  /** From the usage in the answer (streams: only with include_usage). */
  completionTokens: number;
  retryAfter: string | null;
  /** The client gave up (timeout) or hung up (planned disconnect). */
  aborted: boolean;
  /** fetch itself failed: connection refused or reset. */
  failed: string | null;
}

interface Choice {
  text?: string;
  delta?: { content?: string };
  message?: { content?: string | null };
  finish_reason?: string | null;
}

interface Chunk {
  choices?: Choice[];
  usage?: { completion_tokens?: number } | null;
  error?: { message: string; code: string | null };
}

export interface SendOptions {
  stream: boolean;
  /** Bearer key, or none. */
  apiKey?: string;
  /** Hang up after this many SSE frames (0: right after the headers), or after `abortAfterMs`. */
  abortAfterFrames?: number;
  abortAfterMs?: number;
  /** The longest the whole exchange may take before it counts as hung. */
  timeoutMs: number;
  includeUsage?: boolean;
}

/** Sends `soakCase` (streamed or not) and reads the answer to its end, never throwing. */
export async function send(baseUrl: string, soakCase: SoakCase, options: SendOptions): Promise<Outcome> {
  const body = { ...soakCase.body, stream: options.stream, ...(options.includeUsage && options.stream ? { stream_options: { include_usage: true } } : {}) };
  return exchange(baseUrl, soakCase.path, JSON.stringify(body), { 'content-type': 'application/json', ...auth(options.apiKey) }, options);
}

const auth = (apiKey: string | undefined): Record<string, string> => (apiKey ? { authorization: `Bearer ${apiKey}` } : {});

/** POSTs `body` and takes the answer apart. */
export async function exchange(
  baseUrl: string,
  path: string,
  body: string | Uint8Array,
  headers: Record<string, string>,
  options: Pick<SendOptions, 'abortAfterFrames' | 'abortAfterMs' | 'timeoutMs'>,
): Promise<Outcome> {
  const controller = new AbortController();
  let planned = false;
  const hangUp = (): void => {
    planned = true;
    controller.abort();
  };
  const timeout = setTimeout(() => controller.abort(), options.timeoutMs);
  const early = options.abortAfterMs !== undefined ? setTimeout(hangUp, options.abortAfterMs) : undefined;
  const outcome: Outcome = {
    status: 0,
    statusAtMs: 0,
    endAtMs: 0,
    text: '',
    finishReason: null,
    done: false,
    error: null,
    completionTokens: 0,
    retryAfter: null,
    aborted: false,
    failed: null,
  };
  try {
    const res = await fetch(`${baseUrl}${path}`, { method: 'POST', headers, body: body as BodyInit, signal: controller.signal });
    outcome.status = res.status;
    outcome.statusAtMs = performance.now();
    outcome.retryAfter = res.headers.get('retry-after');
    if ((res.headers.get('content-type') ?? '').startsWith('text/event-stream')) await readStream(res, outcome, options.abortAfterFrames, hangUp);
    else readJson(await res.text(), outcome);
  } catch (error) {
    if (controller.signal.aborted) outcome.aborted = true;
    else outcome.failed = (error as Error & { cause?: Error }).cause?.message ?? (error as Error).message;
  } finally {
    clearTimeout(timeout);
    clearTimeout(early);
    outcome.endAtMs = performance.now();
  }
  // A planned hang-up is not a hung request.
  if (outcome.aborted && planned) outcome.failed = null;
  return outcome;
}

function readJson(text: string, outcome: Outcome): void {
  let json: { choices?: Choice[]; usage?: { completion_tokens?: number }; error?: { message: string; code: string | null } };
  try {
    json = JSON.parse(text) as typeof json;
  } catch {
    outcome.error = { message: `not JSON: ${text.slice(0, 200)}`, code: null };
    return;
  }
  if (json.error) outcome.error = { message: json.error.message, code: json.error.code };
  const choice = json.choices?.[0];
  if (choice) {
    outcome.text = choice.text ?? choice.message?.content ?? '';
    outcome.finishReason = choice.finish_reason ?? null;
  }
  outcome.completionTokens = json.usage?.completion_tokens ?? 0;
}

async function readStream(res: Response, outcome: Outcome, abortAfterFrames: number | undefined, hangUp: () => void): Promise<void> {
  let frames = 0;
  const parser = createParser({
    onEvent: (event) => {
      frames += 1;
      if (outcome.done) outcome.error ??= { message: 'a frame after [DONE]', code: null };
      if (event.data === '[DONE]') return void (outcome.done = true);
      const chunk = JSON.parse(event.data) as Chunk;
      if (chunk.error) outcome.error = { message: chunk.error.message, code: chunk.error.code };
      const choice = chunk.choices?.[0];
      if (choice) {
        outcome.text += choice.text ?? choice.delta?.content ?? '';
        if (choice.finish_reason) outcome.finishReason = choice.finish_reason;
      }
      if (chunk.usage?.completion_tokens !== undefined) outcome.completionTokens = chunk.usage.completion_tokens;
    },
  });
  if (abortAfterFrames === 0) return hangUp();
  const decoder = new TextDecoder();
  for await (const bytes of res.body as AsyncIterable<Uint8Array>) {
    parser.feed(decoder.decode(bytes, { stream: true }));
    if (abortAfterFrames !== undefined && frames >= abortAfterFrames) return hangUp();
  }
}

/** A request that must be refused, and the status it must get. */
export interface Malformed {
  name: string;
  status: number;
  path: string;
  body: string | Uint8Array;
  /** false: sent without the API key; 'wrong': with a wrong one. */
  key?: false | 'wrong';
}

/** Bad requests of every kind the server must refuse before inference. */
export function malformedCatalogue(maxBodyBytes: number): Malformed[] {
  const completions = '/v1/completions';
  const chat = '/v1/chat/completions';
  const json = (value: unknown) => JSON.stringify(value);
  const utf8 = new TextEncoder();
  return [
    { name: 'invalid JSON', status: 400, path: completions, body: '{"prompt": "Once' },
    { name: 'empty body', status: 400, path: chat, body: '' },
    { name: 'not an object', status: 400, path: chat, body: '[1, 2, 3]' },
    { name: 'wrong type', status: 400, path: completions, body: json({ prompt: 5 }) },
    { name: 'empty messages', status: 400, path: chat, body: json({ messages: [] }) },
    { name: 'lone surrogate', status: 400, path: completions, body: '{"prompt": "Once \\ud800 upon"}' },
    { name: 'invalid UTF-8', status: 400, path: completions, body: new Uint8Array([...utf8.encode('{"prompt": "'), 0xc3, 0x28, ...utf8.encode('"}')]) },
    { name: 'deep nesting', status: 400, path: chat, body: `{"messages": ${'['.repeat(5000)}${']'.repeat(5000)}}` },
    { name: 'max_tokens 1e9', status: 400, path: completions, body: json({ prompt: 'Once', max_tokens: 1e9 }) },
    { name: 'temperature -1', status: 400, path: completions, body: json({ prompt: 'Once', temperature: -1 }) },
    { name: 'top_p 2', status: 400, path: chat, body: json({ messages: [{ role: 'user', content: 'Hi' }], top_p: 2 }) },
    { name: 'stop list too long', status: 400, path: completions, body: json({ prompt: 'Once', stop: Array.from({ length: 20 }, (_, i) => `s${i}`) }) },
    { name: 'n = 2', status: 400, path: chat, body: json({ messages: [{ role: 'user', content: 'Hi' }], n: 2 }) },
    { name: 'prompt too long', status: 400, path: completions, body: json({ prompt: 'Once upon a time '.repeat(2000).slice(0, maxBodyBytes - 100) }) },
    { name: 'body too large', status: 413, path: completions, body: json({ prompt: 'y'.repeat(maxBodyBytes + 1) }) },
    { name: 'unknown model', status: 404, path: completions, body: json({ prompt: 'Once', model: 'gpt-9' }) },
    { name: 'no API key', status: 401, path: completions, body: json({ prompt: 'Once', max_tokens: 4 }), key: false },
    { name: 'wrong API key', status: 401, path: chat, body: json({ messages: [{ role: 'user', content: 'Hi' }] }), key: 'wrong' },
  ];
}
