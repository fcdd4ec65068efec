/**
 * Converts llama2.c's tokenizer.bin into a Hugging Face tokenizer.json that
 * encodes exactly as run.c's `encode` does.
 *
 * tokenizer.bin: int32 max_token_length, then per token: float32 score,
 * int32 byte length, the UTF-8 bytes. llama2.c's export stores SentencePiece
 * pieces with ' ' in place of '▁', and ids 0/1/2 as "<unk>", "\n<s>\n",
 * "\n</s>\n"; ids 3..258 are the byte-fallback pieces <0x00>..<0xFF>.
 *
 * run.c's encoder: BOS, a " " token before non-empty text (the dummy
 * prefix), each UTF-8 character as its piece or else as byte pieces, then
 * repeatedly merge the adjacent pair whose concatenation is the best-scoring
 * piece. The same thing as a Hugging Face BPE: normalizer Prepend("▁") +
 * Replace(" " → "▁"), no pre-tokenizer (run.c merges across spaces), byte
 * fallback, and one merge per way of splitting a piece into two pieces,
 * ranked by the piece's score. This is the layout of Hugging Face's own
 * Llama 2 tokenizer.json.
 *
 * @module
 */
import fs from 'node:fs';
import { ModelFormatError, type TokenizerFiles } from './checkpoint.js';

const SPECIAL_PIECES = ['<unk>', '<s>', '</s>'] as const;
const NUM_BYTE_PIECES = 256;
/** First id after the special and byte pieces: where ordinary pieces start. */
const FIRST_ORDINARY_ID = SPECIAL_PIECES.length + NUM_BYTE_PIECES;

/** A vocabulary entry with its SentencePiece score (higher merges first). */
export interface ScoredPiece {
  text: string;
  score: number;
}

/** Reads every record of a tokenizer.bin; throws ModelFormatError on a damaged file. */
function readPieces(path: string): ScoredPiece[] {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(path);
  } catch (error) {
    throw new ModelFormatError(path, `cannot read the llama2.c tokenizer (${(error as Error).message})`);
  }
  if (bytes.length < 4) throw new ModelFormatError(path, `${bytes.length} bytes is too short for a llama2.c tokenizer`);
  const maxTokenLength = bytes.readInt32LE(0);
  if (maxTokenLength <= 0) throw new ModelFormatError(path, `max_token_length is ${maxTokenLength}: not a llama2.c tokenizer`);
  // fatal: a piece that is not UTF-8 means the offsets went astray.
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const pieces: ScoredPiece[] = [];
  let offset = 4;
  while (offset < bytes.length) {
    const id = pieces.length;
    if (offset + 8 > bytes.length) {
      throw new ModelFormatError(path, `truncated: token ${id} at byte ${offset} has no complete score and length`);
    }
    const score = bytes.readFloatLE(offset);
    const length = bytes.readInt32LE(offset + 4);
    if (Number.isNaN(score)) throw new ModelFormatError(path, `corrupt: token ${id} at byte ${offset} has a NaN score`);
    if (length < 0 || length > maxTokenLength) {
      throw new ModelFormatError(path, `corrupt: token ${id} at byte ${offset} has length ${length} (max_token_length is ${maxTokenLength})`);
    }
    const start = offset + 8;
    if (start + length > bytes.length) {
      throw new ModelFormatError(path, `truncated: token ${id} needs ${length} bytes at byte ${start}, the file ends at ${bytes.length}`);
    }
    let text: string;
    try {
      text = utf8.decode(bytes.subarray(start, start + length));
    } catch {
      throw new ModelFormatError(path, `corrupt: token ${id} at byte ${offset} is not valid UTF-8`);
    }
    pieces.push({ text, score });
    offset = start + length;
  }
  return pieces;
}

function bytePiece(byte: number): string {
  return `<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`;
}

/**
 * Every (left, right) pair of ordinary pieces that concatenates to an
 * ordinary piece, best merged score first.
 *
 * Equal scores (two splits of one piece; llama2-32k's space runs, all -1e9)
 * cannot be ranked exactly: run.c takes the leftmost tied pair, a BPE rank
 * cannot depend on position. Longer left part first grows a run from its
 * left end as run.c does; the tests compare with run.c's encoder on fuzzed
 * text and space runs and find no difference.
 */
function deriveMerges(vocab: readonly string[], scores: readonly number[]): [string, string][] {
  const ids = new Map<string, number>();
  for (let id = FIRST_ORDINARY_ID; id < vocab.length; id++) ids.set(vocab[id]!, id);
  const merges: { left: string; right: string; id: number; leftLength: number }[] = [];
  for (let id = FIRST_ORDINARY_ID; id < vocab.length; id++) {
    const chars = Array.from(vocab[id]!);
    for (let k = 1; k < chars.length; k++) {
      const left = chars.slice(0, k).join('');
      const right = chars.slice(k).join('');
      if (ids.has(left) && ids.has(right)) merges.push({ left, right, id, leftLength: k });
    }
  }
  merges.sort((a, b) => scores[b.id]! - scores[a.id]! || b.leftLength - a.leftLength || a.id - b.id);
  return merges.map((m) => [m.left, m.right]);
}

/**
 * Reads llama2.c's tokenizer.bin at `path` as Hugging Face tokenizer files
 * for a model with `vocabSize` tokens. Throws ModelFormatError when the file
 * is damaged or its vocabulary does not fit the model.
 *
 * @example
 * const files = convertLlama2cTokenizer('tok512.bin', 512);
 * // TextTokenizer.fromFiles(files).encode('Once upon a time') → [1, 403, 407, 261, 378]
 */
export function convertLlama2cTokenizer(path: string, vocabSize: number): TokenizerFiles {
  return scoredPiecesTokenizer(path, readPieces(path), vocabSize);
}

/**
 * Hugging Face tokenizer files for a SentencePiece BPE vocabulary with scores
 * in llama2.c's layout (<unk>, <s>, </s>, then the 256 byte pieces), which
 * Llama GGUF files share (`tokenizer.ggml.model` "llama"). Pieces may spell
 * the word boundary as ' ' (llama2.c) or '▁' (SentencePiece). `path` names
 * the source in errors.
 */
export function scoredPiecesTokenizer(path: string, pieces: readonly ScoredPiece[], vocabSize: number): TokenizerFiles {
  if (pieces.length !== vocabSize) {
    throw new ModelFormatError(path, `the tokenizer has ${pieces.length} tokens but the model's vocab_size is ${vocabSize}`);
  }
  if (pieces.length < FIRST_ORDINARY_ID) {
    throw new ModelFormatError(path, `${pieces.length} tokens cannot hold the 3 special and 256 byte tokens`);
  }
  const vocab = pieces.map((piece, id) => {
    if (id < SPECIAL_PIECES.length) return SPECIAL_PIECES[id]!;
    // run.c encodes byte b as id b + 3 whatever the piece says, so the layout must hold.
    if (id < FIRST_ORDINARY_ID) {
      const expected = bytePiece(id - SPECIAL_PIECES.length);
      if (piece.text !== expected) throw new ModelFormatError(path, `token ${id} is ${JSON.stringify(piece.text)}, expected the byte token ${expected}`);
      return expected;
    }
    return piece.text.replaceAll(' ', '▁');
  });
  const vocabObject: Record<string, number> = {};
  vocab.forEach((text, id) => {
    if (Object.hasOwn(vocabObject, text)) {
      throw new ModelFormatError(path, `tokens ${vocabObject[text]} and ${id} are both ${JSON.stringify(text)}`);
    }
    vocabObject[text] = id;
  });
  const merges = deriveMerges(
    vocab,
    pieces.map((p) => p.score),
  );

  const special = (id: number) => ({
    id,
    content: SPECIAL_PIECES[id]!,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0), special(1), special(2)],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: '▁' },
        { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        // run.c drops the dummy prefix's space from the first piece after BOS.
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: vocabObject,
      merges,
    },
  };
  const config = {
    add_bos_token: true,
    add_eos_token: false,
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    // Cleanup would rewrite " ." to "." and break the match with run.c's output.
    clean_up_tokenization_spaces: false,
    tokenizer_class: 'LlamaTokenizerFast',
  };
  return { tokenizer, config };
}
