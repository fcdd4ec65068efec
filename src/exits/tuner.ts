/**
 * Threshold tuning (Apparate §3.3, restated in DESIGN.md): greedy
 * hill-climbing over a replay window of feedback records.
 *
 * Each iteration tries raising each active ramp's threshold by that ramp's
 * step and replays the window: a token exits at the first ramp whose
 * uncertainty (1 − confidence) is below its threshold, and is correct iff
 * that ramp agreed with the full model (or it reached the full model). Moves
 * that keep the window's agreement at or above the target are valid; the one
 * with the most latency saved per correct token lost is taken (a move that
 * saves time and loses nothing wins outright). Steps are MIMD: the taken
 * ramp's step doubles, and all steps halve when no move is valid. The climb
 * stops when every step is below the minimum.
 *
 * Replay is incremental: raising ramp i's threshold can only change tokens
 * that currently pass ramp i (exit later, or not at all), and only to "exit
 * at i"; so a move costs one scan of the window, not a full replay.
 *
 * @module
 */
import { exitSavingMs, type Costs, type TokenRecord } from './types.js';

export interface TuneInput {
  /** Replay window, oldest first. */
  records: readonly TokenRecord[];
  /** Active ramps' layers, increasing. */
  layers: readonly number[];
  /** Thresholds to start from, one per layer (all zeros: the safe start). */
  start: readonly number[];
  costs: Costs;
  /** Agreement the whole window must keep, in [0, 1]. */
  target: number;
  /**
   * Drift guard: the newest `count` records must also keep `target`.
   * A ramp that just went wrong is a handful of records in a long window;
   * this stops the long window's past from vouching for it.
   */
  recent?: { count: number; target: number };
  /** Default 0.01. */
  initialStep?: number;
  /** Default 0.001. */
  minStep?: number;
}

/** One taken move, for logs and tests. */
export interface TuneMove {
  layer: number;
  from: number;
  to: number;
  /** Latency saved over the window by this move, in ms (≥ 0). */
  savingMs: number;
  /** Correct tokens lost over the window by this move (may be negative). */
  lost: number;
}

export interface TuneResult {
  /** New thresholds, same order as `layers`. */
  thresholds: number[];
  /** Replayed agreement of the window under `thresholds` (1 for an empty window). */
  agreement: number;
  /** Latency saved over the window relative to `start`, in ms. */
  savingMs: number;
  moves: TuneMove[];
  /** Steps when the climb stopped (all below minStep unless the iteration cap hit). */
  steps: number[];
  iterations: number;
}

// A climb takes O(log(1/minStep)) moves per ramp plus halvings; this cap
// only guards against a bug turning it into a hang.
const MAX_ITERATIONS = 10_000;

/**
 * Hill-climbs thresholds over `records`. Pure: same input, same result.
 *
 * @example
 * const { thresholds } = tuneThresholds({ records, layers: [2, 5], start: [0, 0], costs, target: 0.995 });
 */
export function tuneThresholds(input: TuneInput): TuneResult {
  const { records, layers, costs, target } = input;
  const initialStep = input.initialStep ?? 0.01;
  const minStep = input.minStep ?? 0.001;
  const n = records.length;
  const numRamps = layers.length;
  const thresholds = layers.map((_, i) => clamp01(input.start[i] ?? 0));
  const steps = layers.map(() => initialStep);
  const recentFrom = input.recent ? Math.max(0, n - input.recent.count) : n;
  const recentCount = n - recentFrom;
  const recentTarget = input.recent?.target ?? 0;

  // Per (record, ramp): uncertainty (Infinity: the ramp was not active for
  // that token, so it can never exit there) and agreement.
  const uncertainty = new Float64Array(n * numRamps).fill(Infinity);
  const agrees = new Uint8Array(n * numRamps);
  const column = new Map(layers.map((layer, i) => [layer, i]));
  records.forEach((rec, r) => {
    for (const s of rec.ramps) {
      const i = column.get(s.layer);
      if (i === undefined) continue;
      uncertainty[r * numRamps + i] = 1 - s.confidence;
      agrees[r * numRamps + i] = s.agrees ? 1 : 0;
    }
  });

  // Latency of record r relative to "no ramps" when it leaves at index k: ramps
  // passed cost rampMs each, exiting at ramp k saves what exitSavingMs says (the
  // deeper blocks, alone in a step). Index numRamps = full model.
  const latency = (r: number, k: number): number => k * costs.rampMs - (k < numRamps ? exitSavingMs(costs, layers[k]!, records[r]!) : 0);

  // Current replay: exit index per record, correct count overall and recent.
  const exitIdx = new Int32Array(n);
  let correct = 0;
  let recentCorrect = 0;
  for (let r = 0; r < n; r++) {
    let k = 0;
    while (k < numRamps && !(uncertainty[r * numRamps + k]! < thresholds[k]!)) k++;
    exitIdx[r] = k;
    const ok = k === numRamps || agrees[r * numRamps + k] === 1;
    if (ok) {
      correct++;
      if (r >= recentFrom) recentCorrect++;
    }
  }
  const isCorrect = (r: number): number => {
    const k = exitIdx[r]!;
    return k === numRamps || agrees[r * numRamps + k] === 1 ? 1 : 0;
  };

  const moves: TuneMove[] = [];
  let totalSaving = 0;
  let iterations = 0;
  while (iterations < MAX_ITERATIONS && steps.some((s) => s >= minStep)) {
    iterations++;
    // Best move so far: rank 2 = saves and loses nothing, 1 = saves at a
    // loss (ranked by saving per loss), 0 = changes nothing in the window.
    let best: { i: number; to: number; rank: number; score: number; saving: number; lost: number; dRecent: number } | null = null;
    for (let i = 0; i < numRamps; i++) {
      const from = thresholds[i]!;
      if (from >= 1) continue;
      const to = clamp01(from + steps[i]!);
      let saving = 0;
      let lost = 0;
      let dRecent = 0;
      let stillReaching = 0;
      let moved = 0;
      for (let r = 0; r < n; r++) {
        if (exitIdx[r]! <= i) continue; // exits at or before ramp i already
        const u = uncertainty[r * numRamps + i]!;
        if (u === Infinity) continue;
        if (!(u < to)) {
          if (u < 1) stillReaching++; // confidence 0 can never exit: no evidence
          continue;
        }
        moved++;
        saving += latency(r, exitIdx[r]!) - latency(r, i);
        const d = isCorrect(r) - agrees[r * numRamps + i]!;
        lost += d;
        if (r >= recentFrom) dRecent += d;
      }
      const valid = (n === 0 || (correct - lost) / n >= target) && (recentCount === 0 || (recentCorrect - dRecent) / recentCount >= recentTarget);
      if (!valid) continue;
      let rank: number;
      let score: number;
      if (saving > 0 && lost <= 0) [rank, score] = [2, saving];
      else if (saving > 0) [rank, score] = [1, saving / lost];
      // A move that changes nothing may cross a gap in the data, but only
      // while tokens still reach the ramp above it: thresholds never climb
      // past the evidence (a ramp nobody reaches stays where it is). A move
      // that exits tokens and saves nothing (they were batched) is not taken.
      else if (moved === 0 && stillReaching > 0) [rank, score] = [0, 0];
      else continue;
      if (!best || rank > best.rank || (rank === best.rank && score > best.score)) {
        best = { i, to, rank, score, saving, lost, dRecent };
      }
    }

    if (!best) {
      for (let i = 0; i < numRamps; i++) steps[i] = steps[i]! / 2;
      continue;
    }
    const { i, to } = best;
    for (let r = 0; r < n; r++) {
      if (exitIdx[r]! > i && uncertainty[r * numRamps + i]! < to) exitIdx[r] = i;
    }
    correct -= best.lost;
    recentCorrect -= best.dRecent;
    totalSaving += best.saving;
    moves.push({ layer: layers[i]!, from: thresholds[i]!, to, savingMs: best.saving, lost: best.lost });
    thresholds[i] = to;
    steps[i] = Math.min(1, steps[i]! * 2);
  }

  return { thresholds, agreement: n === 0 ? 1 : correct / n, savingMs: totalSaving, moves, steps, iterations };
}

function clamp01(x: number): number {
  return Math.min(1, Math.max(0, x));
}
