/**
 * What blocks and ramps cost, measured on the decode path: the controller's
 * notion of time saved by exits and time lost to ramps comes from here.
 *
 * @module
 */
import type { Costs } from '../exits/index.js';

/** Weight of a new sample in the moving averages. */
const ALPHA = 0.05;

export class CostMeter {
  private readonly blockMs: number[];
  private rampMs = 0;

  constructor(numLayers: number) {
    this.blockMs = new Array<number>(numLayers).fill(0);
  }

  addBlock(layer: number, ms: number): void {
    this.blockMs[layer] = this.blockMs[layer]! === 0 ? ms : this.blockMs[layer]! + ALPHA * (ms - this.blockMs[layer]!);
  }

  addRamp(ms: number): void {
    this.rampMs = this.rampMs === 0 ? ms : this.rampMs + ALPHA * (ms - this.rampMs);
  }

  /** Null until every block has been timed at least once. */
  snapshot(): Costs | null {
    if (this.blockMs.some((ms) => ms === 0)) return null;
    // Before any ramp has run, assume one costs what the final head does: about a block's worth.
    const rampMs = this.rampMs || Math.max(...this.blockMs);
    return { blockMs: [...this.blockMs], rampMs };
  }
}
