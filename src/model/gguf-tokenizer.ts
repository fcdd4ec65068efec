/**
 * A GGUF file's tokenizer (`tokenizer.ggml.*` metadata) to and from the
 * Hugging Face tokenizer.json that offramp runs. Two styles:
 *
 * - "llama": SentencePiece BPE with scores and byte fallback, in llama2.c's
 *   layout (<unk>, <s>, </s>, <0x00>..<0xFF>, then pieces). Converted by
 *   llama2c-tokenizer.ts, which derives BPE merges from the scores; written
 *   back with each piece scored by the rank of the first merge that makes it,
 *   which orders merges the same way.
 * - "gpt2": byte-level BPE with explicit merges ("a b"). The pre-tokenizer
 *   is named by `tokenizer.ggml.pre`: "gpt-2" (GPT-2's regex), "llama-bpe"
 *   (Llama 3's) and "smollm" (single digits, then GPT-2's) are known here.
 *
 * Token types are llama.cpp's: 1 normal, 2 unknown, 3 control, 4 user
 * defined, 5 unused, 6 byte.
 *
 * @module
 */
import { z } from 'zod';
import { ModelFormatError, type ModelConfig, type TokenizerFiles } from './checkpoint.js';
import type { GgufEntry, GgufValue } from './gguf.js';
import { scoredPiecesTokenizer } from './llama2c-tokenizer.js';

const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

const tokenId = z.number().int().nonnegative();
const TokenizerMetadataSchema = z.object({
  'tokenizer.ggml.model': z.string(),
  'tokenizer.ggml.pre': z.string().optional(),
  'tokenizer.ggml.tokens': z.array(z.string()).min(1),
  'tokenizer.ggml.scores': z.array(z.number()).optional(),
  'tokenizer.ggml.token_type': z.array(z.number().int()).optional(),
  'tokenizer.ggml.merges': z.array(z.string()).optional(),
  'tokenizer.ggml.bos_token_id': tokenId.optional(),
  'tokenizer.ggml.eos_token_id': tokenId.optional(),
  'tokenizer.ggml.eot_token_id': tokenId.optional(),
  'tokenizer.ggml.eom_token_id': tokenId.optional(),
  'tokenizer.ggml.add_bos_token': z.boolean().optional(),
  'tokenizer.chat_template': z.string().optional(),
});

/** The Hugging Face pre-tokenizer of each known `tokenizer.ggml.pre`, and whether merges are skipped for whole-vocab words. */
const BYTE_LEVEL = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
const LLAMA3_PATTERN = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const PRE_TOKENIZERS: Record<string, { preTokenizer: Record<string, unknown>; ignoreMerges: boolean }> = {
  'gpt-2': { preTokenizer: BYTE_LEVEL, ignoreMerges: false },
  'llama-bpe': {
    preTokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: LLAMA3_PATTERN }, behavior: 'Isolated', invert: false },
        { ...BYTE_LEVEL, use_regex: false },
      ],
    },
    ignoreMerges: true,
  },
  smollm: {
    preTokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, BYTE_LEVEL] },
    ignoreMerges: false,
  },
};
// llama.cpp's other names for Llama 3's pre-tokenizer.
PRE_TOKENIZERS.llama3 = PRE_TOKENIZERS['llama-v3'] = PRE_TOKENIZERS['llama-bpe']!;

export interface GgufTokenizer {
  files: TokenizerFiles;
  bosTokenId: number | null;
  eosTokenIds: number[];
  vocabSize: number;
}

function addedToken(id: number, content: string, special: boolean) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: !special, special };
}

/** Byte-level BPE tokenizer files from "gpt2"-style metadata. */
function byteLevelTokenizer(file: string, m: z.infer<typeof TokenizerMetadataSchema>): TokenizerFiles {
  const tokens = m['tokenizer.ggml.tokens'];
  const pre = m['tokenizer.ggml.pre'] ?? 'gpt-2';
  const known = PRE_TOKENIZERS[pre];
  if (!known) throw new ModelFormatError(file, `tokenizer.ggml.pre "${pre}" is not supported (known: ${Object.keys(PRE_TOKENIZERS).join(', ')})`);
  const merges = m['tokenizer.ggml.merges'];
  if (!merges) throw new ModelFormatError(file, 'a "gpt2" tokenizer needs tokenizer.ggml.merges');
  const types = m['tokenizer.ggml.token_type'] ?? [];
  const vocab: Record<string, number> = {};
  const added: ReturnType<typeof addedToken>[] = [];
  tokens.forEach((token, id) => {
    vocab[token] = id;
    const type = types[id];
    if (type === TOKEN_TYPE.control || type === TOKEN_TYPE.userDefined) added.push(addedToken(id, token, type === TOKEN_TYPE.control));
  });
  const bos = m['tokenizer.ggml.bos_token_id'];
  const addBos = (m['tokenizer.ggml.add_bos_token'] ?? false) && bos !== undefined;
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: known.preTokenizer,
    post_processor: addBos
      ? {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: tokens[bos]!, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [{ SpecialToken: { id: tokens[bos]!, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
          special_tokens: { [tokens[bos]!]: { id: tokens[bos]!, ids: [bos], tokens: [tokens[bos]!] } },
        }
      : null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: known.ignoreMerges,
      vocab,
      merges,
    },
  };
  const eos = m['tokenizer.ggml.eos_token_id'];
  const config: Record<string, unknown> = { add_bos_token: addBos, clean_up_tokenization_spaces: false };
  if (bos !== undefined) config.bos_token = tokens[bos];
  if (eos !== undefined) config.eos_token = tokens[eos];
  if (m['tokenizer.chat_template'] !== undefined) config.chat_template = m['tokenizer.chat_template'];
  return { tokenizer, config };
}

/** The tokenizer a GGUF file's metadata describes, as Hugging Face files, with its special ids. */
export function ggufTokenizer(file: string, metadata: ReadonlyMap<string, GgufValue>): GgufTokenizer {
  const parsed = TokenizerMetadataSchema.safeParse(Object.fromEntries(metadata));
  if (!parsed.success) throw new ModelFormatError(file, `no usable tokenizer metadata: ${z.prettifyError(parsed.error).replaceAll('\n', ' ')}`);
  const m = parsed.data;
  const tokens = m['tokenizer.ggml.tokens'];
  const ids = ['bos', 'eos', 'eot', 'eom'] as const;
  for (const name of ids) {
    const id = m[`tokenizer.ggml.${name}_token_id`];
    if (id !== undefined && id >= tokens.length)
      throw new ModelFormatError(file, `tokenizer.ggml.${name}_token_id ${id} is outside the ${tokens.length}-token vocabulary`);
  }
  const bosTokenId = m['tokenizer.ggml.bos_token_id'] ?? null;
  const eosTokenIds = [
    ...new Set([m['tokenizer.ggml.eos_token_id'], m['tokenizer.ggml.eot_token_id'], m['tokenizer.ggml.eom_token_id']].filter((id) => id !== undefined)),
  ];
  const model = m['tokenizer.ggml.model'];
  if (model === 'gpt2') return { files: byteLevelTokenizer(file, m), bosTokenId, eosTokenIds, vocabSize: tokens.length };
  if (model !== 'llama') throw new ModelFormatError(file, `tokenizer.ggml.model "${model}" is not supported (only "llama" and "gpt2")`);
  const scores = m['tokenizer.ggml.scores'];
  if (!scores || scores.length !== tokens.length) throw new ModelFormatError(file, 'a "llama" tokenizer needs one tokenizer.ggml.scores entry per token');
  // The converter fixes <unk>, <s>, </s> at ids 0, 1, 2, as llama2.c and Llama 2's SentencePiece model have them.
  if ((bosTokenId ?? 1) !== 1 || (m['tokenizer.ggml.eos_token_id'] ?? 2) !== 2) {
    throw new ModelFormatError(file, `a "llama" tokenizer with BOS ${bosTokenId} and EOS ${m['tokenizer.ggml.eos_token_id']} is not supported (only 1 and 2)`);
  }
  const files = scoredPiecesTokenizer(
    file,
    tokens.map((text, id) => ({ text, score: scores[id]! })),
    tokens.length,
  );
  if (m['tokenizer.chat_template'] !== undefined) files.config = { ...files.config, chat_template: m['tokenizer.chat_template'] };
  return { files, bosTokenId, eosTokenIds, vocabSize: tokens.length };
}

const HfBpeSchema = z.object({
  model: z.object({
    type: z.literal('BPE'),
    vocab: z.record(z.string(), z.number().int().nonnegative()),
    merges: z.array(z.union([z.string(), z.tuple([z.string(), z.string()])])),
    byte_fallback: z.boolean().optional(),
  }),
  added_tokens: z.array(z.object({ id: z.number().int().nonnegative(), content: z.string(), special: z.boolean() })).optional(),
  pre_tokenizer: z.unknown(),
  post_processor: z.unknown(),
});

/** The `tokenizer.ggml.pre` name of a byte-level tokenizer.json's pre-tokenizer, when llama.cpp has one. */
function preTokenizerName(preTokenizer: unknown): string | undefined {
  const step = (p: unknown) => p as { type?: string; use_regex?: boolean; individual_digits?: boolean; pattern?: { Regex?: string } };
  const p = step(preTokenizer);
  if (p.type === 'ByteLevel' && p.use_regex !== false) return 'gpt-2';
  const steps = p.type === 'Sequence' ? ((preTokenizer as { pretokenizers?: unknown[] }).pretokenizers ?? []).map(step) : [];
  if (steps.length === 2 && steps[1]!.type === 'ByteLevel') {
    if (steps[0]!.type === 'Digits' && steps[0]!.individual_digits && steps[1]!.use_regex !== false) return 'smollm';
    if (steps[0]!.type === 'Split' && steps[0]!.pattern?.Regex?.includes('\\p{N}{1,3}') && steps[1]!.use_regex === false) return 'llama-bpe';
  }
  return undefined;
}

/** Whether the tokenizer puts a BOS before a prompt: tokenizer_config's say, else a post-processor that starts with a special token. */
function addsBos(files: TokenizerFiles, postProcessor: unknown): boolean {
  if (typeof files.config?.add_bos_token === 'boolean') return files.config.add_bos_token;
  const single = (postProcessor as { type?: string; single?: { SpecialToken?: unknown }[] } | null)?.single;
  return Array.isArray(single) && single[0]?.SpecialToken !== undefined;
}

/**
 * `tokenizer.ggml.*` metadata for a model's Hugging Face tokenizer, which
 * must be a BPE (SentencePiece-style with byte fallback, or byte-level).
 * Ids past the tokenizer's last (a vocabulary padded in the model) are
 * written as unused tokens, since llama.cpp takes the vocabulary's size from
 * the token list.
 */
export function ggufTokenizerMetadata(source: string, files: TokenizerFiles, config: ModelConfig): Map<string, GgufEntry> {
  const parsed = HfBpeSchema.safeParse(files.tokenizer);
  if (!parsed.success) throw new ModelFormatError(source, 'the tokenizer is not a BPE tokenizer.json, which is all GGUF export writes');
  const { model, added_tokens: addedTokens = [], pre_tokenizer: preTokenizer, post_processor: postProcessor } = parsed.data;
  const tokens = new Array<string>(config.vocabSize);
  const types = new Int32Array(config.vocabSize).fill(TOKEN_TYPE.normal);
  const place = (text: string, id: number) => {
    if (id >= config.vocabSize)
      throw new ModelFormatError(source, `token ${JSON.stringify(text)} has id ${id}, outside the model's ${config.vocabSize}-token vocabulary`);
    tokens[id] = text;
  };
  for (const [text, id] of Object.entries(model.vocab)) place(text, id);
  for (const t of addedTokens) {
    place(t.content, t.id);
    types[t.id] = t.special ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined;
  }
  for (let id = 0; id < tokens.length; id++) {
    if (tokens[id] === undefined) {
      tokens[id] = `[PAD${id}]`;
      types[id] = TOKEN_TYPE.unused;
    }
  }
  const merges = model.merges.map((m) => (typeof m === 'string' ? m : m.join(' ')));
  const entries = new Map<string, GgufEntry>();
  if (model.byte_fallback) {
    // Each piece's score is minus the rank of the first merge that makes it: merges keep their order.
    const scores = new Float32Array(config.vocabSize);
    const scored = new Set<string>();
    merges.forEach((merge, rank) => {
      const piece = merge.replace(' ', '');
      if (scored.has(piece) || model.vocab[piece] === undefined) return;
      scored.add(piece);
      scores[model.vocab[piece]] = -rank;
    });
    tokens.forEach((text, id) => {
      if (/^<0x[0-9A-F]{2}>$/.test(text)) types[id] = TOKEN_TYPE.byte;
      else if (text === '<unk>') types[id] = TOKEN_TYPE.unknown;
    });
    entries.set('tokenizer.ggml.model', { type: 'string', value: 'llama' });
    entries.set('tokenizer.ggml.tokens', { type: 'array', itemType: 'string', values: tokens });
    entries.set('tokenizer.ggml.scores', { type: 'array', itemType: 'float32', values: scores });
  } else {
    const pre = preTokenizerName(preTokenizer);
    if (!pre) throw new ModelFormatError(source, `the tokenizer's pre-tokenizer (${JSON.stringify(preTokenizer)}) has no llama.cpp equivalent known here`);
    entries.set('tokenizer.ggml.model', { type: 'string', value: 'gpt2' });
    entries.set('tokenizer.ggml.pre', { type: 'string', value: pre });
    entries.set('tokenizer.ggml.tokens', { type: 'array', itemType: 'string', values: tokens });
    entries.set('tokenizer.ggml.merges', { type: 'array', itemType: 'string', values: merges });
  }
  entries.set('tokenizer.ggml.token_type', { type: 'array', itemType: 'int32', values: types });
  if (config.bosTokenId !== null) entries.set('tokenizer.ggml.bos_token_id', { type: 'uint32', value: config.bosTokenId });
  if (config.eosTokenIds[0] !== undefined) entries.set('tokenizer.ggml.eos_token_id', { type: 'uint32', value: config.eosTokenIds[0] });
  entries.set('tokenizer.ggml.add_bos_token', { type: 'bool', value: addsBos(files, postProcessor) });
  entries.set('tokenizer.ggml.add_eos_token', { type: 'bool', value: false });
  if (typeof files.config?.chat_template === 'string') entries.set('tokenizer.chat_template', { type: 'string', value: files.config.chat_template });
  return entries;
}
