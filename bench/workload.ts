/**
 * What the load generator sends: requests built from the prompt set (story
 * openings to /v1/completions, chat turns to /v1/chat/completions), in a
 * seeded order, and the Poisson arrival schedule of the open loop. Both
 * depend only on the seed, so every variant gets exactly the same work.
 *
 * @module
 */
import { Rng } from '../src/util/index.js';
import type { Prompt } from './prompts.js';

/** One request to make. */
export interface Work {
  /** Position in the point's list; also what makes its sampling seed. */
  index: number;
  prompt: Prompt;
  /** The request's `seed`: the same for every variant, so exits on/off sample alike. */
  seed: number;
}

/** A seeded shuffle (Fisher–Yates). */
function shuffled<T>(items: readonly T[], rng: Rng): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * `count` requests cycling through the prompts in a seeded order; request i
 * samples with seed `seed + i`.
 */
export function buildWork(prompts: readonly Prompt[], count: number, seed: number): Work[] {
  if (prompts.length === 0) throw new Error('no prompts to send');
  const order = shuffled(prompts, new Rng(seed));
  return Array.from({ length: count }, (_, index) => ({ index, prompt: order[index % order.length]!, seed: seed + index }));
}

/**
 * Arrival offsets (ms from the start) of a Poisson process at `rate`
 * requests/s over `durationS` seconds: exponential gaps, -ln(1 - u) / rate.
 * At least one arrival, so a point is never empty.
 */
export function poissonArrivals(rate: number, durationS: number, seed: number): number[] {
  const rng = new Rng(seed ^ 0x5eed);
  const arrivals: number[] = [];
  let t = 0;
  for (;;) {
    t += -Math.log(1 - rng.next()) / rate;
    if (t > durationS && arrivals.length > 0) break;
    arrivals.push(t * 1000);
  }
  return arrivals;
}
