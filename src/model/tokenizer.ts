/**
 * Text ↔ token ids for a prepared model, over @huggingface/tokenizers, and
 * the incremental decoder that turns a stream of ids into text pieces.
 *
 * @module
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { Tokenizer as UntypedTokenizer } from '@huggingface/tokenizers';
import { ModelFormatError, type TokenizerFiles } from './checkpoint.js';

/**
 * The part of @huggingface/tokenizers' `Tokenizer` used here, as its own
 * types/core/Tokenizer.d.ts declares it. Its index.d.ts re-exports that file
 * through an extensionless relative path, which NodeNext resolution cannot
 * follow, so the import itself types as unresolved (any).
 */
interface HfTokenizer {
  encode(text: string, options?: { add_special_tokens?: boolean }): { ids: number[] };
  decode(ids: number[], options?: { skip_special_tokens?: boolean; clean_up_tokenization_spaces?: boolean | null }): string;
  get_vocab(withAddedTokens?: boolean): Map<string, number>;
}
const Tokenizer = UntypedTokenizer as new (tokenizer: object, config: object) => HfTokenizer;

const TOKENIZER_FILE = 'tokenizer.json';
const CONFIG_FILE = 'tokenizer_config.json';

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** tokenizer_config.json writes special tokens as a string or as an AddedToken object. */
function tokenContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (isObject(value) && typeof value.content === 'string') return value.content;
  return undefined;
}

/** The JSON object in `file`; undefined when the file is absent and `optional`. */
async function readJsonObject(file: string, optional: true): Promise<Record<string, unknown> | undefined>;
async function readJsonObject(file: string, optional?: false): Promise<Record<string, unknown>>;
async function readJsonObject(file: string, optional = false): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    if (missing && optional) return undefined;
    throw new ModelFormatError(file, missing ? 'missing' : `cannot read (${(error as Error).message})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ModelFormatError(file, `invalid JSON (${(error as Error).message})`);
  }
  if (!isObject(value)) throw new ModelFormatError(file, 'expected a JSON object');
  return value;
}

/**
 * A model's tokenizer: tokenizer.json run by @huggingface/tokenizers, plus
 * what tokenizer_config.json says about special tokens and chat.
 *
 * @example
 * const tokenizer = await TextTokenizer.load('models/prepared/stories260K');
 * tokenizer.encode('Once upon a time'); // [1, 403, 407, 261, 378]
 * tokenizer.decode([1, 403, 407, 261, 378]); // 'Once upon a time'
 */
export class TextTokenizer {
  /** Ids run 0..vocabSize-1 (added tokens included). */
  readonly vocabSize: number;
  /** tokenizer_config.json's Jinja `chat_template`, when it is a single string. */
  readonly chatTemplate: string | undefined;
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  private wordPieceFlags: Uint8Array | undefined;

  private constructor(
    private readonly hf: HfTokenizer,
    config: Record<string, unknown>,
    /** Whether pieces are byte-level BPE's (GPT-2's): their characters stand for bytes. */
    private readonly byteLevel: boolean,
  ) {
    let maxId = -1;
    for (const id of hf.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    this.chatTemplate = typeof config.chat_template === 'string' ? config.chat_template : undefined;
    this.bosToken = tokenContent(config.bos_token);
    this.eosToken = tokenContent(config.eos_token);
  }

  /** Reads tokenizer.json and, when present, tokenizer_config.json from a prepared model directory. */
  static async load(dir: string): Promise<TextTokenizer> {
    const tokenizerFile = path.join(dir, TOKENIZER_FILE);
    const tokenizer = await readJsonObject(tokenizerFile);
    const config = await readJsonObject(path.join(dir, CONFIG_FILE), true);
    return TextTokenizer.create({ tokenizer, config }, tokenizerFile);
  }

  static fromFiles(files: TokenizerFiles): TextTokenizer {
    return TextTokenizer.create(files, TOKENIZER_FILE);
  }

  private static create(files: TokenizerFiles, source: string): TextTokenizer {
    const config = files.config ?? {};
    try {
      return new TextTokenizer(new Tokenizer(files.tokenizer, config), config, decodesByteLevel(files.tokenizer));
    } catch (error) {
      throw new ModelFormatError(source, `not a usable tokenizer (${(error as Error).message})`);
    }
  }

  /**
   * Per id, 1 for a word piece that attaches to the text before it: its
   * first character a letter, with no leading-space marker (SentencePiece's
   * "▁", byte-level BPE's "Ġ"): the rest of a word, or a word after a line
   * break. Ramps' context models read it (context-math.ts).
   */
  get wordPieces(): Uint8Array {
    if (!this.wordPieceFlags) {
      this.wordPieceFlags = new Uint8Array(this.vocabSize);
      for (const [piece, id] of this.hf.get_vocab(true)) {
        const first = piece.codePointAt(0) ?? 0;
        // Byte-level BPE writes the bytes it cannot show (space "Ġ", line feed "Ċ", the other controls) as U+0100..U+0143: letters, but no text's.
        const standsForByte = this.byteLevel && first >= 0x100 && first <= 0x143;
        if (/^\p{L}/u.test(piece) && !standsForByte) this.wordPieceFlags[id] = 1;
      }
    }
    return this.wordPieceFlags;
  }

  /** Token ids of `text`; with special tokens, as the model expects a prompt (BOS where the tokenizer adds one). */
  encode(text: string, addSpecialTokens = true): number[] {
    return this.hf.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /** Text of `ids`, special tokens skipped. */
  decode(ids: readonly number[]): string {
    if (ids.length === 0) return ''; // the library refuses an empty list
    for (const id of ids) {
      if (!(Number.isInteger(id) && id >= 0 && id < this.vocabSize)) {
        throw new RangeError(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
      }
    }
    // No clean-up (" ." → "."): it makes decode(a + b) differ from decode(a) + decode(b)
    // at the seam, so streamed text would not add up. TGI and vLLM do not clean up either.
    return this.hf.decode([...ids], { skip_special_tokens: true, clean_up_tokenization_spaces: false });
  }
}

/** Whether tokenizer.json's decoder is byte-level BPE's, alone or in a sequence. */
function decodesByteLevel(tokenizer: Record<string, unknown>): boolean {
  const decoder = tokenizer.decoder as { type?: unknown; decoders?: { type?: unknown }[] } | null | undefined;
  return decoder?.type === 'ByteLevel' || (decoder?.type === 'Sequence' && (decoder.decoders ?? []).some((d) => d.type === 'ByteLevel'));
}

/** Prompt tokens kept as decoding context, as vLLM and TGI do (5). */
const CONTEXT_TOKENS = 5;

/**
 * Turns generated ids into text as they arrive, one piece per id, never
 * splitting a UTF-8 character across pieces (byte-fallback and byte-level
 * tokens carry parts of characters).
 *
 * Each push decodes a short window of ids twice: the ids already emitted
 * (`prefix..read`) and the same plus the new ones; the difference is the
 * new text. Decoding a window rather than one token keeps what depends on
 * neighbours right (SentencePiece's leading-space strip, multi-byte
 * characters). While the text ends in U+FFFD a character is incomplete:
 * nothing is emitted until a later token completes it, or until flush().
 *
 * All pushes plus flush() add up to decode(prompt + generated) minus
 * decode(prompt).
 */
export class IncrementalDecoder {
  /** The tail of the prompt, then every generated id not yet dropped from the window. */
  private readonly ids: number[];
  /** Start of the ids whose text was already emitted (context for the next decode). */
  private prefixOffset = 0;
  /** End of the ids whose text was already emitted. */
  private readOffset: number;

  constructor(
    private readonly tokenizer: TextTokenizer,
    promptIds: readonly number[],
  ) {
    let start = Math.max(0, promptIds.length - CONTEXT_TOKENS);
    // Context that decodes to nothing (only special tokens) would let a leading-space
    // strip (SentencePiece's decoder) eat the first generated space: reach back for text.
    while (start > 0 && tokenizer.decode(promptIds.slice(start)) === '') start = Math.max(0, start - CONTEXT_TOKENS);
    this.ids = promptIds.slice(start);
    this.readOffset = this.ids.length;
  }

  /** Adds one generated id; returns the text it completes (often '', or more than one token's worth). */
  push(id: number): string {
    this.ids.push(id);
    return this.take(false);
  }

  /** Returns whatever is still held back (an incomplete character decodes as U+FFFD). */
  flush(): string {
    return this.take(true);
  }

  private take(final: boolean): string {
    if (this.readOffset === this.ids.length) return '';
    const window = this.ids.slice(this.prefixOffset);
    const emitted = this.tokenizer.decode(window.slice(0, this.readOffset - this.prefixOffset));
    const text = this.tokenizer.decode(window);
    if (!final && (text.length <= emitted.length || text.endsWith('\uFFFD'))) return '';
    // Drop ids that no longer serve as context, so the window stays short.
    this.ids.splice(0, this.readOffset);
    this.prefixOffset = 0;
    this.readOffset = this.ids.length;
    return text.slice(emitted.length);
  }
}
