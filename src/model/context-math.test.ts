import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../util/index.js';
import {
  CONTEXT_MAX_MATCH,
  CONTEXT_WEIGHTS,
  contextConfidence,
  contextEvidence,
  contextMatch,
  EARLIER_CONTEXT_WEIGHTS,
  fitContext,
  type ContextEvidence,
  type ContextMatch,
  type ContextSamples,
} from './context-math.js';

const matchIn = (tokens: number[], end = tokens.length - 1) => contextMatch((i) => tokens[i]!, end);

/** Evidence for the ramp's token 3 (or `token`) with `match` and nothing else: no counts, no word pieces. */
const only = (match: ContextMatch, token = 3): ContextEvidence => ({
  token,
  match,
  uses: 0,
  followed: 0,
  pairUses: 0,
  pairFollowed: 0,
  attaches: false,
  matchAttaches: false,
});

test('context match: the longest earlier run ending like the text, the latest among equals, and the token after it', () => {
  // Two earlier "5 6" runs; the latest is followed by 9.
  assert.deepEqual(matchIn([5, 6, 7, 5, 6, 9, 5, 6]), { token: 9, length: 2 });
  // "1 2 3 4" earlier beats the later "2 3 4": the token after the longer run.
  assert.deepEqual(matchIn([1, 2, 3, 4, 8, 2, 3, 4, 9, 1, 2, 3, 4]), { token: 8, length: 4 });
  // Nothing earlier: no match; the first position has no text before it.
  assert.deepEqual(matchIn([1, 2, 3]), { token: -1, length: 0 });
  assert.deepEqual(matchIn([1]), { token: -1, length: 0 });
  // A long repeat counts up to CONTEXT_MAX_MATCH; `end` reads only the text up to it.
  const loop = Array.from({ length: 40 }, (_, i) => i % 5);
  assert.deepEqual(matchIn(loop), { token: 0, length: CONTEXT_MAX_MATCH });
  assert.deepEqual(matchIn([7, 8, 7, 9], 2), { token: 8, length: 1 });
});

test("context evidence: how often the ramp's token followed the last token and the last two earlier, and which tokens attach to a word", () => {
  const text = [5, 6, 7, 5, 6, 9, 8, 6, 5, 6];
  // 6 came three times before the end (followed by 7, 9, 5); "5 6" twice (by 7, 9).
  const wordPieces = Uint8Array.from({ length: 10 }, (_, id) => (id === 9 ? 1 : 0));
  const evidence = (token: number) => contextEvidence((i) => text[i]!, text.length - 1, token, wordPieces);
  assert.deepEqual(evidence(9), {
    token: 9,
    match: matchIn(text),
    uses: 3,
    followed: 1,
    pairUses: 2,
    pairFollowed: 1,
    attaches: true,
    matchAttaches: true,
  });
  assert.deepEqual(matchIn(text), { token: 9, length: 2 });
  assert.deepEqual(
    [5, 7, 4].map((token) => {
      const { followed, pairFollowed, attaches } = evidence(token);
      return [followed, pairFollowed, attaches];
    }),
    [
      [1, 0, false],
      [1, 1, false],
      [0, 0, false],
    ],
  );
  // `end` reads only the text up to it: at index 4, 6 came once before (followed by 7), and so did "5 6".
  const early = contextEvidence((i) => text[i]!, 4, 7, wordPieces);
  assert.deepEqual([early.uses, early.followed, early.pairUses, early.pairFollowed], [1, 1, 1, 1]);
});

test('context confidence: weights on the probe alone give the probe back', () => {
  const probeOnly = [0, 1, 0, 0, 0, 0, 0, 0];
  for (const p of [0.1, 0.5, 0.93]) assert.ok(Math.abs(contextConfidence(probeOnly, p, only({ token: 3, length: 4 })) - p) < 1e-9);
  assert.equal(contextConfidence(new Array<number>(CONTEXT_WEIGHTS).fill(0), 0.9, only({ token: -1, length: 0 })), 0.5);
});

test('context confidence: a model fitted before the last terms (eight or eleven weights) scores as one with those terms at zero', () => {
  const eleven = [0.3, 1.2, 0.8, -1.5, 0.4, -0.9, 0.2, -0.1, -0.05, 0.3, -0.2];
  for (const earlier of EARLIER_CONTEXT_WEIGHTS) {
    const weights = eleven.slice(0, earlier);
    const padded = [...weights, ...new Array<number>(CONTEXT_WEIGHTS - earlier).fill(0)];
    for (const [p, evidence] of [
      [0.97, { ...only({ token: 3, length: 5 }), uses: 4, followed: 0, attaches: true }],
      [0.4, only({ token: 2, length: 1 })],
      [0.999, { ...only({ token: -1, length: 0 }), pairUses: 2, pairFollowed: 2 }],
    ] as const)
      assert.equal(contextConfidence(weights, p, evidence), contextConfidence(padded, p, evidence));
  }
});

/** One simulated calibration reading of a ramp: its probe's confidence, the text's evidence, and its true chance of agreeing. */
interface Reading {
  confidence: number;
  evidence: ContextEvidence;
  truth: number;
}

/** 20,000 readings drawn by `draw`, each agreeing with its true chance. */
function simulate(seed: number, draw: (rng: Rng) => Reading): { samples: ContextSamples; truth: number[] } {
  const rng = new Rng(seed);
  const count = 20_000;
  const samples = {
    count,
    confidence: new Float32Array(count),
    evidence: new Array<ContextEvidence>(count),
    agrees: new Uint8Array(count),
  };
  const truth: number[] = [];
  for (let i = 0; i < count; i++) {
    const reading = draw(rng);
    samples.confidence[i] = reading.confidence;
    samples.evidence[i] = reading.evidence;
    truth.push(reading.truth);
    samples.agrees[i] = rng.next() < reading.truth ? 1 : 0;
  }
  return { samples, truth };
}

/** The fitted model's mean distance from the true chances. */
function meanError(weights: Float64Array, { samples, truth }: { samples: ContextSamples; truth: number[] }): number {
  let error = 0;
  for (let i = 0; i < samples.count; i++) error += Math.abs(contextConfidence(weights, samples.confidence[i]!, samples.evidence[i]!) - truth[i]!);
  return error / samples.count;
}

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));

test('fitting the context model bends the probe where its most confident readings are not surer', () => {
  // Truth: agreement rises with the probe's logit up to 3, then falls back (a loop repeating one confident mistake).
  const simulated = simulate(11, (rng) => {
    const logit = -4 + 12 * rng.next();
    return { confidence: sigmoid(logit), evidence: only({ token: -1, length: 0 }, 1), truth: sigmoid(logit - (logit * logit) / 6) };
  });
  const weights = fitContext(simulated.samples);
  assert.ok(weights[8]! < -0.1, `weight of the squared logit ${weights[8]}`);
  assert.ok(meanError(weights, simulated) < 0.03, `mean error ${meanError(weights, simulated)}`);
});

test('fitting the context model finds how much a match says beyond the probe', () => {
  // Truth: the probe is calibrated, and the ramp agreeing with the match adds 2 to its logit, disagreeing takes 2 away.
  const simulated = simulate(7, (rng) => {
    const p = 0.05 + 0.9 * rng.next();
    const hasMatch = rng.next() < 0.7;
    const same = hasMatch && rng.next() < 0.5;
    const match = { token: hasMatch ? (same ? 1 : 2) : -1, length: hasMatch ? 4 : 0 };
    return { confidence: p, evidence: only(match, 1), truth: sigmoid(Math.log(p / (1 - p)) + (hasMatch ? (same ? 2 : -2) : 0)) };
  });
  const weights = fitContext(simulated.samples);
  assert.ok(meanError(weights, simulated) < 0.03, `mean error ${meanError(weights, simulated)}`);
});

test('fitting the context model finds a word piece the text never put after its last token to be a mistake', () => {
  // Truth: the probe is calibrated, except that a word piece that never followed the text's last token (" ow" + "n"
  // where the story's owl is " ow" + "l") loses 4 from its logit; one that did, or any other token, does not.
  const simulated = simulate(5, (rng) => {
    const p = 0.5 + 0.49 * rng.next();
    const uses = Math.floor(4 * rng.next());
    const followed = uses > 0 && rng.next() < 0.5 ? 1 : 0;
    const attaches = rng.next() < 0.3;
    const evidence = { ...only({ token: -1, length: 0 }, 1), uses, followed, attaches };
    return { confidence: p, evidence, truth: sigmoid(Math.log(p / (1 - p)) - (attaches && uses > 0 && followed === 0 ? 4 : 0)) };
  });
  const weights = fitContext(simulated.samples);
  assert.ok(weights[16]! < -2, `weight of a never-followed word piece ${weights[16]}`);
  assert.ok(meanError(weights, simulated) < 0.03, `mean error ${meanError(weights, simulated)}`);
});
