/**
 * Turns one request's sampled tokens into the text it may release: complete
 * UTF-8 characters only, and never any part of a stop string.
 *
 * @module
 */
import { IncrementalDecoder, type TextTokenizer } from '../model/index.js';

/** Length of the longest suffix of `text` that begins some stop string. */
function heldSuffixLength(text: string, stops: string[]): number {
  let longest = 0;
  for (const stop of stops) {
    for (let n = Math.min(stop.length - 1, text.length); n > longest; n--) {
      if (text.endsWith(stop.slice(0, n))) {
        longest = n;
        break;
      }
    }
  }
  return longest;
}

export class OutputProcessor {
  private readonly decoder: IncrementalDecoder;
  /** Decoded text not yet released because it may start a stop string. */
  private held = '';
  private matched = false;

  constructor(
    tokenizer: TextTokenizer,
    promptTokens: number[],
    private readonly stops: string[],
  ) {
    this.decoder = new IncrementalDecoder(tokenizer, promptTokens);
  }

  /** Adds a generated token; returns the text to release (see `stopped`). */
  push(tokenId: number): string {
    if (this.matched) return '';
    return this.release(this.held + this.decoder.push(tokenId), false);
  }

  /** Whether a stop string has matched: generation ends there. */
  get stopped(): boolean {
    return this.matched;
  }

  /** Releases what is still held when generation ends for another reason. */
  finish(): string {
    if (this.matched) return '';
    return this.release(this.held + this.decoder.flush(), true);
  }

  private release(text: string, final: boolean): string {
    let cut = -1;
    for (const stop of this.stops) {
      const at = text.indexOf(stop);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.matched = true;
      this.held = '';
      return text.slice(0, cut);
    }
    const keep = final ? 0 : heldSuffixLength(text, this.stops);
    this.held = text.slice(text.length - keep);
    return text.slice(0, text.length - keep);
  }
}
