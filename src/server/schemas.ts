/**
 * Request bodies, as zod schemas. Fields OpenAI defines and we cannot honour
 * yet are refused by name (n > 1, logprobs, echo); fields we do not know are
 * ignored, as OpenAI-compatible servers do.
 *
 * @module
 */
import { z } from 'zod';
import type { Fault } from '../engine/index.js';

/** Most stop strings per request. OpenAI allows 4; the engine matches any number, so we allow a few more. */
export const MAX_STOP_STRINGS = 16;
/** Longest stop string, in characters: the engine checks each one against the text's tail at every token. */
export const MAX_STOP_LENGTH = 256;

/** A UTF-16 surrogate without its partner: JSON can carry one (`"\ud800"`), but it is not text and no tokenizer can encode it. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A string that reaches the tokenizer or the stop matcher: valid Unicode only. */
const text = () => z.string().refine((s) => !LONE_SURROGATE.test(s), 'contains a lone surrogate (an unpaired \\uD800-\\uDFFF escape): not valid Unicode text');

const stopString = text().min(1, 'a stop string must not be empty').max(MAX_STOP_LENGTH, `a stop string may have at most ${MAX_STOP_LENGTH} characters`);

const stop = z
  .union([stopString, z.array(stopString).max(MAX_STOP_STRINGS, `at most ${MAX_STOP_STRINGS} stop strings`)], {
    error: `must be a string or a list of at most ${MAX_STOP_STRINGS} strings`,
  })
  .nullish();

const refused = <T extends z.ZodType>(schema: T, accept: (value: z.infer<T>) => boolean, message: string) =>
  schema.nullish().refine((value) => value === null || value === undefined || accept(value), message);

/** Sampling and output fields that both endpoints share. */
const generationFields = {
  model: z.string().nullish(),
  /** Default: the rest of the context (as vLLM); see `resolveMaxTokens`. */
  max_tokens: z.number().int().positive().nullish(),
  /** The newer name of max_tokens; wins when both are given. */
  max_completion_tokens: z.number().int().positive().nullish(),
  /** Default 1 (as OpenAI); 0 means greedy. */
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  /** 0 or -1 (vLLM's spelling): off. */
  top_k: z.number().int().min(-1).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  seed: z.number().int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER).nullish(),
  stop,
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  n: refused(z.number().int(), (n) => n === 1, 'only n = 1 is supported'),
  user: z.string().nullish(),
  /**
   * offramp's extension: "on" (or true) streams tokens from early-exit ramps,
   * "lossless" lets ramps draft tokens that the full model verifies (the text
   * is exactly the full model's), "off" (or false) uses the full model only;
   * absent: the server's --early-exit mode.
   */
  early_exit: z.union([z.boolean(), z.enum(['on', 'off', 'lossless'])]).nullish(),
};

const textPart = z.object({ type: z.literal('text'), text: text() });
const messageContent = z.union([text(), z.array(textPart)], { error: 'must be a string or a list of text parts ({"type": "text", "text": …})' });

export const ChatMessageSchema = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
  content: messageContent.nullish(),
  name: text().nullish(),
});
export type ChatMessage = z.infer<typeof ChatMessageSchema>;

export const ChatCompletionSchema = z.object({
  ...generationFields,
  messages: z.array(ChatMessageSchema).min(1, 'messages must not be empty'),
  logprobs: refused(z.boolean(), (v) => !v, 'logprobs are not supported yet'),
});
export type ChatCompletionBody = z.infer<typeof ChatCompletionSchema>;

const tokenId = z.number().int().nonnegative();

export const CompletionSchema = z.object({
  ...generationFields,
  prompt: z.union([text(), z.array(text()).length(1), z.array(tokenId).min(1), z.array(z.array(tokenId).min(1)).length(1)], {
    error: 'must be a string or a list of token ids (or a list holding one of them: batched prompts are not supported)',
  }),
  echo: refused(z.boolean(), (v) => !v, 'echo is not supported'),
  logprobs: refused(z.number().int(), () => false, 'logprobs are not supported yet'),
  best_of: refused(z.number().int(), (n) => n === 1, 'only best_of = 1 is supported'),
  suffix: refused(z.string(), (s) => s === '', 'suffix is not supported'),
});
export type CompletionBody = z.infer<typeof CompletionSchema>;

/** What both endpoints have in common once parsed. */
export type GenerationBody = ChatCompletionBody | CompletionBody;

/** POST /debug/exits (tests, behind --debug-routes): ramps and thresholds, and a draft plan (null: none), forced and frozen. */
/** POST /debug/fault (test and soak use only; see Fault). */
export const FaultSchema = z
  .discriminatedUnion('kind', [
    z.object({ kind: z.literal('crash') }),
    z.object({ kind: z.literal('step') }),
    z.object({ kind: z.literal('slow'), step_ms: z.number().int().min(0).max(10_000) }),
  ])
  .transform((fault): Fault => (fault.kind === 'slow' ? { kind: 'slow', stepMs: fault.step_ms } : fault));

export const ForceExitsSchema = z.object({
  ramps: z.array(z.object({ layer: z.number().int().min(0), threshold: z.number().min(0).max(1) })).optional(),
  draft: z.object({ layer: z.number().int().min(0), minConfidence: z.number().min(0).max(1), maxDraft: z.number().int().min(1) }).nullish(),
});
