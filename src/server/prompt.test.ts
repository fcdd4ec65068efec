import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApiError } from './errors.js';
import { ChatPrompter, encodeCompletionPrompt, renderPlainChat } from './prompt.js';
import { CharTokenizer } from './testing.js';

const CHATML =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// Llama 2's published template, raise_exception included.
const LLAMA2 =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

test('ChatML template', () => {
  const tokenizer = new CharTokenizer(CHATML);
  const prompter = new ChatPrompter(tokenizer);
  prompter.encode([
    { role: 'system', content: 'S' },
    { role: 'user', content: 'Hi' },
  ]);
  assert.equal(tokenizer.encoded.at(-1), '<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
});

test('Llama 2 template: system folded in, bos and eos tokens; a bad role order is a 400', () => {
  const tokenizer = new CharTokenizer(LLAMA2);
  const prompter = new ChatPrompter(tokenizer);
  prompter.encode([
    { role: 'system', content: 'Be kind.' },
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello' },
    { role: 'user', content: 'Story?' },
  ]);
  assert.equal(tokenizer.encoded.at(-1), '<s>[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] Story? [/INST]');
  assert.throws(
    () => prompter.encode([{ role: 'assistant', content: 'x' }]),
    (e: unknown) => e instanceof ApiError && e.status === 400 && e.fields.param === 'messages' && /alternate/.test(e.message),
  );
});

test('a template that does not parse falls back to the plain one', () => {
  const warn = console.warn;
  console.warn = () => {};
  try {
    const tokenizer = new CharTokenizer('{% for %}');
    const messages = [{ role: 'user' as const, content: 'Hi' }];
    new ChatPrompter(tokenizer).encode(messages);
    assert.equal(tokenizer.encoded.at(-1), renderPlainChat(messages));
  } finally {
    console.warn = warn;
  }
});

test('plain template', () => {
  assert.equal(renderPlainChat([{ role: 'user', content: 'Hi' }]), 'User: Hi\nAssistant:');
  assert.equal(
    renderPlainChat([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'a' },
          { type: 'text', text: 'b' },
        ],
      },
    ]),
    'User: a\nb\nAssistant:',
  );
});

test('completion prompts: text, one text in a list, ids, ids in a list', () => {
  const tokenizer = new CharTokenizer();
  assert.deepEqual(encodeCompletionPrompt('ab', tokenizer), [1, 100, 101]);
  assert.deepEqual(encodeCompletionPrompt(['ab'], tokenizer), [1, 100, 101]);
  assert.deepEqual(encodeCompletionPrompt([5], tokenizer), [5]);
  assert.deepEqual(encodeCompletionPrompt([[5, 6]], tokenizer), [5, 6]);
  assert.throws(() => encodeCompletionPrompt([300], tokenizer), ApiError);
});
