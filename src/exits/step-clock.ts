/**
 * Timed decode steps of one kind, for a controller to check its cost model
 * against: milliseconds per token over the most recent steps. Both
 * controllers time the steps of a sequence decoding alone, with their ramps
 * at work and on the fused graph, and drop what the clock says loses.
 *
 * @module
 */
import { Ring } from '../util/index.js';

/** Steps kept, most recent. */
const TIMED_STEPS = 512;

export class StepClock {
  private readonly steps = new Ring<{ ms: number; tokens: number }>(TIMED_STEPS);

  add(ms: number, tokens: number): void {
    this.steps.push({ ms, tokens });
  }

  clear(): void {
    this.steps.clear();
  }

  /** Null until `minTokens` tokens have been timed. */
  msPerToken(minTokens = 1): number | null {
    const steps = this.steps.last();
    const tokens = steps.reduce((n, s) => n + s.tokens, 0);
    return tokens < minTokens ? null : steps.reduce((ms, s) => ms + s.ms, 0) / tokens;
  }
}
