/**
 * The exit controller: decides per token whether a ramp may stream it, and
 * learns from the full model's answers (TokenRecords) to hold the stated
 * accuracy while exiting as early as it allows.
 *
 * Three loops run off `record()`, all on token counts:
 * - Violation (reactive): a miss arriving while the accuracy window is below
 *   the constraint re-tunes from all-zero thresholds (that is how thresholds
 *   come down); a second consecutive violation, or agreement over the whole
 *   tune window under the constraint, resets the ramps behind the window's
 *   misses to 0 at once.
 * - Upward tune (every tunePeriod tokens while the window holds the
 *   constraint): hill-climb from the current thresholds (how they go up).
 * - Ramp adjustment (every adjustPeriod tokens): see adjuster.ts. The
 *   adjuster works from the cost model; the clock checks it: where timed
 *   steps of a sequence decoding alone take longer per token with ramps
 *   that may exit than on the fused graph, every ramp is dropped, whatever
 *   the model said (the trial waits longer each time, as for any drop).
 *
 * @module
 */
import { bestUtilityMs, budgetRampCount, countUsage, NO_USAGE, planAdjustment, shadowBestMs, spreadLayers, type RampUsage } from './adjuster.js';
import { CostsSchema, ExitControllerOptionsSchema, type ExitControllerInput, type ExitControllerOptions } from './options.js';
import { tuneThresholds } from './tuner.js';
import type { ControllerEvent, ControllerEventKind, ControllerState } from './state.js';
import { clears, FULL_MODEL_TOKEN, rampsRead, streamedAgrees, type Costs, type Ramp, type TokenRecord } from './types.js';
import { Ring } from '../util/index.js';
import { StepClock } from './step-clock.js';

/**
 * Owns the active ramps and thresholds; see the module comment for its loops.
 *
 * @example
 * const exits = new ExitController({ numLayers: 12, candidateLayers: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] });
 * for (const { layer } of exits.activeRamps()) if (exits.exitAt(layer, confidence)) ...;
 * exits.record({ ramps: [{ layer: 3, confidence: 0.97, agrees: true }], exitLayer: 3 });
 */
export class ExitController {
  readonly options: ExitControllerOptions;
  /** Agreement the tuner aims at: accuracy + tuningSlack × (1 − accuracy). */
  readonly tuningTarget: number;
  private readonly candidates: readonly number[];
  private costs: Costs;
  private ramps: Ramp[] = [];
  private snapshot: readonly Readonly<Ramp>[] | null = null;
  private changes = 0;
  private frozen = false;

  private readonly records: Ring<TokenRecord>;
  /** Tokens with every candidate scored and none exiting: evidence about ramps not active. */
  private readonly shadow: Ring<TokenRecord>;
  /** shadowBest's last answer, for whether a ramp was active; cleared by a new shadow record or new costs. */
  private shadowBestCache: { paysSplit: boolean; best: Map<number, number> } | null = null;
  private readonly outcomes: Ring<boolean>;
  private windowCorrect = 0;
  private totalTokens = 0;
  private totalCorrect = 0;
  private violationStreak = 0;
  /** Misses since the last violation response (re-tune or reset). */
  private missesSinceResponse = 0;
  private sinceTune = 0;
  private sinceAdjust = 0;

  private usage = new Map<number, RampUsage>();
  private utilities = new Map<number, number>();
  private readonly probation = new Set<number>();
  /** Dropped layers: blocked until adjustment `until`; `times` drives the backoff. */
  private readonly retired = new Map<number, { until: number; times: number }>();
  /**
   * Once every ramp has been dropped, no ramp is tried before adjustment
   * `until`. `times` doubles the wait each time the set empties again with no
   * ramp having paid in between: on a model where exits cannot pay for
   * themselves, trials become rare and decoding stays on the fused path.
   */
  private idle = { until: 0, times: 0 };
  private adjustments = 0;
  private readonly exitingClock = new StepClock();
  private readonly fusedClock = new StepClock();
  private readonly counts = { tunes: 0, retunes: 0, emergencies: 0, activations: 0, deactivations: 0 };
  private readonly log: ControllerEvent[] = [];

  /** @throws ZodError on invalid options. */
  constructor(options: ExitControllerInput) {
    this.options = ExitControllerOptionsSchema.parse(options);
    const o = this.options;
    this.tuningTarget = o.accuracy + o.tuningSlack * (1 - o.accuracy);
    this.candidates = [...o.candidateLayers].sort((a, b) => a - b);
    this.costs = o.costs ?? { blockMs: new Array<number>(o.numLayers).fill(1), rampMs: 0 };
    this.records = new Ring(o.tuneWindow);
    this.outcomes = new Ring(o.accuracyWindow);
    this.shadow = new Ring(o.shadowWindow);
    this.spreadRamps('start');
  }

  /** Active ramps, increasing layer. The same array until something changes. */
  activeRamps(): readonly Readonly<Ramp>[] {
    this.snapshot ??= Object.freeze(this.ramps.map((r) => Object.freeze({ ...r })));
    return this.snapshot;
  }

  /** Bumped on every change to the ramps or their thresholds (cheap change detection for the engine). */
  get revision(): number {
    return this.changes;
  }

  /** Whether a token scored `confidence` at the ramp at `layer` may be streamed from it. */
  exitAt(layer: number, confidence: number): boolean {
    for (const r of this.ramps) if (r.layer === layer) return clears(confidence, r.threshold);
    return false;
  }

  /** Feeds back one generated token. Records may arrive late (after the deep catch-up pass), in token order. */
  record(rec: TokenRecord): void {
    // Copied: the engine may reuse its objects, and the windows outlive the call. A token that read no ramp says
    // nothing but that it came from the full model (its step's size matters only to exits): one shared record.
    const copy: TokenRecord = rec.ramps.length === 0 && rec.exitLayer === null ? FULL_MODEL_TOKEN : { ...rec, ramps: rec.ramps.map((r) => ({ ...r })) };
    this.records.push(copy);
    const ok = streamedAgrees(copy);
    if (this.outcomes.push(ok) === true) this.windowCorrect--;
    if (ok) this.windowCorrect++;
    this.totalTokens++;
    if (ok) this.totalCorrect++;
    const read = rampsRead(copy);
    for (const s of read) {
      const u = this.usage.get(s.layer) ?? { ...NO_USAGE };
      countUsage(u, copy, s.layer === copy.exitLayer, 1 / read.length);
      this.usage.set(s.layer, u);
    }
    this.sinceTune++;
    this.sinceAdjust++;
    if (this.frozen) return;

    const holds = this.windowCorrect / this.outcomes.size >= this.options.accuracy;
    if (!ok) this.missesSinceResponse++;
    if (!ok && !holds && this.isNewViolation()) this.onViolation();
    else if (holds) this.violationStreak = 0;
    if (holds && this.violationStreak === 0 && this.sinceTune >= this.options.tunePeriod) this.tune(false, 'tune', 'periodic tune with slack');
    if (this.sinceAdjust >= this.options.adjustPeriod) this.adjust();
  }

  /**
   * Feeds back one token of a shadow step: every candidate ramp was scored,
   * none could exit, and the token came from the full model. It counts as
   * an ordinary token, and its scores say what ramps not active could do.
   */
  recordShadow(rec: TokenRecord): void {
    this.shadow.push({ ...rec, ramps: rec.ramps.map((r) => ({ ...r })), exitLayer: null });
    this.shadowBestCache = null;
    this.record(FULL_MODEL_TOKEN);
  }

  /**
   * One timed decode step of a sequence decoding alone: `fused` (on the
   * fused graph, no ramp read), else by spans. Spans steps count only while
   * a ramp may exit (threshold above 0): ramps still at 0 are learning.
   */
  recordStep(ms: number, tokens: number, fused: boolean): void {
    if (fused) this.fusedClock.add(ms, tokens);
    else if (this.ramps.some((r) => r.threshold > 0)) this.exitingClock.add(ms, tokens);
  }

  /** Whether there are enough shadow records (minShadow) to judge ramps that are not active. */
  get hasShadowEvidence(): boolean {
    return this.shadow.size >= this.options.minShadow;
  }

  /** New measured costs; drops ramps (lowest utility first) if the budget no longer fits them. */
  setCosts(costs: Costs): void {
    const parsed = CostsSchema.parse(costs);
    if (parsed.blockMs.length !== this.options.numLayers)
      throw new RangeError(`setCosts: blockMs needs ${this.options.numLayers} entries, got ${parsed.blockMs.length}`);
    this.costs = parsed;
    this.shadowBestCache = null;
    const max = this.maxActive();
    if (this.ramps.length <= max) return;
    // Before any feedback nothing is lost by laying the ramps out again.
    if (this.totalTokens === 0) return this.spreadRamps('budget');
    const byUtility = [...this.ramps].sort((a, b) => (this.utilities.get(a.layer) ?? 0) - (this.utilities.get(b.layer) ?? 0) || b.layer - a.layer);
    const dropped = byUtility.slice(0, this.ramps.length - max).map((r) => r.layer);
    this.setRamps(this.ramps.filter((r) => !dropped.includes(r.layer)));
    this.event('budget', dropped, `ramp budget allows ${max} ramps at ${parsed.rampMs.toFixed(3)} ms each`);
  }

  /**
   * Forces the active ramps and thresholds (tests, benchmarks): the active set
   * becomes exactly `ramps`, budget not checked. With `freeze`, tuning and
   * adjustment stop until `setFrozen(false)`; without, they resume.
   * @throws RangeError for a layer that is not a candidate or a threshold outside [0, 1].
   */
  setThresholds(ramps: readonly Ramp[], options: { freeze?: boolean } = {}): void {
    for (const r of ramps) {
      if (!this.candidates.includes(r.layer)) throw new RangeError(`setThresholds: layer ${r.layer} is not a candidate layer`);
      if (!(r.threshold >= 0 && r.threshold <= 1)) throw new RangeError(`setThresholds: threshold ${r.threshold} is outside [0, 1]`);
    }
    if (new Set(ramps.map((r) => r.layer)).size !== ramps.length) throw new RangeError('setThresholds: a layer repeats');
    this.probation.clear();
    this.setRamps(ramps.map((r) => ({ ...r })));
    this.frozen = options.freeze ?? false;
    this.event(
      'forced',
      ramps.map((r) => r.layer),
      this.frozen ? 'forced and frozen' : 'forced',
    );
  }

  /** Stops (true) or resumes (false) tuning and ramp adjustment; feedback is still recorded. */
  setFrozen(frozen: boolean): void {
    this.frozen = frozen;
  }

  state(): ControllerState {
    const window = this.records.last(this.options.accuracyWindow);
    const exits = (layer: number | null) => window.filter((r) => r.exitLayer === layer).length;
    const share = (k: number) => (window.length === 0 ? 0 : k / window.length);
    return {
      accuracy: this.options.accuracy,
      tuningTarget: this.tuningTarget,
      frozen: this.frozen,
      tokens: this.totalTokens,
      windowTokens: this.outcomes.size,
      windowedAgreement: this.outcomes.size === 0 ? null : this.windowCorrect / this.outcomes.size,
      cumulativeAgreement: this.totalTokens === 0 ? null : this.totalCorrect / this.totalTokens,
      fullModelRate: window.length === 0 ? null : share(exits(null)),
      ramps: this.ramps.map((r) => ({
        ...r,
        exitRate: share(exits(r.layer)),
        utilityMs: this.utilities.get(r.layer) ?? null,
        onProbation: this.probation.has(r.layer),
      })),
      maxActiveRamps: this.maxActive(),
      shadow: { records: this.shadow.size, bestMs: Object.fromEntries(this.shadowBest()) },
      violationStreak: this.violationStreak,
      costs: { ...this.costs, blockMs: [...this.costs.blockMs] },
      measured: { exitingMsPerToken: this.exitingClock.msPerToken(), fusedMsPerToken: this.fusedClock.msPerToken() },
      counts: { ...this.counts },
      log: this.log.map((e) => ({ ...e, layers: [...e.layers], ramps: e.ramps.map((r) => ({ ...r })) })),
    };
  }

  // --- the loops -------------------------------------------------------------

  /**
   * A miss with the window below the constraint is a violation, unless the
   * window is still paying for misses a response has already answered: after
   * a re-tune the window stays low for up to accuracyWindow tokens whatever
   * the new thresholds do, so the next violation counts only once the new
   * thresholds have missed, on their own, more than a whole window allows.
   */
  private isNewViolation(): boolean {
    if (this.violationStreak === 0) return true;
    return this.missesSinceResponse > Math.floor((1 - this.options.accuracy) * this.options.accuracyWindow);
  }

  private onViolation(): void {
    this.violationStreak++;
    this.missesSinceResponse = 0;
    const o = this.options;
    // Apparate also resets when cumulative accuracy falls under the
    // constraint; a server's all-time figure barely moves after a while, so
    // "cumulative" here is the tune window, the longest horizon kept.
    const long = this.records.last(o.tuneWindow);
    const cumulativeLow = long.length >= o.accuracyWindow && long.filter(streamedAgrees).length / long.length < o.accuracy;
    if (this.violationStreak < o.emergencyAfter && !cumulativeLow) {
      return this.tune(true, 'retune', `windowed agreement ${this.windowedText()} below ${o.accuracy}`);
    }
    // Emergency: the ramps behind the window's misses stop exiting now,
    // without waiting for a tuner that the old records may still mislead.
    const failing = new Set<number>();
    for (const r of this.records.last(o.accuracyWindow)) if (r.exitLayer !== null && !streamedAgrees(r)) failing.add(r.exitLayer);
    const reset = this.ramps.filter((r) => failing.has(r.layer) && r.threshold > 0).map((r) => r.layer);
    if (reset.length === 0) return;
    this.counts.emergencies++;
    this.setRamps(this.ramps.map((r) => (reset.includes(r.layer) ? { ...r, threshold: 0 } : r)));
    const why =
      cumulativeLow && this.violationStreak < o.emergencyAfter
        ? `agreement over the last ${long.length} tokens below the constraint`
        : `${this.violationStreak} consecutive violations`;
    this.event('emergency', reset, `${why}; windowed agreement ${this.windowedText()}`);
  }

  /** Hill-climbs from all zeros (`fromZero`) or the current thresholds. */
  private tune(fromZero: boolean, kind: 'tune' | 'retune', reason: string): void {
    this.sinceTune = 0;
    if (this.ramps.length === 0) return;
    if (fromZero) this.counts.retunes++;
    const o = this.options;
    const records = this.records.last(o.tuneWindow);
    const result = tuneThresholds({
      records,
      layers: this.ramps.map((r) => r.layer),
      start: this.ramps.map((r) => (fromZero ? 0 : r.threshold)),
      costs: this.costs,
      target: this.tuningTarget,
      recent: { count: o.accuracyWindow, target: o.accuracy },
      initialStep: o.initialStep,
      minStep: o.minStep,
    });
    const changed = this.ramps.filter((r, i) => r.threshold !== result.thresholds[i]).map((r) => r.layer);
    if (changed.length === 0) return;
    this.counts.tunes++;
    this.setRamps(this.ramps.map((r, i) => ({ layer: r.layer, threshold: result.thresholds[i]! })));
    this.event(
      kind,
      changed,
      `${reason}; replayed agreement ${result.agreement.toFixed(4)}, saves ${result.savingMs.toFixed(1)} ms over ${records.length} tokens`,
    );
  }

  private adjust(): void {
    const period = this.records.last(this.sinceAdjust);
    this.sinceAdjust = 0;
    this.adjustments++;
    // Only active ramps are judged: timings left from ramps already dropped must not hold up the next trial.
    const slower = this.ramps.length > 0 ? this.clockSaysSlower() : null;
    if (slower) {
      this.usage = new Map();
      this.exitingClock.clear();
      return this.deactivate(
        this.ramps.map((r) => r.layer),
        slower,
      );
    }
    const blocked =
      this.adjustments < this.idle.until
        ? new Set(this.candidates)
        : new Set([...this.retired].filter(([, r]) => r.until > this.adjustments).map(([layer]) => layer));
    for (const [layer, best] of this.shadowBest()) if (best < 0) blocked.add(layer);
    const splitShare = (rec: TokenRecord) => 1 / rampsRead(rec).length;
    const plan = planAdjustment({
      active: this.ramps.map((r) => r.layer),
      usage: this.usage,
      onProbation: this.probation,
      bestMs: new Map(this.ramps.map((r) => [r.layer, bestUtilityMs(period, r.layer, this.costs, this.tuningTarget, splitShare)])),
      costs: this.costs,
      numLayers: this.options.numLayers,
      candidates: this.candidates,
      maxActive: this.maxActive(),
      blocked,
    });
    this.usage = new Map();
    this.utilities = plan.utilities;
    if ([...plan.utilities.values()].some((u) => u > 0)) this.idle.times = 0;
    for (const layer of plan.recovered) this.probation.delete(layer);
    if (plan.deactivate.length > 0)
      this.deactivate(plan.deactivate, `utility negative after its re-tune, or beyond any re-tune's reach (${this.utilityText(plan.deactivate)})`);
    if (plan.probation.length > 0) {
      for (const layer of plan.probation) this.probation.add(layer);
      this.event('probation', plan.probation, `negative utility (${this.utilityText(plan.probation)}); one re-tune`);
      if (this.violationStreak === 0) this.tune(true, 'retune', 're-tune for negative utility');
    }
    if (plan.activate !== null) {
      this.counts.activations++;
      this.setRamps([...this.ramps, { layer: plan.activate, threshold: 0 }]);
      this.event('activate', [plan.activate], 'budget has room; widest stretch without an exit, at threshold 0');
    }
  }

  // --- helpers ---------------------------------------------------------------

  /** Drops `layers`, each blocked for retryAfter adjustments, twice as long each time; with none left, every layer waits. */
  private deactivate(layers: number[], why: string): void {
    for (const layer of layers) {
      this.probation.delete(layer);
      const times = (this.retired.get(layer)?.times ?? 0) + 1;
      this.retired.set(layer, { until: this.adjustments + this.options.retryAfter * 2 ** (times - 1), times });
      this.counts.deactivations++;
    }
    this.setRamps(this.ramps.filter((r) => !layers.includes(r.layer)));
    if (this.ramps.length === 0) {
      const wait = this.options.retryAfter * 2 ** this.idle.times;
      this.idle = { until: this.adjustments + wait, times: this.idle.times + 1 };
      why += `; no ramp left, the next is tried after ${wait} adjustments`;
    }
    this.event('deactivate', layers, why);
  }

  /** Why the clock drops the ramps (timed steps with a ramp that may exit take longer per token than fused ones), or null. */
  private clockSaysSlower(): string | null {
    const exiting = this.exitingClock.msPerToken(this.options.minTimedTokens);
    const fused = this.fusedClock.msPerToken(this.options.minTimedTokens);
    if (exiting === null || fused === null || exiting <= fused) return null;
    return `timed steps take ${exiting.toFixed(3)} ms a token with ramps that may exit, ${fused.toFixed(3)} on the fused graph`;
  }

  /**
   * Each candidate's best utility as a new ramp, from the shadow records;
   * empty until there are minShadow of them. Kept until a shadow record, the
   * costs or whether any ramp is active change (state() asks often, and each
   * answer sorts every candidate's records).
   */
  private shadowBest(): Map<number, number> {
    if (!this.hasShadowEvidence) return new Map();
    const paysSplit = this.ramps.length === 0;
    const cache = this.shadowBestCache;
    if (cache?.paysSplit === paysSplit) return cache.best;
    const best = shadowBestMs(this.shadow.last(), this.candidates, this.costs, this.tuningTarget, paysSplit);
    this.shadowBestCache = { paysSplit, best };
    return best;
  }

  private maxActive(): number {
    return budgetRampCount(this.costs, this.options.rampBudget, this.options.maxRamps);
  }

  private spreadRamps(kind: 'start' | 'budget'): void {
    const layers = spreadLayers(this.candidates, this.maxActive());
    this.setRamps(layers.map((layer) => ({ layer, threshold: 0 })));
    this.event(
      kind === 'start' ? 'activate' : 'budget',
      layers,
      kind === 'start' ? 'start: spread evenly, threshold 0' : 'costs changed before any feedback: spread again',
    );
  }

  private setRamps(ramps: Ramp[]): void {
    this.ramps = ramps.sort((a, b) => a.layer - b.layer);
    this.snapshot = null;
    this.changes++;
  }

  private event(kind: ControllerEventKind, layers: number[], reason: string): void {
    this.log.push({ token: this.totalTokens, kind, layers, reason, ramps: this.ramps.map((r) => ({ ...r })) });
    if (this.log.length > this.options.logSize) this.log.splice(0, this.log.length - this.options.logSize);
  }

  private windowedText(): string {
    return (this.windowCorrect / Math.max(1, this.outcomes.size)).toFixed(4);
  }

  private utilityText(layers: number[]): string {
    return layers.map((l) => `layer ${l}: ${(this.utilities.get(l) ?? 0).toFixed(1)} ms`).join(', ');
  }
}
