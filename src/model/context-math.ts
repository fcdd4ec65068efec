/**
 * A trained ramp's confidence, weighed against its context. A ramp reads one
 * position's state; what the deeper blocks add is mostly attention over the
 * context (the names and phrases a story fixed earlier), which is where the
 * ramps' confident mistakes are. The context itself says something about
 * those: the token that followed the last earlier occurrence of the longest
 * suffix of the text (an induction match, as prompt-lookup decoding drafts
 * with), and whether the ramp's token is that one.
 *
 *   f = [1, ℓ, s, d, s·m, d·m, s·ℓ, d·ℓ, ℓ², s·m·ℓ, d·m·ℓ,
 *        r, n, r₂, n₂, a, n·a, r·a, d·b]
 *     ℓ: the probe's logit; s: 1 when the ramp's token is the match's; d: 1
 *     when there is a match and it is not; m: the match's length /
 *     CONTEXT_MAX_MATCH; r: of the earlier uses of the text's last token,
 *     the share the ramp's token followed (0: none); n: 1 when there are
 *     some and the ramp's token followed none of them; r₂, n₂: the same for
 *     the last two tokens; a, b: 1 when the ramp's token, the match's, is a
 *     word piece that attaches to the text before it (a letter first, no
 *     leading space: TextTokenizer.wordPieces)
 *   confidence = sigmoid(w · f)
 *
 * Fitted after the probe, by logistic regression (Newton's method) against
 * "the ramp's token is the full model's" on the calibration positions. On
 * stories260K's held-out text (fitted on held-out openings, scored on the
 * others) the first eight terms lifted the share exitable at 99% precision
 * after block 3 from 17% to 35%, and after block 4 from 37% to 44%. The
 * next three let the probe's word bend: the most confident readings are not
 * proportionally surer (ℓ²; a loop repeats one confident mistake), and how
 * much the probe counts depends on how long a match backs or contradicts it
 * (s·m·ℓ, d·m·ℓ). They added 3.1 points at 99% after block 3 and 1.5 after
 * block 4 (means of three seeds' ramps, held-out text). The last eight are
 * the text's own counts: the ramps' most confident mistakes finish a word
 * the story spelled otherwise (" ow" + "n" where the story's owl is " ow" +
 * "l", "M" + "a" where it is Mom), which the counts of what followed the
 * last tokens, and whether the token finishes a word, tell. They added 1.5
 * points at 99% after block 3 and 1.0 after block 4 (five seeds). Ramps
 * fitted before those terms store the first eight or eleven weights, which
 * score as they did.
 *
 * @module
 */

/** Longest suffix a match looks for; longer agreement says little more. */
export const CONTEXT_MAX_MATCH = 8;

/** Weights of the context model (see the module comment). */
export const CONTEXT_WEIGHTS = 19;
/** Weights of context models fitted before the last terms (8: before the curvature terms, 11: before the counts); the rest count as zero. */
export const EARLIER_CONTEXT_WEIGHTS: readonly number[] = [8, 11];

/** The token that followed the last earlier occurrence of the text's longest suffix (token −1, length 0: none). */
export interface ContextMatch {
  token: number;
  length: number;
}

/**
 * The induction match for the position after `end`, in the text `tokenAt(0..end)`:
 * among the earlier positions j < end holding the same token as `end`, the one
 * whose run of agreeing tokens backwards from (j, end) is longest (up to
 * CONTEXT_MAX_MATCH; the latest among equals); its next token.
 */
export function contextMatch(tokenAt: (index: number) => number, end: number): ContextMatch {
  const last = tokenAt(end);
  let best: ContextMatch = { token: -1, length: 0 };
  for (let j = end - 1; j >= 0 && best.length < CONTEXT_MAX_MATCH; j--) {
    if (tokenAt(j) !== last) continue;
    const length = runLength(tokenAt, j, end);
    if (length > best.length) best = { token: tokenAt(j + 1), length };
  }
  return best;
}

/** How many tokens agree backwards from positions j and `end`, which hold the same token (at most CONTEXT_MAX_MATCH). */
function runLength(tokenAt: (index: number) => number, j: number, end: number): number {
  let length = 1;
  while (length < CONTEXT_MAX_MATCH && j - length >= 0 && tokenAt(j - length) === tokenAt(end - length)) length++;
  return length;
}

/** What the text before a position says about a ramp's token there (see the module comment). */
export interface ContextEvidence {
  /** The ramp's token. */
  token: number;
  match: ContextMatch;
  /** Earlier uses of the text's last token (each with a token after it), and how many of them the ramp's token followed. */
  uses: number;
  followed: number;
  /** The same for the text's last two tokens. */
  pairUses: number;
  pairFollowed: number;
  /** Whether the ramp's token, and the match's, is a word piece attached to the text before it. */
  attaches: boolean;
  matchAttaches: boolean;
}

/**
 * The evidence for `token` at the position after `end` in the text
 * `tokenAt(0..end)`; `wordPieces[id]` is 1 for the word pieces that attach
 * to the text before them (TextTokenizer.wordPieces).
 */
export function contextEvidence(tokenAt: (index: number) => number, end: number, token: number, wordPieces: Uint8Array): ContextEvidence {
  const last = tokenAt(end);
  const before = end > 0 ? tokenAt(end - 1) : -1;
  // One pass over the text for the counts and for the match (as contextMatch finds it: the engine reads this per ramp).
  let match: ContextMatch = { token: -1, length: 0 };
  let uses = 0;
  let followed = 0;
  let pairUses = 0;
  let pairFollowed = 0;
  for (let j = end - 1; j >= 0; j--) {
    if (tokenAt(j) !== last) continue;
    if (match.length < CONTEXT_MAX_MATCH) {
      const length = runLength(tokenAt, j, end);
      if (length > match.length) match = { token: tokenAt(j + 1), length };
    }
    const follows = tokenAt(j + 1) === token ? 1 : 0;
    uses++;
    followed += follows;
    if (j > 0 && tokenAt(j - 1) === before) {
      pairUses++;
      pairFollowed += follows;
    }
  }
  const attaches = (id: number) => id >= 0 && wordPieces[id] === 1;
  return { token, match, uses, followed, pairUses, pairFollowed, attaches: attaches(token), matchAttaches: attaches(match.token) };
}

/** The probe's confidence as a logit; float32's sigmoid rounds to 0 or 1 past about ±17. */
const probeLogit = (confidence: number) => {
  const p = Math.min(Math.max(confidence, 1e-7), 1 - 1e-7);
  return Math.log(p / (1 - p));
};

/** The context model's features of one reading into `out` [CONTEXT_WEIGHTS]. */
function contextFeatures(confidence: number, evidence: ContextEvidence, out: Float64Array): void {
  const { token, match } = evidence;
  const logit = probeLogit(confidence);
  const same = match.length > 0 && token === match.token ? 1 : 0;
  const differs = match.length > 0 && token !== match.token ? 1 : 0;
  const m = match.length / CONTEXT_MAX_MATCH;
  const share = (followed: number, uses: number) => (uses > 0 ? followed / uses : 0);
  const never = (followed: number, uses: number) => (uses > 0 && followed === 0 ? 1 : 0);
  const attaches = evidence.attaches ? 1 : 0;
  out[0] = 1;
  out[1] = logit;
  out[2] = same;
  out[3] = differs;
  out[4] = same * m;
  out[5] = differs * m;
  out[6] = same * logit;
  out[7] = differs * logit;
  out[8] = logit * logit;
  out[9] = same * m * logit;
  out[10] = differs * m * logit;
  out[11] = share(evidence.followed, evidence.uses);
  out[12] = never(evidence.followed, evidence.uses);
  out[13] = share(evidence.pairFollowed, evidence.pairUses);
  out[14] = never(evidence.pairFollowed, evidence.pairUses);
  out[15] = attaches;
  out[16] = out[12] * attaches;
  out[17] = out[11] * attaches;
  out[18] = differs * (evidence.matchAttaches ? 1 : 0);
}

/** contextConfidence's features: it runs for every ramp the engine reads, so it allocates nothing. */
const readingFeatures = new Float64Array(CONTEXT_WEIGHTS);

/** A reading's confidence (the probe's `confidence` for its token), weighed against the text's `evidence` by `weights`. */
export function contextConfidence(weights: ArrayLike<number>, confidence: number, evidence: ContextEvidence): number {
  const f = readingFeatures;
  contextFeatures(confidence, evidence, f);
  let z = 0;
  for (let i = 0; i < weights.length; i++) z += weights[i]! * f[i]!;
  return 1 / (1 + Math.exp(-z));
}

/** What fitting the context model reads per calibration position. */
export interface ContextSamples {
  count: number;
  /** The probe's confidence. */
  confidence: Float32Array;
  /** The ramp's token and what the text says about it. */
  evidence: ContextEvidence[];
  /** 1 where the ramp's token was the full model's. */
  agrees: Uint8Array;
}

/** Ridge on the weights: a feature no position has (no match at all, say) keeps weight 0. */
const RIDGE = 1e-3;
const NEWTON_STEPS = 25;

/** Fits the context model by Newton's method on the mean logistic loss (plus RIDGE); returns its weights. */
export function fitContext(samples: ContextSamples): Float64Array {
  const n = CONTEXT_WEIGHTS;
  const w = new Float64Array(n);
  const f = new Float64Array(n);
  for (let step = 0; step < NEWTON_STEPS; step++) {
    const grad = new Float64Array(n);
    const hessian = new Float64Array(n * n);
    for (let i = 0; i < samples.count; i++) {
      contextFeatures(samples.confidence[i]!, samples.evidence[i]!, f);
      let z = 0;
      for (let a = 0; a < n; a++) z += w[a]! * f[a]!;
      const p = 1 / (1 + Math.exp(-z));
      const r = p - samples.agrees[i]!;
      const curvature = p * (1 - p);
      for (let a = 0; a < n; a++) {
        grad[a]! += r * f[a]!;
        for (let b = 0; b <= a; b++) hessian[a * n + b]! += curvature * f[a]! * f[b]!;
      }
    }
    const count = Math.max(1, samples.count);
    for (let a = 0; a < n; a++) {
      grad[a] = grad[a]! / count + RIDGE * w[a]!;
      for (let b = 0; b <= a; b++) hessian[a * n + b] = hessian[b * n + a] = hessian[a * n + b]! / count + (a === b ? RIDGE : 0);
    }
    const delta = solve(hessian, grad, n);
    let moved = 0;
    for (let a = 0; a < n; a++) {
      w[a]! -= delta[a]!;
      moved = Math.max(moved, Math.abs(delta[a]!));
    }
    if (moved < 1e-9) break;
  }
  return w;
}

/** Solves the symmetric positive definite system A x = b (A [n, n], row-major) by Cholesky. */
function solve(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let sum = a[i * n + j]!;
      for (let k = 0; k < j; k++) sum -= l[i * n + k]! * l[j * n + k]!;
      l[i * n + j] = i === j ? Math.sqrt(sum) : sum / l[j * n + j]!;
    }
  }
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let sum = b[i]!;
    for (let k = 0; k < i; k++) sum -= l[i * n + k]! * y[k]!;
    y[i] = sum / l[i * n + i]!;
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let sum = y[i]!;
    for (let k = i + 1; k < n; k++) sum -= l[k * n + i]! * x[k]!;
    x[i] = sum / l[i * n + i]!;
  }
  return x;
}
