/**
 * From request to prompt token ids: chat messages through the model's chat
 * template (or a plain one), completion prompts as text or ids.
 *
 * @module
 */
import { Template } from '@huggingface/jinja';
import { ApiError } from './errors.js';
import type { ChatMessage, CompletionBody } from './schemas.js';

/** What the server needs of a tokenizer (TextTokenizer has it). */
export interface PromptTokenizer {
  /** Valid ids are 0..vocabSize-1. */
  readonly vocabSize: number;
  encode(text: string, addSpecialTokens?: boolean): number[];
  /** Jinja chat template (tokenizer_config.json's chat_template), when the model has one. */
  readonly chatTemplate?: string | undefined;
  readonly bosToken?: string | undefined;
  readonly eosToken?: string | undefined;
}

function messageText(message: ChatMessage): string {
  const { content } = message;
  if (content === null || content === undefined) return '';
  return typeof content === 'string' ? content : content.map((part) => part.text).join('\n');
}

const PLAIN_ROLE_LABEL: Record<ChatMessage['role'], string | null> = {
  system: null,
  developer: null,
  user: 'User',
  assistant: 'Assistant',
  tool: 'Tool',
};

/**
 * The template for models without one (llama2.c's stories have none): one
 * line per message, system text as it is, the others labelled, then the
 * assistant's cue. Encoded with the tokenizer's special tokens (BOS).
 *
 *     You are a storyteller.
 *     User: Tell me about a cat.
 *     Assistant:
 */
export function renderPlainChat(messages: readonly ChatMessage[]): string {
  const lines = messages.map((message) => {
    const label = PLAIN_ROLE_LABEL[message.role];
    return label ? `${label}: ${messageText(message)}` : messageText(message);
  });
  return `${lines.join('\n')}\nAssistant:`;
}

/** Characters per token assumed when the tokenizer's longest piece is not known. */
export const DEFAULT_MAX_CHARS_PER_TOKEN = 32;

/**
 * The most characters one token of `tokenizer` decodes to (plus one for a
 * leading space the tokenizer may add): a prompt longer than
 * `maxContext` times this cannot fit, and is refused without tokenizing it.
 * Tokenizing is synchronous and costs microseconds per character, so a
 * megabyte prompt would hold the event loop for seconds. One pass over the
 * vocabulary at start-up (50k pieces: about 0.25 s).
 */
export function maxCharsPerToken(tokenizer: { readonly vocabSize: number; decode(ids: readonly number[]): string }): number {
  let longest = 1;
  for (let id = 0; id < tokenizer.vocabSize; id++) longest = Math.max(longest, tokenizer.decode([id]).length);
  return longest + 1;
}

/** Throws the 400 for a prompt text that cannot fit `maxChars` (see maxCharsPerToken) without tokenizing it. */
function checkLength(text: string, maxChars: number, maxContext: number, param: string): void {
  if (text.length <= maxChars) return;
  throw new ApiError(
    400,
    `This model's maximum context length is ${maxContext} tokens, and the ${param} has ${text.length} characters, more than that many tokens can hold (at most ${maxChars} characters). Please shorten the ${param}.`,
    { param, code: 'context_length_exceeded' },
  );
}

/** How long a prompt may be, in characters: see maxCharsPerToken. */
export interface PromptLimit {
  maxContext: number;
  maxCharsPerToken?: number | undefined;
}

const maxCharsOf = (limit: PromptLimit): number => limit.maxContext * (limit.maxCharsPerToken ?? DEFAULT_MAX_CHARS_PER_TOKEN);

/**
 * Refuses, before schema validation walks them element by element, arrays
 * longer than any prompt that fits could be: token ids beyond the context,
 * or more messages and content parts than the prompt's characters (each
 * adds at least one). Validating two million ids would hold the event loop
 * for a third of a second.
 */
export function refuseOversizedArrays(json: unknown, limit: PromptLimit): void {
  if (typeof json !== 'object' || json === null) return;
  const { prompt, messages } = json as { prompt?: unknown; messages?: unknown };
  if (Array.isArray(prompt)) {
    const first: unknown = prompt[0];
    const ids: unknown[] = Array.isArray(first) ? first : prompt;
    if (ids.length >= limit.maxContext) {
      throw new ApiError(
        400,
        `This model's maximum context length is ${limit.maxContext} tokens, and the prompt alone has ${ids.length}, leaving no room for a completion. Please shorten the prompt.`,
        {
          param: 'prompt',
          code: 'context_length_exceeded',
        },
      );
    }
  }
  if (Array.isArray(messages)) {
    let count = messages.length;
    for (const message of messages as unknown[]) {
      const content = typeof message === 'object' && message !== null ? (message as { content?: unknown }).content : undefined;
      if (Array.isArray(content)) count += content.length;
    }
    const maxChars = maxCharsOf(limit);
    if (count > maxChars) {
      throw new ApiError(
        400,
        `This model's maximum context length is ${limit.maxContext} tokens; ${count} messages and content parts cannot fit in it. Please shorten the messages.`,
        {
          param: 'messages',
          code: 'context_length_exceeded',
        },
      );
    }
  }
}

/** Turns chat messages into prompt ids with the model's chat template, when it has one. */
export class ChatPrompter {
  private readonly template: Template | null;

  constructor(private readonly tokenizer: PromptTokenizer) {
    let template: Template | null = null;
    if (tokenizer.chatTemplate) {
      try {
        template = new Template(tokenizer.chatTemplate);
      } catch (error) {
        console.warn(`offramp: the model's chat template does not parse (${(error as Error).message}); using the plain template`);
      }
    }
    this.template = template;
  }

  /** Prompt ids for `messages`; a 400 when the rendered text is too long for `limit` (see maxCharsPerToken). */
  encode(messages: readonly ChatMessage[], limit: PromptLimit = { maxContext: Infinity }): number[] {
    const maxChars = maxCharsOf(limit);
    if (!this.template) {
      const text = renderPlainChat(messages);
      checkLength(text, maxChars, limit.maxContext, 'messages');
      return this.tokenizer.encode(text, true);
    }
    let text: string;
    try {
      text = this.template.render({
        // Templates know system/user/assistant/tool; 'developer' is OpenAI's new name for system.
        messages: messages.map((m) => ({ role: m.role === 'developer' ? 'system' : m.role, content: messageText(m), ...(m.name ? { name: m.name } : {}) })),
        add_generation_prompt: true,
        bos_token: this.tokenizer.bosToken ?? '',
        eos_token: this.tokenizer.eosToken ?? '',
      });
    } catch (error) {
      // Templates refuse what their model cannot take (raise_exception: "roles must alternate").
      throw new ApiError(400, `the chat template refused these messages: ${(error as Error).message}`, { param: 'messages' });
    }
    checkLength(text, maxChars, limit.maxContext, 'messages');
    // The template writes the special tokens itself (as transformers' apply_chat_template).
    return this.tokenizer.encode(text, false);
  }
}

/** A completion request's prompt as ids: text encoded with special tokens, ids checked against the vocabulary. */
export function encodeCompletionPrompt(prompt: CompletionBody['prompt'], tokenizer: PromptTokenizer, limit: PromptLimit = { maxContext: Infinity }): number[] {
  // ['text'] and [[ids]] hold one prompt; [ids] is one prompt already.
  const first: unknown = Array.isArray(prompt) ? prompt[0] : undefined;
  const single = typeof first === 'string' || Array.isArray(first) ? (first as string | number[]) : prompt;
  if (typeof single === 'string') {
    checkLength(single, maxCharsOf(limit), limit.maxContext, 'prompt');
    return tokenizer.encode(single, true);
  }
  const ids = single as number[];
  const bad = ids.find((id) => id >= tokenizer.vocabSize);
  if (bad !== undefined) {
    throw new ApiError(400, `prompt: token id ${bad} is outside the vocabulary (0..${tokenizer.vocabSize - 1})`, { param: 'prompt', code: 'invalid_value' });
  }
  return ids;
}
