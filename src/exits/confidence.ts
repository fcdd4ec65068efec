/**
 * A ramp's confidence from one row of its logits, in [0, 1]. Two passes over
 * the row and no sort: the first finds the top two logits, the second sums
 * the softmax normaliser (and, for entropy, Σ p·log p) relative to the max.
 * On a 50k-word row that is 50k exps, far cheaper than the head that made it.
 *
 * @module
 */

/**
 * - `margin`: top-1 probability − top-2 probability (Apparate's LLaMA path).
 * - `max-prob`: top-1 probability.
 * - `entropy`: 1 − H(p) / ln(vocab): 1 for a one-hot row, 0 for a uniform one.
 * - `probe`: a trained ramp's own estimate that its token is the full
 *   model's, from a small classifier fitted beside it (src/model/probe-math.ts)
 *   that reads the ramp's state as well as its probabilities; computed in the
 *   ramp's graph. Ramps without one (the plain head) score the margin, and so
 *   does scoreLogits, which sees only logits. The server's default.
 */
export type ConfidenceKind = 'margin' | 'max-prob' | 'entropy' | 'probe';

export const CONFIDENCE_KINDS: readonly ConfidenceKind[] = ['margin', 'max-prob', 'entropy', 'probe'];

export interface Score {
  /** Index of the largest logit (the first one on ties). */
  argmax: number;
  /** In [0, 1]; 0 when the row cannot be scored (non-finite max). */
  confidence: number;
}

// exp(z) for z below this adds less than 1e-15 per entry to a sum that is at
// least 1 (the max's own term): skipping the exp is exact to float64 noise
// over any vocabulary, and skips most of the row for a peaked distribution.
const NEGLIGIBLE_Z = -36;

/**
 * Scores one logits row.
 *
 * @example
 * const { argmax, confidence } = scoreLogits(row, 'margin');
 * if (controller.exitAt(layer, confidence)) emit(argmax);
 */
export function scoreLogits(logits: Float32Array, kind: ConfidenceKind = 'margin'): Score {
  const n = logits.length;
  if (n === 0) throw new RangeError('scoreLogits: empty logits row');

  // Pass 1: top-1 and top-2 logits. NaN compares false and is ignored.
  let best = -Infinity;
  let second = -Infinity;
  let argmax = 0;
  for (let i = 0; i < n; i++) {
    const x = logits[i]!;
    if (x > best) {
      second = best;
      best = x;
      argmax = i;
    } else if (x > second) {
      second = x;
    }
  }
  // An all -Infinity row or an overflowed +Infinity logit carries no usable
  // distribution: confidence 0 never exits, which is the safe answer.
  if (!Number.isFinite(best)) return { argmax, confidence: 0 };

  // Pass 2: sum = Σ exp(x − best) (≥ 1), and for entropy Σ z·exp(z).
  let sum = 0;
  let zExpSum = 0;
  if (kind === 'entropy') {
    for (let i = 0; i < n; i++) {
      const z = logits[i]! - best;
      if (z >= NEGLIGIBLE_Z) {
        const e = Math.exp(z);
        sum += e;
        zExpSum += z * e;
      }
    }
  } else {
    for (let i = 0; i < n; i++) {
      const z = logits[i]! - best;
      if (z >= NEGLIGIBLE_Z) sum += Math.exp(z);
    }
  }

  let confidence: number;
  if (kind === 'margin' || kind === 'probe') {
    confidence = (1 - Math.exp(second - best)) / sum;
  } else if (kind === 'max-prob') {
    confidence = 1 / sum;
  } else {
    // p_i = e^{z_i}/S, so H = −Σ p_i (z_i − ln S) = ln S − (Σ z_i e^{z_i}) / S.
    const entropy = Math.log(sum) - zExpSum / sum;
    confidence = n === 1 ? 1 : 1 - entropy / Math.log(n);
  }
  return { argmax, confidence: Math.min(1, Math.max(0, confidence)) };
}
