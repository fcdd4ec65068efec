/**
 * Token sampling: a pure function of one row of logits, the request's
 * sampling parameters and the position's draw key (its seed and position).
 *
 * @module
 */
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

/**
 * The Gumbel noise of `token` in the draw `key`: -log(-log(u)) for a uniform u
 * that is a pure function of the pair, so the
 * same position of the same request always sees the same noise, whichever
 * distribution (a ramp's or the full model's) it is added to, and in whatever
 * order the tokens are visited.
 */
function gumbelNoise(key: number, token: number): number {
  const u = (mix32(key ^ Math.imul(token + 1, 0x9e3779b1)) + 0.5) / 4294967296;
  return -Math.log(-Math.log(u));
}

/** murmur3's 32-bit finaliser: every input bit moves every output bit. */
function mix32(value: number): number {
  let h = value >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The largest value gumbelNoise can return: u is at most 1 - 2^-33. */
const MAX_NOISE = -Math.log(-Math.log1p(-0.5 / 4294967296));

/**
 * The token that wins `logits / temperature + noise` among `tokens` (all of
 * them when absent): the Gumbel-max trick, a draw from softmax(logits / T)
 * over those tokens. A token whose scaled logit is more than MAX_NOISE below
 * the best score so far cannot win, so most of a large vocabulary needs no
 * noise at all; the result is exactly what scoring every token would give.
 */
function gumbelMax(logits: ArrayLike<number>, temperature: number, key: number, tokenOf: (column: number) => number, tokens?: number[]): number {
  const count = tokens ? tokens.length : logits.length;
  const idAt = (k: number) => (tokens ? tokens[k]! : k);
  let first = idAt(0);
  for (let k = 1; k < count; k++) if (logits[idAt(k)]! > logits[first]!) first = idAt(k);
  let winner = first;
  let best = logits[first]! / temperature + gumbelNoise(key, tokenOf(first));
  for (let k = 0; k < count; k++) {
    const token = idAt(k);
    const scaled = logits[token]! / temperature;
    if (token === first || scaled + MAX_NOISE <= best) continue;
    const score = scaled + gumbelNoise(key, tokenOf(token));
    if (score > best) {
      best = score;
      winner = token;
    }
  }
  return winner;
}

/** The tokens top-k, top-p and min-p keep, most likely first. */
function keptTokens(logits: ArrayLike<number>, params: SamplingParams): number[] {
  const probs = softmax(logits, params.temperature);
  // Sorting a whole 50k vocabulary per token is slow: first drop tokens that no
  // filter could keep (llama2.c's trick for top-p), then sort the few left.
  let maxProb = 0;
  for (let i = 0; i < probs.length; i++) maxProb = Math.max(maxProb, probs[i]!);
  const topPCutoff = params.topP < 1 ? (1 - params.topP) / (probs.length - 1) : 0;
  const cutoff = Math.max(topPCutoff, params.minP * maxProb);
  let kept: number[] = [];
  for (let i = 0; i < probs.length; i++) if (probs[i]! >= cutoff) kept.push(i);
  kept.sort((a, b) => probs[b]! - probs[a]! || a - b);
  if (params.topK > 0) kept = kept.slice(0, params.topK);
  if (params.topP < 1) {
    let acc = 0;
    for (let k = 0; k < kept.length; k++) {
      acc += probs[kept[k]!]!;
      if (acc >= params.topP) return kept.slice(0, k + 1);
    }
  }
  return kept;
}

/** The draw key of one position of one request: its seed and the position, mixed. */
export function drawKey(seed: number, position: number): number {
  return mix32(seed ^ mix32(position + 0x632be5ab));
}

/**
 * Picks the next token from one row of logits, with the noise of draw `key`
 * (see drawKey); returns the column, where column c scores token `tokenOf(c)`
 * (a ramp scores a subset of the vocabulary), whose noise it gets. Coupled sampling: a ramp and the full model that sample the
 * same position with the same key pick the same token whenever their
 * (filtered) distributions are equal, and almost always when they are close,
 * so "the token the full model would have produced" means the same at any
 * temperature. Greedy (temperature 0) is the argmax and uses no noise.
 */
export function sample(logits: ArrayLike<number>, params: SamplingParams, key: number, tokenOf = (column: number) => column): number {
  if (params.temperature <= 0) return argmax(logits);
  const filtered = params.topK > 0 || params.topP < 1 || params.minP > 0;
  return gumbelMax(logits, params.temperature, key, tokenOf, filtered ? keptTokens(logits, params) : undefined);
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
