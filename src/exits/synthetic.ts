/**
 * Synthetic exit traces for tests and benchmarks of the controller: each
 * candidate ramp gets a behaviour (how often it agrees with the full model,
 * and how its confidence relates to that), seeded and reproducible.
 *
 * @module
 */
import { Rng } from '../util/index.js';
import { TRACE_FORMAT, type Trace, type TraceToken } from './trace.js';
import type { Costs } from './types.js';

/** What one ramp says about token `i`. */
export type RampBehaviour = (i: number, rng: Rng) => { confidence: number; agrees: boolean };

/**
 * Confidence is informative: agreeing tokens score in [agreeLow, 1],
 * disagreeing ones in [0, missHigh]; the overlap is where a threshold must choose.
 */
export function informative(agreeRate: number, agreeLow = 0.3, missHigh = 0.8): RampBehaviour {
  return (_i, rng) => {
    const agrees = rng.next() < agreeRate;
    const confidence = agrees ? agreeLow + (1 - agreeLow) * rng.next() : missHigh * rng.next();
    return { confidence, agrees };
  };
}

/** Confidence says nothing: uniform, independent of agreement. */
export function noise(agreeRate = 0.5): RampBehaviour {
  return (_i, rng) => ({ agrees: rng.next() < agreeRate, confidence: rng.next() });
}

/** Never confident: a ramp that never exits and only costs. */
export function silent(agreeRate = 0.5): RampBehaviour {
  return (_i, rng) => ({ agrees: rng.next() < agreeRate, confidence: 0 });
}

/** `before` until token `at`, then `after` (e.g. a ramp that becomes confidently wrong). */
export function drift(before: RampBehaviour, after: RampBehaviour, at: number): RampBehaviour {
  return (i, rng) => (i < at ? before(i, rng) : after(i, rng));
}

/** Always confident, agreeing with probability `agreeRate`: confidently wrong when low. */
export function overconfident(agreeRate: number): RampBehaviour {
  return (_i, rng) => ({ agrees: rng.next() < agreeRate, confidence: 0.9 + 0.1 * rng.next() });
}

export interface SynthOptions {
  numLayers: number;
  costs: Costs;
  tokens: number;
  /** Behaviour per candidate layer. */
  ramps: ReadonlyMap<number, RampBehaviour>;
  seed?: number;
  vocab?: number;
}

/** Builds a trace with every candidate ramp evaluated for every token. */
export function synthTrace(o: SynthOptions): Trace {
  const rng = new Rng(o.seed ?? 1);
  const vocab = o.vocab ?? 512;
  const layers = [...o.ramps.keys()].sort((a, b) => a - b);
  const tokens: TraceToken[] = [];
  for (let i = 0; i < o.tokens; i++) {
    const final = Math.floor(rng.next() * vocab);
    const ramps = layers.map((layer) => {
      const { confidence, agrees } = o.ramps.get(layer)!(i, rng);
      // A disagreeing ramp names some other token.
      const argmax = agrees ? final : (final + 1 + Math.floor(rng.next() * (vocab - 1))) % vocab;
      return { layer, confidence, argmax };
    });
    tokens.push({ ramps, final });
  }
  return {
    header: { format: TRACE_FORMAT, model: 'synthetic', numLayers: o.numLayers, candidateLayers: layers, costs: { ...o.costs, blockMs: [...o.costs.blockMs] } },
    tokens,
  };
}
