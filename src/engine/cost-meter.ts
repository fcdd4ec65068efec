/**
 * What blocks and ramps cost, measured on the decode path: the controller's
 * notion of time saved by exits and time lost to ramps comes from here.
 *
 * Each cost is the median of its last samples: one garbage-collection pause
 * inside a timed call must not move a cost that may then go unmeasured for
 * a long time (ramps the budget no longer allows are never timed again).
 *
 * @module
 */
import type { CallCosts, Costs } from '../exits/index.js';
import { Ring } from '../util/index.js';

/** Samples each median is taken over. */
const WINDOW = 64;

/** The median of the last WINDOW samples; 0 before the first. */
class RecentMedian {
  private readonly samples = new Ring<number>(WINDOW);
  /** The median until the next sample (most costs go unsampled between snapshots: only the path in use is timed). */
  private cached: number | null = 0;

  add(ms: number): void {
    this.samples.push(ms);
    this.cached = null;
  }

  get value(): number {
    if (this.cached === null) {
      const sorted = this.samples.last().sort((a, b) => a - b);
      this.cached = sorted[sorted.length >> 1]!;
    }
    return this.cached;
  }
}

/** What one position costs a block, a ramp and the head, in any unit (multiply-adds). */
export interface CallWork {
  block: number;
  ramp: number;
  head: number;
}

export class CostMeter {
  private readonly blocks: RecentMedian[];
  private readonly ramp = new RecentMedian();
  private readonly head = new RecentMedian();
  private readonly fused = new RecentMedian();
  /** One-row calls by their work: the points the per-call line is fitted to (see callLine). */
  private readonly byWork = new Map<number, RecentMedian>();

  constructor(
    numLayers: number,
    /** Relative work of a block, a ramp and the head (multiply-adds), by which a call's time is shared. */
    private readonly work: CallWork = { block: 1, ramp: 1, head: 1 },
  ) {
    this.blocks = Array.from({ length: numLayers }, () => new RecentMedian());
  }

  /**
   * One call over blocks `from`..`to` and what ends it (a ramp, the head, or
   * nothing). The call is one measurement, so it is shared between its
   * blocks and its end in proportion to their work: each block's cost then
   * includes its share of the per-call overhead, which is what skipping it
   * (or adding a ramp, which splits a span in two) changes, and a ramp much
   * lighter than a block is not charged like one. The controller's sums over
   * blocks stay what a step costs.
   */
  addSpan(from: number, to: number, end: 'ramp' | 'head' | 'hidden', ms: number, rows = 1): void {
    const endWork = end === 'hidden' ? 0 : this.work[end];
    if (rows === 1) this.addCall((to - from + 1) * this.work.block + endWork, ms);
    const perWork = ms / ((to - from + 1) * this.work.block + endWork);
    for (let layer = from; layer <= to; layer++) this.blocks[layer]!.add(perWork * this.work.block);
    if (end === 'ramp') this.ramp.add(perWork * endWork);
    if (end === 'head') this.head.add(perWork * endWork);
  }

  /** A whole decode step in one fused call. */
  addFused(ms: number, rows = 1): void {
    this.fused.add(ms);
    if (rows === 1) this.addCall(this.blocks.length * this.work.block + this.work.head, ms);
  }

  private addCall(work: number, ms: number): void {
    let median = this.byWork.get(work);
    if (!median) this.byWork.set(work, (median = new RecentMedian()));
    median.add(ms);
  }

  /**
   * The line through the one-row calls timed (the median of each size):
   * milliseconds = overhead + perWork × work, by least squares. Null until
   * two sizes have been timed.
   */
  private callLine(): CallCosts | null {
    const points = [...this.byWork].map(([work, median]) => [work, median.value] as const);
    if (points.length < 2) return null;
    const meanWork = points.reduce((s, [w]) => s + w, 0) / points.length;
    const meanMs = points.reduce((s, [, ms]) => s + ms, 0) / points.length;
    let covariance = 0;
    let variance = 0;
    for (const [w, ms] of points) {
      covariance += (w - meanWork) * (ms - meanMs);
      variance += (w - meanWork) ** 2;
    }
    const perWork = Math.max(0, covariance / variance);
    const overheadMs = Math.max(0, meanMs - perWork * meanWork);
    return { overheadMs, blockMs: perWork * this.work.block, rampMs: perWork * this.work.ramp, headMs: perWork * this.work.head };
  }

  /** Null until every block has been timed at least once. */
  snapshot(): Costs | null {
    const blockMs = this.blocks.map((b) => b.value);
    if (blockMs.some((ms) => ms === 0)) return null;
    const head = this.head.value;
    const fused = this.fused.value;
    // Before any ramp has run, assume one costs what the final head does: about a block's worth.
    const rampMs = this.ramp.value || head || Math.max(...blockMs);
    // Unknown (0) until both paths have been timed.
    const splitMs = fused > 0 && head > 0 ? Math.max(0, blockMs.reduce((a, b) => a + b, 0) + head - fused) : 0;
    const call = this.callLine();
    return { blockMs, rampMs, splitMs, headMs: head, fusedMs: fused, ...(call && { call }) };
  }
}
