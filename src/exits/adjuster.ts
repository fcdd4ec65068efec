/**
 * Ramp adjustment (Apparate §3.4): which layers carry ramps. Pure functions;
 * the controller owns the state and applies the plans.
 *
 * - Budget: all active ramps together may cost at most `rampBudget` of a
 *   step that never exits (every block plus the final head, which costs
 *   about one ramp): Σ rampMs ≤ rampBudget × (Σ blockMs + rampMs).
 * - Start: ramps spread evenly over the candidate layers, all at threshold 0.
 * - Every period: utility = ms saved by tokens that exited at the ramp
 *   (only tokens alone in their step save anything: see exitSavingMs) −
 *   the calls their deferral added later (catch-ups run apart from a batch)
 *   − rampMs × tokens that passed it without exiting − the ramp's share of
 *   splitMs (each token's split cost divided among the ramps it read on its
 *   way out): a ramp also pays for keeping decoding off the fused graph, which
 *   on a small model costs more than the ramp itself. A negative ramp gets one
 *   re-tune (probation); negative again at the next adjustment, it goes. It
 *   goes at once when no threshold could have made it pay: even at the best
 *   threshold the tuning target allows (see bestUtilityMs), replayed over
 *   the period's tokens, its utility would be negative.
 * - While the budget and maxRamps leave room, and every ramp that stays
 *   paid for itself over the period, one new ramp is tried per adjustment
 *   (a ramp still losing time is not joined by another untested one, and a
 *   set that has just emptied is left empty: the controller waits out a
 *   backoff before it tries again): the farthest-point rule puts it in the middle of the widest
 *   stretch of blocks with no exit chance (the model's input and its last
 *   block count as ends), only at layers where one exit saves more than a
 *   ramp costs (else it cannot pay: the last layers rarely can), and not at
 *   a layer still cooling off after being dropped, nor at one whose best
 *   utility over the shadow records is negative (see shadowBestMs: the
 *   engine now and then scores every candidate on a step that cannot exit,
 *   so a ramp that could never pay is known without trying it, and trying
 *   one costs every token the split cost for at least a period). Ties go
 *   to the earlier layer, which saves more per exit.
 *
 * @module
 */
import { aloneInStep, exitSavingMs, rampsRead, savedMs, type Costs, type TokenRecord } from './types.js';

/** How many ramps the budget allows, capped by maxRamps. Free ramps (rampMs 0) are capped by maxRamps only. */
export function budgetRampCount(costs: Costs, rampBudget: number, maxRamps: number): number {
  if (costs.rampMs <= 0) return maxRamps;
  const stepMs = costs.blockMs.reduce((a, b) => a + b, 0) + costs.rampMs;
  // The epsilon keeps an exact fit (budget = k × rampMs) from flooring to k − 1.
  return Math.max(0, Math.min(maxRamps, Math.floor((rampBudget * stepMs) / costs.rampMs + 1e-9)));
}

/**
 * `count` layers spread evenly over `candidates` (sorted): the centres of
 * `count` equal bins, so neither the first nor the last candidate is
 * favoured. 31 candidates, 3 ramps → indices 5, 15, 25.
 */
export function spreadLayers(candidates: readonly number[], count: number): number[] {
  const k = Math.min(count, candidates.length);
  const out: number[] = [];
  for (let i = 0; i < k; i++) out.push(candidates[Math.floor(((i + 0.5) * candidates.length) / k)]!);
  return out;
}

/** What one ramp did during an adjustment period. */
export interface RampUsage {
  /** Tokens streamed from this ramp. */
  exits: number;
  /** Of them, tokens alone in their step: the exits that saved time (see exitSavingMs). */
  soloExits: number;
  /** What the exits' deferrals cost later (catch-ups run apart from a batch), in ms. */
  overheadMs: number;
  /** Tokens that evaluated this ramp and went on (exited later or at the full model). */
  passes: number;
  /** Tokens that read this ramp, each counted as 1 / (ramps it read): the ramp's share of the split cost. */
  share: number;
}

export const NO_USAGE: Readonly<RampUsage> = { exits: 0, soloExits: 0, overheadMs: 0, passes: 0, share: 0 };

/** Adds one token that read the ramp to its usage (`exited`: it left there; `share`: of the split cost, see RampUsage). */
export function countUsage(usage: RampUsage, rec: TokenRecord, exited: boolean, share: number): void {
  if (exited) {
    usage.exits++;
    if (aloneInStep(rec)) usage.soloExits++;
    usage.overheadMs += rec.overheadMs ?? 0;
  } else usage.passes++;
  usage.share += share;
}

/** Net latency the ramp bought over the period, in ms. */
export function utilityMs(costs: Costs, layer: number, usage: RampUsage): number {
  return usage.soloExits * savedMs(costs, layer) - usage.overheadMs - usage.passes * costs.rampMs - usage.share * (costs.splitMs ?? 0);
}

/**
 * The ramp's utility over `records` at the threshold that would have paid
 * most while the tuning target held: the tokens that read it exit most
 * confident first (equal confidences together, as a threshold takes them)
 * for as long as the misses among them stay within (1 − target) of all the
 * records, the most the tuner's replay allows one ramp. The catch-ups their
 * deferral adds are left out, so it errs on the side of paying: a negative
 * figure means no threshold could make the ramp pay. `splitShare` is each
 * reading token's share of the split cost, paid at any threshold.
 */
export function bestUtilityMs(records: readonly TokenRecord[], layer: number, costs: Costs, target: number, splitShare: (rec: TokenRecord) => number): number {
  const readings: { confidence: number; agrees: boolean; savedMs: number }[] = [];
  let share = 0;
  for (const rec of records) {
    const score = rampsRead(rec).find((r) => r.layer === layer);
    if (!score) continue;
    readings.push({ confidence: score.confidence, agrees: score.agrees, savedMs: exitSavingMs(costs, layer, rec) });
    share += splitShare(rec);
  }
  readings.sort((a, b) => b.confidence - a.confidence);
  const allowedMisses = (1 - target) * records.length;
  let best = -readings.length * costs.rampMs; // no token exits: every reader pays for the ramp
  let saved = 0;
  let misses = 0;
  for (let k = 0; k < readings.length; k++) {
    const reading = readings[k]!;
    saved += reading.savedMs;
    if (!reading.agrees && ++misses > allowedMisses) break;
    const tieEnds = k === readings.length - 1 || readings[k + 1]!.confidence !== reading.confidence;
    if (tieEnds) best = Math.max(best, saved - (readings.length - k - 1) * costs.rampMs);
  }
  return best - share * (costs.splitMs ?? 0);
}

/**
 * Each candidate's best utility as a new ramp (see bestUtilityMs) over shadow
 * records (tokens on which every candidate ramp was scored and none could
 * exit). `paysSplit`: no ramp is active now, so a new one would bring the
 * split cost back for every token; otherwise that cost is being paid already.
 */
export function shadowBestMs(
  records: readonly TokenRecord[],
  candidates: readonly number[],
  costs: Costs,
  target: number,
  paysSplit: boolean,
): Map<number, number> {
  return new Map(candidates.map((layer) => [layer, bestUtilityMs(records, layer, costs, target, () => (paysSplit ? 1 : 0))]));
}

export interface AdjustInput {
  /** Active layers, increasing. */
  active: readonly number[];
  usage: ReadonlyMap<number, RampUsage>;
  /** Ramps already given their one re-tune after a negative period. */
  onProbation: ReadonlySet<number>;
  /** Per active layer, its best utility over the period (see bestUtilityMs): below 0, no re-tune can help. */
  bestMs: ReadonlyMap<number, number>;
  costs: Costs;
  numLayers: number;
  candidates: readonly number[];
  /** Ramp count allowed by budget and maxRamps. */
  maxActive: number;
  /** Layers that may not be (re)activated now. */
  blocked: ReadonlySet<number>;
}

export interface AdjustPlan {
  /** Utility per active layer over the period, in ms. */
  utilities: Map<number, number>;
  /** Negative for the first time: re-tune once and watch. */
  probation: number[];
  /** Negative again after their re-tune, or beyond any re-tune's help: deactivate. */
  deactivate: number[];
  /** Back to non-negative: off probation. */
  recovered: number[];
  /** A layer to activate at threshold 0, if there is room. */
  activate: number | null;
}

/** Decides one adjustment from the period's usage. */
export function planAdjustment(input: AdjustInput): AdjustPlan {
  const plan: AdjustPlan = { utilities: new Map(), probation: [], deactivate: [], recovered: [], activate: null };
  for (const layer of input.active) {
    const usage = input.usage.get(layer) ?? NO_USAGE;
    const u = utilityMs(input.costs, layer, usage);
    plan.utilities.set(layer, u);
    const hopeless = (input.bestMs.get(layer) ?? 0) < 0;
    if (u < 0) (input.onProbation.has(layer) || hopeless ? plan.deactivate : plan.probation).push(layer);
    else if (input.onProbation.has(layer)) plan.recovered.push(layer);
  }
  const remaining = input.active.filter((l) => !plan.deactivate.includes(l));
  const allPay = remaining.every((l) => plan.utilities.get(l)! >= 0);
  const justEmptied = remaining.length === 0 && input.active.length > 0;
  if (remaining.length < input.maxActive && allPay && !justEmptied) {
    const blocked = new Set([...input.blocked, ...plan.deactivate]);
    plan.activate = chooseNewLayer(input.candidates, remaining, input.costs, input.numLayers, blocked);
  }
  return plan;
}

/** The farthest-point rule (see the module comment); null when no layer qualifies. */
export function chooseNewLayer(
  candidates: readonly number[],
  active: readonly number[],
  costs: Costs,
  numLayers: number,
  blocked: ReadonlySet<number>,
): number | null {
  let best: number | null = null;
  let bestDistance = -1;
  for (const c of candidates) {
    if (active.includes(c) || blocked.has(c)) continue;
    if (!(savedMs(costs, c) > costs.rampMs)) continue;
    let d = Math.min(c + 1, numLayers - 1 - c);
    for (const a of active) d = Math.min(d, Math.abs(c - a));
    if (d > bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}
