/**
 * Token sampling: a pure function of one row of logits, the request's
 * sampling parameters and its own seedable random stream.
 *
 * @module
 */
import { Rng } from '../util/index.js';

export { Rng };

export interface SamplingParams {
  /** 0 means greedy (argmax). */
  temperature: number;
  /** Nucleus: keep the smallest set of tokens whose probability reaches topP. 1 = off. */
  topP: number;
  /** Keep the k most likely tokens. 0 = off. */
  topK: number;
  /** Drop tokens less likely than minP times the most likely one. 0 = off. */
  minP: number;
}

export const GREEDY: SamplingParams = { temperature: 0, topP: 1, topK: 0, minP: 0 };

/** Index of the largest value; the first one on ties (as llama2.c's argmax). */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  let bestValue = values[0]!;
  for (let i = 1; i < values.length; i++) {
    if (values[i]! > bestValue) {
      bestValue = values[i]!;
      best = i;
    }
  }
  return best;
}

/** Softmax of `logits / temperature`, in a new array. */
export function softmax(logits: ArrayLike<number>, temperature = 1): Float32Array {
  const probs = new Float32Array(logits.length);
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    const e = Math.exp((logits[i]! - max) / temperature);
    probs[i] = e;
    sum += e;
  }
  for (let i = 0; i < probs.length; i++) probs[i]! /= sum;
  return probs;
}

/** Draws an index from `probs` restricted to `candidates` (whose weights need not sum to 1). */
function drawFrom(probs: Float32Array, candidates: number[], r: number): number {
  let total = 0;
  for (const i of candidates) total += probs[i]!;
  let acc = 0;
  const target = r * total;
  for (const i of candidates) {
    acc += probs[i]!;
    if (target < acc) return i;
  }
  return candidates[candidates.length - 1]!;
}

/** Picks the next token from one row of logits. */
export function sample(logits: ArrayLike<number>, params: SamplingParams, rng: Rng): number {
  if (params.temperature <= 0) return argmax(logits);
  const probs = softmax(logits, params.temperature);
  const filtered = params.topK > 0 || params.topP < 1 || params.minP > 0;
  if (!filtered) {
    const r = rng.next();
    let acc = 0;
    for (let i = 0; i < probs.length; i++) {
      acc += probs[i]!;
      if (r < acc) return i;
    }
    return probs.length - 1;
  }
  // Sorting a whole 50k vocabulary per token is slow: first drop tokens that no
  // filter could keep (llama2.c's trick for top-p), then sort the few left.
  let maxProb = 0;
  for (let i = 0; i < probs.length; i++) maxProb = Math.max(maxProb, probs[i]!);
  const topPCutoff = params.topP < 1 ? (1 - params.topP) / (probs.length - 1) : 0;
  const cutoff = Math.max(topPCutoff, params.minP * maxProb);
  let candidates: number[] = [];
  for (let i = 0; i < probs.length; i++) if (probs[i]! >= cutoff) candidates.push(i);
  candidates.sort((a, b) => probs[b]! - probs[a]! || a - b);
  if (params.topK > 0) candidates = candidates.slice(0, params.topK);
  if (params.topP < 1) {
    let acc = 0;
    let keep = candidates.length;
    for (let k = 0; k < candidates.length; k++) {
      acc += probs[candidates[k]!]!;
      if (acc >= params.topP) {
        keep = k + 1;
        break;
      }
    }
    candidates = candidates.slice(0, keep);
  }
  return drawFrom(probs, candidates, rng.next());
}

export interface TokenLogprobs {
  logprob: number;
  /** The most likely tokens, most likely first. */
  top: { token: number; logprob: number }[];
}

/** Log-probabilities (of the untempered distribution) of `token` and of the `topN` most likely tokens. */
export function logprobsOf(logits: ArrayLike<number>, token: number, topN: number): TokenLogprobs {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  const logZ = max + Math.log(sum);
  const top: { token: number; logprob: number }[] = [];
  for (let i = 0; i < logits.length && topN > 0; i++) {
    const logprob = logits[i]! - logZ;
    if (top.length < topN || logprob > top[top.length - 1]!.logprob) {
      top.push({ token: i, logprob });
      top.sort((a, b) => b.logprob - a.logprob);
      if (top.length > topN) top.pop();
    }
  }
  return { logprob: logits[token]! - logZ, top };
}
