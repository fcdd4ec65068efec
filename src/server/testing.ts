/**
 * Test support for the server: a scriptable fake engine, a toy tokenizer,
 * and helpers to call the app in-process and read its SSE frames. Used by
 * the `*.test.ts` files beside it; never by the server itself.
 *
 * @module
 */
import { createParser } from 'eventsource-parser';
import type { EngineEvent, EngineHealth, EngineStats, Fault, ForcedExits, GenerateRequest, ServedEngine } from '../engine/index.js';
import type { Hono } from 'hono';
import type { PromptTokenizer } from './prompt.js';
import type { ModelInfo } from './state.js';

/** One id per character (code + 3), after a BOS of 1. Ids stay below 300 for ASCII. */
export class CharTokenizer implements PromptTokenizer {
  readonly vocabSize = 300;
  readonly bosToken = '<s>';
  readonly eosToken = '</s>';
  readonly encoded: string[] = [];
  constructor(readonly chatTemplate?: string) {}

  encode(text: string, addSpecialTokens = true): number[] {
    this.encoded.push(text);
    const ids = [...text].map((ch) => (ch.codePointAt(0)! % 296) + 3);
    return addSpecialTokens ? [1, ...ids] : ids;
  }
}

export const fakeModel = (tokenizer: PromptTokenizer = new CharTokenizer(), maxContext = 64): ModelInfo => ({
  id: 'fake-model',
  earlyExit: 'on',
  maxContext,
  tokenizer,
  created: 1700000000,
});

export type Script = (request: GenerateRequest, signal: AbortSignal | undefined) => AsyncIterable<EngineEvent>;

/** A token event from the full model (or from ramp `exitLayer`). */
export function token(requestId: string, text: string, exitLayer: number | null = null): EngineEvent {
  return { type: 'token', requestId, text, tokenIds: [7], exitLayer, confidence: exitLayer === null ? null : 0.9 };
}

/** Tokens of `pieces`, then `finished` with `reason` (usage counted from the request). */
export function tokens(pieces: string[], reason: 'stop' | 'length' = 'stop', finalText = ''): Script {
  return async function* (request) {
    for (const text of pieces) yield token(request.id, text);
    yield {
      type: 'finished',
      requestId: request.id,
      finishReason: reason,
      text: finalText,
      usage: { promptTokens: request.promptTokens.length, completionTokens: pieces.length },
    };
  };
}

/** A script that yields nothing: reading it rejects with `makeError()`, as an engine that cannot take the request fails. */
export function throwing(makeError: () => Error): Script {
  return () => ({ [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(makeError()) }) });
}

/** A promise with its resolve function outside. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open = (): void => {};
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** An engine that plays `script` and records what it was asked; a test sets its health, stats and restarts. */
export class FakeEngine implements ServedEngine {
  readonly requests: GenerateRequest[] = [];
  readonly aborted: string[] = [];
  readonly faults: Fault[] = [];
  readonly forced: ForcedExits[] = [];
  stats: EngineStats | null = null;
  health: EngineHealth = 'ready';
  restarts = 0;
  constructor(public script: Script = tokens(['Hello', ',', ' world'])) {}

  async *generate(request: GenerateRequest, signal?: AbortSignal): AsyncIterable<EngineEvent> {
    this.requests.push(request);
    signal?.addEventListener('abort', () => this.aborted.push(request.id));
    yield* this.script(request, signal);
  }

  injectFault(fault: Fault): void {
    this.faults.push(fault);
  }

  collectGarbage(): void {}

  forceExits(exits: ForcedExits): void {
    this.forced.push(exits);
  }
}

/** POSTs a JSON body (a string is sent as it is). */
export function post(app: Hono, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return Promise.resolve(
    app.request(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    }),
  );
}

/** The `data:` payloads of an SSE body, in order. */
export async function sseData(response: Response): Promise<string[]> {
  const data: string[] = [];
  const parser = createParser({ onEvent: (event) => data.push(event.data) });
  parser.feed(await response.text());
  return data;
}

/** The JSON payloads of an SSE body, checking that it ends with exactly one [DONE]. */
export async function sseChunks(response: Response): Promise<Record<string, unknown>[]> {
  const data = await sseData(response);
  if (data.at(-1) !== '[DONE]') throw new Error(`the stream does not end with [DONE]: ${JSON.stringify(data)}`);
  return data.slice(0, -1).map((d) => JSON.parse(d) as Record<string, unknown>);
}
