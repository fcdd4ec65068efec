/**
 * The OpenAI response objects, chunk by chunk: `chat.completion(.chunk)` and
 * `text_completion`. Pure functions of what the engine produced.
 *
 * @module
 */
import type { TokenEvent, Usage } from '../engine/index.js';

export type Endpoint = 'chat' | 'completion';

/** What every object of one response shares. */
export interface ResponseMeta {
  endpoint: Endpoint;
  /** One id per request (`chatcmpl-…` / `cmpl-…`). */
  id: string;
  /** Unix seconds. */
  created: number;
  model: string;
  /** stream_options.include_usage: every chunk carries `usage: null`, then one usage chunk comes last. */
  includeUsage: boolean;
}

export type OpenAiFinishReason = 'stop' | 'length';

export interface OpenAiUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function toOpenAiUsage(usage: Usage): OpenAiUsage {
  return { prompt_tokens: usage.promptTokens, completion_tokens: usage.completionTokens, total_tokens: usage.promptTokens + usage.completionTokens };
}

function envelope(meta: ResponseMeta, choices: unknown[]): Record<string, unknown> {
  const object = meta.endpoint === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  const chunk: Record<string, unknown> = { id: meta.id, object, created: meta.created, model: meta.model, choices };
  if (meta.includeUsage) chunk.usage = null;
  return chunk;
}

/** The first chat chunk: the assistant's role, no content yet (as OpenAI sends it). Completions have none. */
export function roleChunk(meta: ResponseMeta): Record<string, unknown> | null {
  if (meta.endpoint !== 'chat') return null;
  return envelope(meta, [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]);
}

/**
 * A chunk of new text, or (with `finishReason`) the last chunk of the choice.
 * A token released by an early-exit ramp carries offramp's `exit_layer`
 * extension (the ramp's layer) and `exit_confidence` (the ramp's
 * confidence); a lossless draft the full model verified also carries
 * `exit_verified: true`. Standard clients ignore them.
 */
export function contentChunk(
  meta: ResponseMeta,
  text: string,
  finishReason: OpenAiFinishReason | null = null,
  exit: Pick<TokenEvent, 'exitLayer' | 'confidence' | 'verified'> | null = null,
): Record<string, unknown> {
  const extension =
    exit === null || exit.exitLayer === null
      ? {}
      : {
          exit_layer: exit.exitLayer,
          ...(exit.confidence !== null && { exit_confidence: exit.confidence }),
          ...(exit.verified && { exit_verified: true }),
        };
  if (meta.endpoint === 'chat') {
    const delta = text ? { content: text } : {};
    return envelope(meta, [{ index: 0, delta, logprobs: null, finish_reason: finishReason, ...extension }]);
  }
  return envelope(meta, [{ index: 0, text, logprobs: null, finish_reason: finishReason, ...extension }]);
}

/** The usage chunk sent after the last choice chunk when include_usage is on. */
export function usageChunk(meta: ResponseMeta, usage: Usage): Record<string, unknown> {
  return { ...envelope({ ...meta, includeUsage: false }, []), usage: toOpenAiUsage(usage) };
}

/** The whole answer of a non-streamed request. */
export function completeResponse(meta: ResponseMeta, text: string, finishReason: OpenAiFinishReason, usage: Usage): Record<string, unknown> {
  const base = { id: meta.id, created: meta.created, model: meta.model };
  if (meta.endpoint === 'chat') {
    return {
      ...base,
      object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: finishReason }],
      usage: toOpenAiUsage(usage),
    };
  }
  return { ...base, object: 'text_completion', choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason }], usage: toOpenAiUsage(usage) };
}
