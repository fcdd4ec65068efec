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

  /** True when the model's own template is used. */
  get hasTemplate(): boolean {
    return this.template !== null;
  }

  encode(messages: readonly ChatMessage[]): number[] {
    if (!this.template) return this.tokenizer.encode(renderPlainChat(messages), true);
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
    // The template writes the special tokens itself (as transformers' apply_chat_template).
    return this.tokenizer.encode(text, false);
  }
}

/** A completion request's prompt as ids: text encoded with special tokens, ids checked against the vocabulary. */
export function encodeCompletionPrompt(prompt: CompletionBody['prompt'], tokenizer: PromptTokenizer): number[] {
  // ['text'] and [[ids]] hold one prompt; [ids] is one prompt already.
  const first: unknown = Array.isArray(prompt) ? prompt[0] : undefined;
  const single = typeof first === 'string' || Array.isArray(first) ? (first as string | number[]) : prompt;
  if (typeof single === 'string') return tokenizer.encode(single, true);
  const ids = single as number[];
  const bad = ids.find((id) => id >= tokenizer.vocabSize);
  if (bad !== undefined) {
    throw new ApiError(400, `prompt: token id ${bad} is outside the vocabulary (0..${tokenizer.vocabSize - 1})`, { param: 'prompt', code: 'invalid_value' });
  }
  return ids;
}
