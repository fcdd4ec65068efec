/**
 * Cuts a byte-level BPE tokenizer (GPT-2's) down to its first ids, so a
 * random-weight model of a real shape (SmolLM-135M: 49,152 tokens) can use a
 * real tokenizer of another vocabulary size.
 *
 * @module
 */
import type { TokenizerFiles } from './checkpoint.js';

type Merge = string | [string, string];

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The two parts of a merge in either tokenizer.json format ("a b" or ["a", "b"]). */
function mergeParts(merge: Merge): [string, string] {
  if (Array.isArray(merge)) return merge;
  const space = merge.indexOf(' ');
  return [merge.slice(0, space), merge.slice(space + 1)];
}

/**
 * Keeps ids 0..size-1 of a BPE tokenizer.json: pieces, added tokens, and the
 * merges whose parts and result all survive. BPE learns pieces in id order,
 * so what is left is a consistent smaller tokenizer (GPT-2's first 256 ids
 * are the bytes, so any size ≥ 256 still encodes every text). Special tokens
 * past the cut (GPT-2's <|endoftext|>, id 50256) are dropped, and so are the
 * config entries (bos/eos/unk/pad) that named them.
 *
 * The input is not modified.
 */
export function truncateBpeVocabulary(files: TokenizerFiles, size: number): TokenizerFiles {
  const model = files.tokenizer.model;
  if (!isObject(model) || model.type !== 'BPE' || !isObject(model.vocab) || !Array.isArray(model.merges)) {
    throw new Error('truncateBpeVocabulary needs a BPE tokenizer.json (model.type "BPE" with vocab and merges)');
  }
  const pieces = Object.entries(model.vocab as Record<string, number>);
  if (!Number.isInteger(size) || size < 1 || size > pieces.length) {
    throw new RangeError(`cannot cut a ${pieces.length}-piece vocabulary to ${size}`);
  }
  const vocab: Record<string, number> = {};
  for (const [piece, id] of pieces) if (id < size) vocab[piece] = id;
  const kept = (piece: string) => Object.hasOwn(vocab, piece);
  const merges = (model.merges as Merge[]).filter((merge) => {
    const [left, right] = mergeParts(merge);
    return kept(left) && kept(right) && kept(left + right);
  });

  const addedTokens = Array.isArray(files.tokenizer.added_tokens) ? files.tokenizer.added_tokens : [];
  const keptAdded = addedTokens.filter((token) => isObject(token) && typeof token.id === 'number' && token.id < size);
  const droppedContents = new Set(
    addedTokens.filter((token) => !keptAdded.includes(token)).map((token) => (isObject(token) ? token.content : undefined)),
  );
  const tokenizer = { ...files.tokenizer, added_tokens: keptAdded, model: { ...model, vocab, merges } };

  if (!files.config) return { tokenizer };
  const config = { ...files.config };
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
    const value = config[key];
    const content = isObject(value) ? value.content : value;
    if (typeof content === 'string' && droppedContents.has(content)) delete config[key];
  }
  return { tokenizer, config };
}
